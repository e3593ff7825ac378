"""tf.keras 2's ``TFOpLambda`` / ``SlicingOpLambda`` layers (TensorFlow ops in a Functional model), on Keras 3 ops.

tf.keras 2 recorded ``inputs / 255.0``, ``tf.reshape(x, ...)`` or ``x[:, :3]`` in a
Functional model as layers naming the TensorFlow function, with its other
arguments in the call record. Keras 3 has no such layer; kerasafe rebuilds each with
the Keras 3 op of the same meaning (:data:`OPS`, names as tf.keras recorded them,
the ``tf.`` left out), on any backend. A function not in the table is an error
naming it (translation.py checks before building).

Example:
    >>> import numpy as np
    >>> from kerasafe.legacy.tf_ops import tf_op_layer_class
    >>> layer = tf_op_layer_class()(function="math.truediv", arguments={"y": 2.0}, name="tf.math.truediv")
    >>> np.asarray(layer(np.array([2.0, 4.0]))).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

from .. import _keras
from .rules import refuse

# The layer classes tf.keras 2 recorded TensorFlow functions as.
LAYER_CLASSES = ("TFOpLambda", "SlicingOpLambda")
_ADVICE = "rebuild that part of the model with Keras 3 ops (keras.ops) and load the weights by name"


def _ops():
    return _keras.keras().ops


def _slice(x, slice_spec):
    """``x[spec]`` from tf.keras's recorded slice spec: dicts of start/stop/step, ints, Ellipsis, None."""
    index = []
    for item in slice_spec if isinstance(slice_spec, list) else [slice_spec]:
        if isinstance(item, dict) and {"start", "stop", "step"} >= set(item):
            index.append(slice(item.get("start"), item.get("stop"), item.get("step")))
        elif isinstance(item, dict) and item.get("class_name") == "__ellipsis__" or item == "...":
            index.append(Ellipsis)
        else:
            index.append(item)
    return x[tuple(index)]


# tf function name (as recorded) -> how to compute it with Keras 3 ops, given the recorded arguments.
OPS = {
    "math.truediv": lambda x, y, **_: _ops().divide(x, y),
    "math.divide": lambda x, y, **_: _ops().divide(x, y),
    "math.multiply": lambda x, y, **_: _ops().multiply(x, y),
    "__operators__.add": lambda x, y, **_: _ops().add(x, y),
    "math.add": lambda x, y, **_: _ops().add(x, y),
    "math.subtract": lambda x, y, **_: _ops().subtract(x, y),
    "math.maximum": lambda x, y, **_: _ops().maximum(x, y),
    "math.minimum": lambda x, y, **_: _ops().minimum(x, y),
    "math.pow": lambda x, y, **_: _ops().power(x, y),
    "math.exp": lambda x, **_: _ops().exp(x),
    "math.log": lambda x, **_: _ops().log(x),
    "math.sqrt": lambda x, **_: _ops().sqrt(x),
    "math.square": lambda x, **_: _ops().square(x),
    "math.abs": lambda x, **_: _ops().abs(x),
    "math.sigmoid": lambda x, **_: _ops().sigmoid(x),
    "math.tanh": lambda x, **_: _ops().tanh(x),
    "nn.relu": lambda x, **_: _ops().relu(x),
    "nn.softmax": lambda x, axis=-1, **_: _ops().softmax(x, axis=axis),
    "reshape": lambda x, shape, **_: _ops().reshape(x, shape),
    "concat": lambda values, axis, **_: _ops().concatenate(values, axis=axis),
    "stack": lambda values, axis=0, **_: _ops().stack(values, axis=axis),
    "expand_dims": lambda x, axis, **_: _ops().expand_dims(x, axis),
    "squeeze": lambda x, axis=None, **_: _ops().squeeze(x, axis=axis),
    "compat.v1.transpose": lambda x, perm=None, **_: _ops().transpose(x, axes=perm),
    "transpose": lambda x, perm=None, **_: _ops().transpose(x, axes=perm),
    "cast": lambda x, dtype, **_: _ops().cast(x, dtype),
    "math.reduce_mean": lambda x, axis=None, keepdims=False, **_: _ops().mean(x, axis=axis, keepdims=keepdims),
    "math.reduce_sum": lambda x, axis=None, keepdims=False, **_: _ops().sum(x, axis=axis, keepdims=keepdims),
    "math.reduce_max": lambda x, axis=None, keepdims=False, **_: _ops().max(x, axis=axis, keepdims=keepdims),
    "math.reduce_min": lambda x, axis=None, keepdims=False, **_: _ops().min(x, axis=axis, keepdims=keepdims),
    "__operators__.getitem": lambda x, slice_spec, **_: _slice(x, slice_spec),
}


def _is_tensor_reference(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:])


def arguments_into_config(layer: dict) -> dict:
    """Move a TF-op layer's constant call arguments (``y=255.0``, ``shape=[...]``) from its call record into its config.

    Keras 3 traces call arguments as tensors when it infers shapes, so constants
    such as a reshape's target shape must be part of the layer, not of the call.
    A second tensor passed by keyword (``x * y`` was recorded as ``multiply(x, y=<y>)``)
    becomes a second input of the node, named in ``tensor_arguments``, because Keras 3's
    loader connects only a node's inputs, never tensors inside its keyword arguments.
    """
    name = (layer.get("config") or {}).get("name", layer.get("name"))
    found, tensor_names = [], []
    for node in layer.get("inbound_nodes") or []:
        for record in list(node):
            if len(record) == 4 and isinstance(record[3], dict):
                arguments = {k: v for k, v in record[3].items() if k != "name"}
                tensors = [k for k, v in arguments.items() if _is_tensor_reference(v)]
                if tensors and len(node) != 1:
                    raise refuse(name, layer.get("class_name"), "a TensorFlow op taking a list of tensors and another tensor as a keyword argument", _ADVICE)
                node.extend([*arguments.pop(k), {}] for k in tensors)
                found.append(arguments)
                tensor_names.append(tensors)
                record[3] = {}
    if any(a != found[0] for a in found) or any(t != tensor_names[0] for t in tensor_names):
        raise refuse(name, layer.get("class_name"), "one TensorFlow-op layer called with different arguments", _ADVICE)
    config = dict(layer.get("config") or {}, arguments=found[0] if found else {})
    if tensor_names and tensor_names[0]:
        config["tensor_arguments"] = tensor_names[0]
    return dict(layer, config=config)


_CLASS = []  # the class, once built (with Keras's first import: _keras.keras registers it)


def tf_op_layer_class():
    """The Keras 3 layer standing in for tf.keras 2's TFOpLambda and SlicingOpLambda (registered as kerasafe>TFOp)."""
    _keras.keras()
    return _CLASS[0]


def register(keras) -> None:
    """Build and register the stand-in layer, so .keras files holding it load after ``import kerasafe``."""
    if _CLASS:
        return

    @keras.saving.register_keras_serializable(package="kerasafe", name="TFOp")
    class TFOp(keras.layers.Layer):
        """One TensorFlow function tf.keras 2 recorded, computed with Keras 3 ops (kerasafe.legacy.tf_ops.OPS)."""

        def __init__(self, function, arguments=None, tensor_arguments=(), **kwargs):
            super().__init__(**kwargs)
            if function not in OPS:
                raise ValueError(f"TensorFlow function '{function}' has no Keras 3 equivalent in kerasafe's table")
            self.function = function
            self.arguments = dict(arguments or {})  # the op's constant arguments, as tf.keras recorded them
            # keyword arguments that were tensors: they arrive as inputs[1:], in this order
            self.tensor_arguments = list(tensor_arguments)

        def call(self, inputs, **kwargs):
            kwargs.pop("name", None)
            if self.tensor_arguments:
                kwargs.update(zip(self.tensor_arguments, inputs[1:]))
                inputs = inputs[0]
            return OPS[self.function](inputs, **{**self.arguments, **kwargs})

        def get_config(self):
            config = {**super().get_config(), "function": self.function, "arguments": self.arguments}
            return dict(config, tensor_arguments=self.tensor_arguments) if self.tensor_arguments else config

    _CLASS.append(TFOp)
