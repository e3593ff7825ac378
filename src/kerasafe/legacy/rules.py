"""The shape of one entry in the layer tables, and the one function that applies an entry to a layer config.

A :class:`Rule` says how one class that Keras 1, Keras 2 or tf.keras 2 wrote becomes a
Keras 3 layer: arguments renamed, arguments Keras 3 dropped (with the values at which
dropping them changes no output, and the ones that never change an output at
inference), the class Keras 3 builds instead, and a function for what a table cannot
say. The tables themselves are per layer family (``table_*.py``); ``TABLE`` joins them.

Example:
    >>> from kerasafe.legacy.rules import translate_layer
    >>> translate_layer("LeakyReLU", {"name": "act", "alpha": 0.2})["config"]
    {'name': 'act', 'negative_slope': 0.2}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from .. import _keras


class LegacyError(ValueError):
    """A layer that has no Keras 3 meaning; the message names the layer and what to do."""


def refuse(name: str, class_name: str, what: str, advice: str) -> LegacyError:
    return LegacyError(f"layer '{name}' ({class_name}): {what} has no Keras 3 equivalent; {advice}")


@dataclasses.dataclass(frozen=True)
class Replacement:
    """A whole Keras 3 serialized layer that stands where the old layer stood (a rewrite's answer)."""

    layer: dict


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one old layer class becomes a Keras 3 layer. Every field is optional."""

    renames: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Arguments Keras 3 does not take -> the values at which leaving them out changes no output;
    # any other value is refused (it would change what the layer computes).
    neutral: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    # Arguments Keras 3 does not take that never change an output at inference (how training
    # draws random numbers, which kernel computes the same thing): always left out.
    ignored: tuple[str, ...] = ()
    # The class to build: a Keras 3 layer name, or "kerasafe>Name" for kerasafe's stand-in.
    keras3_class: str | None = None
    # (config, layer name) -> config, or a Replacement (another layer computing the same), for
    # what the fields above cannot say; raises LegacyError.
    rewrite: Callable[[dict, str], dict | Replacement] | None = None
    # Arguments that hold layer configs of their own (wrapped layers, RNN cells).
    nested: tuple[str, ...] = ()
    # (Keras 3 layer, the file's array names, arrays) -> arrays in Keras 3's order, for layers
    # whose weights old Keras laid out otherwise (looked up by the class Keras 3 built).
    weights: Callable[[object, list, list], list] | None = None
    # (Keras 3 layer, names, arrays): arrays old Keras kept as weights that the Keras 3 layer keeps as
    # state or configuration (a Discretization's summary, tf-idf weights); puts them there or checks them.
    state: Callable[[object, list, list], None] | None = None
    # tf.keras attribute names (in TensorFlow checkpoints) -> the Keras 3 layer's attribute.
    checkpoint_names: Mapping[str, str] = dataclasses.field(default_factory=dict)


# Arguments every tf.keras 2 layer may carry that Keras 3 layers never take: which random
# generator training used, and whether the layer ran eagerly. Neither changes an output.
IGNORED_EVERYWHERE = ("force_generator", "rng_type", "dynamic")
# Keys that carry a Sequential model's input shape on its first layer (model_config moves them to an InputLayer).
INPUT_SHAPE_KEYS = ("batch_input_shape", "batch_shape", "input_shape", "input_dim", "__input_dtype__")
# tf.keras's other names for some classes; every config tf.keras or Keras 1/2 wrote uses the class's own name.
ALIASES = {"AvgPool1D": "AveragePooling1D", "AvgPool2D": "AveragePooling2D", "AvgPool3D": "AveragePooling3D",
           "MaxPool1D": "MaxPooling1D", "MaxPool2D": "MaxPooling2D", "MaxPool3D": "MaxPooling3D",
           "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
           "Convolution1DTranspose": "Conv1DTranspose", "Convolution2DTranspose": "Conv2DTranspose",
           "Convolution3DTranspose": "Conv3DTranspose", "SeparableConvolution1D": "SeparableConv1D",
           "SeparableConvolution2D": "SeparableConv2D"}

_TABLE: dict[str, Rule] = {}


def table() -> dict[str, Rule]:
    """Every rule, by old class name (the family tables joined on first use)."""
    if not _TABLE:
        from . import table_conv, table_core, table_normalization, table_preprocessing, table_recurrent

        for module in (table_core, table_conv, table_recurrent, table_normalization, table_preprocessing):
            overlap = set(_TABLE) & set(module.RULES)
            assert not overlap, f"classes in two tables: {overlap}"
            _TABLE.update(module.RULES)
    return _TABLE


def keras_object(class_name: str, config: dict) -> dict:
    """A Keras 3 serialized layer: ``keras.layers`` classes by name, kerasafe's stand-ins by registered name."""
    if class_name.startswith("kerasafe>"):
        from .stand_ins import stand_in

        cls = stand_in(class_name)
        return {"module": cls.__module__, "class_name": cls.__name__, "config": config, "registered_name": class_name}
    if not isinstance(getattr(_keras.keras().layers, class_name, None), type):
        # Not a Keras layer: the user's own class, found by Keras's legacy reader in custom_objects.
        return {"class_name": class_name, "config": config}
    return {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None}


def _policy_name(dtype):
    """tf.keras 2.13+ wrote mixed-precision policies as objects ({"class_name": "Policy", ...}); Keras 3 takes the name."""
    if isinstance(dtype, dict) and isinstance(dtype.get("config"), dict) and "name" in dtype["config"]:
        return dtype["config"]["name"]
    return dtype


def translate_layer(class_name: str, config: dict) -> dict:
    """One old layer (class name, config) as the Keras 3 serialized layer that computes the same.

    Raises :class:`LegacyError` naming the layer when it cannot be.
    """
    config = dict(config)
    name = config.get("name", class_name)
    class_name = ALIASES.get(class_name, class_name)
    rule = table().get(class_name, Rule())
    for key in IGNORED_EVERYWHERE + rule.ignored:
        config.pop(key, None)
    for old, new in rule.renames.items():
        if old in config:
            config[new] = config.pop(old)
    for key, neutral in rule.neutral.items():
        if key in config:
            value = config.pop(key)
            if value not in neutral:
                raise refuse(name, class_name, f"{key}={value!r}", "rebuild this layer in Keras 3 and load the weights by name")
    if "dtype" in config:
        config["dtype"] = _policy_name(config["dtype"])
    for key in rule.nested:
        config[key] = translate_nested(config.get(key))
    if rule.rewrite is not None:
        rewritten = rule.rewrite(config, name)
        if isinstance(rewritten, Replacement):
            # Where the model's input shape was written (a Sequential's first layer) stays with the layer.
            shape = {k: config[k] for k in INPUT_SHAPE_KEYS if k in config}
            return dict(rewritten.layer, config={**rewritten.layer["config"], **shape})
        config = rewritten
    return keras_object(rule.keras3_class or class_name, config)


def translate_nested(value):
    """A layer config held by another layer (a wrapped layer, an RNN cell, a list of cells), translated."""
    if isinstance(value, list):
        return [translate_nested(v) for v in value]
    if isinstance(value, dict) and "class_name" in value and isinstance(value.get("config"), dict):
        from .model_config import layer_config_for_keras3

        return layer_config_for_keras3(value)
    return value


def registered_function(name: str) -> dict:
    """A function kerasafe registers with Keras (``kerasafe>name``), as Keras 3 serializes a function."""
    _keras.keras()  # registers them
    return {"module": "builtins", "class_name": "function", "config": f"kerasafe>{name}", "registered_name": "function"}
