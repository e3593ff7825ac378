"""Old files on Keras 3: everything about what Keras 1, Keras 2 and tf.keras 2 wrote, in one package.

Format readers call :func:`build_model` with the model config they found (in an
``.h5`` attribute, a JSON/YAML text, a SavedModel's ``keras_metadata.pb``) and
:func:`weights.load_layer_weights` (through the format's own layout) for the arrays.
Inside:

- ``model_config``: the walk over a whole model config (Sequential lists, nodes, nested models);
- ``rules`` and ``table_*``: one table per layer family saying how each old class becomes
  Keras 3 (renamed and dropped arguments, stand-ins, weight layouts), ``table_keras1`` first
  for Keras 1 names;
- ``stand_ins``: Keras 3 layers for old classes Keras 3 has no equivalent of;
- ``weights``: old weight layouts onto Keras 3's variables;
- ``optimizers``: where each old optimizer kept its state;
- ``tf_ops``: tf.keras's TensorFlow-op layers on Keras 3 ops;
- ``to_keras2``: the other direction, for the ``.h5`` files kerasafe writes;
- ``upgrade``: ``kerasafe upgrade FOLDER``.

Example:
    >>> from kerasafe import legacy
    >>> legacy.is_legacy_config({"class_name": "Sequential", "config": [], "keras_version": "2.2.4"})
    True
"""

from __future__ import annotations

import contextlib

from .model_config import is_legacy_config, upgrade_model_config
from .rules import LegacyError
from .table_preprocessing import NEEDS_TENSORFLOW

__all__ = ["LegacyError", "build_model", "is_legacy_config", "upgrade_model_config"]


def build_model(config: dict, path=None, *, custom_objects=None, safe_mode=True):
    """The Keras 3 model an old config describes; every failure is a ``kerasafe.errors`` exception naming ``path``.

    In safe mode nothing from the file runs (Lambda bytecode is refused before
    anything is translated).
    """
    from .. import _keras, errors
    from ..formats.base import keras_failure, refuse_code, refuse_reason

    refuse_code(config, path, safe_mode)
    try:
        upgraded = upgrade_model_config(config)
    except LegacyError as exc:
        raise errors.UnsupportedOperationError(path, "layers and arguments that Keras 3 has", str(exc).split("; ")[0],
                                               str(exc).split("; ", 1)[-1]) from None
    needs_tensorflow = sorted(set(_class_names(config)) & set(NEEDS_TENSORFLOW))
    try:
        # Keras's serializers would import TensorFlow just to ask whether it exists (seconds on JAX);
        # only layers Keras 3 builds with TensorFlow's ops on every backend need it found.
        with contextlib.nullcontext() if needs_tensorflow else _keras.tensorflow_left_alone():
            model = _keras.legacy_model_from_config(upgraded, custom_objects=custom_objects, safe_mode=safe_mode)
        _remember_old_classes(model, config)
        return model
    except LegacyError as exc:  # a nested config found by Keras's own walk
        raise errors.UnsupportedOperationError(path, "layers and arguments that Keras 3 has", str(exc), "rebuild that layer in Keras 3") from None
    except ImportError as exc:
        raise errors.MissingDependencyError(
            path, f"TensorFlow, which Keras 3's {', '.join(needs_tensorflow) or 'layers here'} need on every backend",
            f"it is not installed ({str(exc).splitlines()[0][:120]})", "pip install 'kerasafe[tensorflow]'") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, EOFError, SystemError, NotImplementedError) as exc:
        if not safe_mode and refuse_reason(config):
            raise errors.UnsupportedOperationError(
                path, "Lambda code this Python can run", f"bytecode it cannot ({type(exc).__name__}: {str(exc)[:120]})",
                "rebuild the model in code (the Lambda as a function) and load the weights with ks.load_weights(model, file)",
            ) from None
        raise keras_failure(path, exc, f"an architecture (Keras {config.get('keras_version', '2')}) Keras 3 can rebuild") from None


def _remember_old_classes(model, config: dict) -> None:
    """Note on each layer the class old Keras wrote, where Keras 3 built another (a stand-in, a renamed class).

    tf.keras 2.13+ named a ``.weights.h5`` file's groups after those classes (legacy.weights).
    """
    inner = config.get("config")
    layers = inner if isinstance(inner, list) else (inner or {}).get("layers", []) if isinstance(inner, dict) else []
    old = {(l.get("config") or {}).get("name"): l.get("class_name") for l in layers if isinstance(l, dict)}
    for layer in model.layers:
        if old.get(layer.name) not in (None, type(layer).__name__):
            layer._kerasafe_old_class = old[layer.name]


def _class_names(value):
    """Every class_name in a config, nested ones included."""
    if isinstance(value, dict):
        if isinstance(value.get("class_name"), str):
            yield value["class_name"]
        for item in value.values():
            yield from _class_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _class_names(item)
