"""A whole model config that Keras 1, Keras 2 or tf.keras 2 wrote, rewritten layer by layer for Keras 3.

The model's shape stays Keras 2's (Keras 3 reads Keras 2's node lists); each layer
becomes a Keras 3 serialized layer (``module``/``class_name``/``config``) through the
family tables (rules.translate_layer), so Keras 3 builds it with its own current
deserializer rather than its legacy one, which drops multi-axis ``axis`` lists and
knows none of the renames.

Example:
    >>> old = {"class_name": "Sequential", "keras_version": "1.1.1", "config": [
    ...     {"class_name": "Dense", "config": {"name": "d", "output_dim": 4, "input_dim": 3, "init": "glorot_uniform"}}]}
    >>> new = upgrade_model_config(old)
    >>> [l["class_name"] for l in new["config"]["layers"]], new["config"]["layers"][1]["config"]["units"]
    (['InputLayer', 'Dense'], 4)
"""

from __future__ import annotations

import contextvars

from . import tf_ops
from .rules import registered_function, translate_layer
from .table_keras1 import keras1_to_keras2

# Keys tf.keras 2.13+ writes around each layer that Keras 3 takes from nowhere but its own writer.
TF_KERAS_LAYER_WRAPPER_KEYS = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")
MODEL_CLASSES = ("Sequential", "Functional", "Model")

# Keras 1, Keras 2 and tf.keras 2 defined hard_sigmoid as clip(0.2x + 0.5, 0, 1); Keras 3's
# is clip(x/6 + 0.5, 0, 1). The old one is a function kerasafe registers with Keras.
LEGACY_ACTIVATIONS = {"hard_sigmoid": "keras2_hard_sigmoid"}
ACTIVATION_ARGUMENTS = ("activation", "recurrent_activation")

_KERAS1 = contextvars.ContextVar("kerasafe_legacy_keras1", default=False)


def is_legacy_config(config: dict) -> bool:
    """True for a model config that Keras 1, Keras 2 or tf.keras 2 wrote (not Keras 3).

    Keras 3 writes a ``module`` beside every model's ``class_name``; the older writers
    did not, and Keras 1/2.0 wrote a Sequential's ``config`` as a list.
    """
    version = str(config.get("keras_version") or "")
    return version[:2] in ("1.", "2.") or isinstance(config.get("config"), list) or "module" not in config


def _old_activations(config: dict) -> dict:
    for key in ACTIVATION_ARGUMENTS:
        if isinstance(config.get(key), str) and config[key] in LEGACY_ACTIVATIONS:
            config[key] = registered_function(LEGACY_ACTIVATIONS[config[key]])
    return config


def layer_config_for_keras3(layer: dict) -> dict:
    """One old layer dict ({"class_name", "config", ...}) as a Keras 3 serialized layer; models recurse."""
    class_name, config = layer["class_name"], dict(layer.get("config") or {})
    if _KERAS1.get():
        class_name, config = keras1_to_keras2(class_name, config)
    if class_name in MODEL_CLASSES:
        return upgrade_model_config({"class_name": class_name, "config": config})
    return translate_layer(class_name, _old_activations(config))


def _call_records_as_lists(nodes):
    # tf.keras 2 wrote a TFOpLambda's one-input call as the bare record [name, node, tensor, kwargs]
    # rather than a list of such records; Keras 3 reads only the list.
    return [[node] if isinstance(node, list) and node and isinstance(node[0], str) else node for node in nodes]


def _is_tensor_reference(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:])


def _keras_tensor(reference: list) -> dict:
    # Keras 3 connects a call's keyword tensors only from this form (its reader of Keras 2's lists
    # passes them through as the plain lists); the shape is a placeholder it replaces on connecting.
    return {"class_name": "__keras_tensor__", "config": {"shape": [], "dtype": "float32", "keras_history": list(reference)}}


def _tensor_keywords_connected(node):
    """A Keras 2 call record whose keyword arguments hold tensors (``mask=``, ``initial_state=``), in Keras 3's form."""
    if not isinstance(node, list) or not node or not all(isinstance(r, list) and len(r) == 4 for r in node):
        return node

    def convert(value):
        if _is_tensor_reference(value):
            return _keras_tensor(value)
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    kwargs = node[0][3]
    if not isinstance(kwargs, dict) or convert(kwargs) == kwargs:
        return node
    inputs = [_keras_tensor(r[:3]) for r in node]
    return {"args": [inputs[0] if len(inputs) == 1 else inputs], "kwargs": convert(kwargs)}


def _upgrade_layer(layer: dict) -> dict:
    """A layer of a model's ``layers`` list: translated, its place in the graph (name, nodes) kept."""
    layer = {k: v for k, v in layer.items() if k not in TF_KERAS_LAYER_WRAPPER_KEYS}
    if layer.get("class_name") in tf_ops.LAYER_CLASSES:
        layer = tf_ops.arguments_into_config(layer)  # reads tf.keras's own records (bare = one tensor)
    elif isinstance(layer.get("inbound_nodes"), list):
        nodes = _call_records_as_lists(layer["inbound_nodes"])
        layer["inbound_nodes"] = [_tensor_keywords_connected(node) for node in nodes]
    new = layer_config_for_keras3(layer)
    return {**{k: v for k, v in layer.items() if k not in ("class_name", "config")}, **new}


def _input_layer_for(first: dict) -> dict | None:
    """The InputLayer Keras 3 needs in front of a Sequential whose first layer carried the input shape."""
    config = first["config"]
    shape = config.pop("batch_input_shape", None) or config.pop("batch_shape", None)
    if shape is None and config.get("input_shape") is not None:
        shape = [None, *config.pop("input_shape")]
    if shape is None and "input_dim" in config and first["class_name"] != "Embedding":
        shape = [None, config.pop("input_dim")]
    if shape is None:
        return None
    # Keras 1's input_dtype is the input's type (int32 token ids), not the layer's.
    dtype = config.pop("__input_dtype__", None) or config.get("dtype") or "float32"
    if isinstance(dtype, dict):
        dtype = "float32"  # a mixed-precision policy: the model's input stays float32
    return translate_layer("InputLayer", {"batch_input_shape": shape, "dtype": dtype, "name": f"{config.get('name', 'input')}_input"})


def _renumber_nested_model_calls(config: dict) -> None:
    """Node indices of calls to a nested model, as Keras 3 counts them.

    tf.keras 2 gave every model a node of its own (0) before its first call, so the
    calls were 1, 2, ...; Keras 3's models have no such node. Its reader takes one off
    for a nested Functional model in ``output_layers`` only, so the rest is done here.
    """
    models = {l["config"].get("name") or l.get("name"): l["class_name"] for l in config["layers"] if l["class_name"] in MODEL_CLASSES}
    models = {name: cls for name, cls in models.items() if name}
    if not models:
        return

    def shift(ref, outputs=False):
        if _is_tensor_reference(ref) or (isinstance(ref, list) and len(ref) == 4 and isinstance(ref[0], str) and isinstance(ref[1], int)):
            if ref[0] in models and ref[1] > 0 and not (outputs and models[ref[0]] != "Sequential"):
                return [ref[0], ref[1] - 1, *ref[2:]]
            return ref
        if isinstance(ref, dict) and ref.get("class_name") == "__keras_tensor__":
            history = ref["config"]["keras_history"]
            return {**ref, "config": {**ref["config"], "keras_history": shift(history)}}
        if isinstance(ref, list):
            return [shift(r, outputs) for r in ref]
        if isinstance(ref, dict):
            return {k: shift(v, outputs) for k, v in ref.items()}
        return ref

    for layer in config["layers"]:
        layer["inbound_nodes"] = shift(layer.get("inbound_nodes", []))
    config["output_layers"] = shift(config.get("output_layers", []), outputs=True)


def upgrade_model_config(config: dict) -> dict:
    """A Keras 1/2/tf.keras 2 model config rewritten so Keras 3 builds the same model.

    Keras 2.0-2.2 wrote a Sequential's ``config`` as a bare list of layers and put the
    input shape on the first layer; Keras 1 used other argument names (table_keras1);
    tf.keras 2.13+ wraps each layer in keys Keras 3 does not take there. Raises
    rules.LegacyError naming the layer and argument that have no Keras 3 meaning.
    """
    token = None
    if str(config.get("keras_version") or "").startswith("1."):
        token = _KERAS1.set(True)
    try:
        inner = config["config"]
        if isinstance(inner, list):
            inner = {"name": "sequential", "layers": inner}
        inner = dict(inner)
        layers = [_upgrade_layer(layer) for layer in inner.get("layers", [])]
        if config["class_name"] == "Sequential":
            if layers and layers[0]["class_name"] != "InputLayer":
                input_layer = _input_layer_for(layers[0])
                if input_layer is not None:
                    layers.insert(0, input_layer)
            for layer in layers[1:]:  # Keras 3 takes the input shape from the InputLayer only
                for key in ("batch_input_shape", "batch_shape", "input_shape"):
                    layer["config"].pop(key, None)
        for layer in layers:
            for key in ("__input_dtype__", "input_dim") if layer["class_name"] != "Embedding" else ("__input_dtype__",):
                layer["config"].pop(key, None)
            if layer["class_name"] not in ("InputLayer", *MODEL_CLASSES):
                layer["config"].pop("batch_input_shape", None)
        inner["layers"] = layers
        if config["class_name"] != "Sequential":
            _renumber_nested_model_calls(inner)
        return {"class_name": config["class_name"], "config": inner}
    finally:
        if token is not None:
            _KERAS1.reset(token)
