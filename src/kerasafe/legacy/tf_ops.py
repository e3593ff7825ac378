"""tf.keras 2's ``TFOpLambda`` / ``SlicingOpLambda`` layers (TensorFlow ops in a Functional model), on Keras 3 ops.

tf.keras 2 recorded ``inputs / 255.0``, ``tf.reshape(x, ...)`` or ``x[:, :3]`` in a
Functional model as layers naming the TensorFlow function, with its other arguments
in the call record. Keras 3 has no such layer; kerasafe rebuilds each as its ``TFOp``
layer computing the Keras 3 op of the same meaning (tf_functions.OPS), on any
backend. A function not in the table is an error naming it (table_core checks it
before anything is built).

Example:
    >>> import numpy as np
    >>> from kerasafe.legacy.tf_ops import tf_op_layer_class
    >>> layer = tf_op_layer_class()(function="math.truediv", arguments={"y": 2.0}, name="tf.math.truediv")
    >>> np.asarray(layer(np.array([2.0, 4.0]))).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

import numpy as np

from .. import _keras
from . import tf_shape_values
from .rules import refuse
from .tf_functions import OPS

# The layer classes tf.keras 2 recorded TensorFlow functions as.
LAYER_CLASSES = ("TFOpLambda", "SlicingOpLambda")
_ADVICE = "rebuild that part of the model with Keras 3 ops (keras.ops) and load the weights by name"
# Where a tensor stood among an op's other arguments: {"__kerasafe_input__": n} is the node's input n.
INPUT_MARK = "__kerasafe_input__"
# The op's first argument when tf.keras recorded it as a constant rather than a tensor.
FIRST_CONSTANT = "__kerasafe_first_argument__"


def _is_tensor_reference(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:])


def _mark_tensors(value, extra: list):
    """``value`` with every tensor reference replaced by a mark, the references appended to ``extra``."""
    if _is_tensor_reference(value):
        extra.append(value)
        return {INPUT_MARK: len(extra) - 1}
    if isinstance(value, list):
        return [_mark_tensors(v, extra) for v in value]
    if isinstance(value, dict):
        return {k: _mark_tensors(v, extra) for k, v in value.items()}
    return value


def _one_node(node, name: str, class_name: str):
    """(first-argument records, whether it was a list, constant arguments with marks, tensor references) of one call."""
    if isinstance(node, list) and node and isinstance(node[0], str):
        records, listed = [node], False  # a bare record: the first argument was one tensor
    else:
        records, listed = list(node), True
    constant = None
    if len(records) == 1 and records[0][0] == "_CONSTANT_VALUE":
        # The first argument was a constant (``2.0 * x`` as multiply(2.0, y=x)): the tensors are elsewhere.
        constant, records = {"value": records[0][2]}, [[*records[0][:2], None, records[0][3] if len(records[0]) == 4 else {}]]
    kwargs = [dict(r[3]) if len(r) == 4 and isinstance(r[3], dict) else {} for r in records]
    if any(k != kwargs[0] for k in kwargs):
        raise refuse(name, class_name, "one TensorFlow-op call with different arguments per input", _ADVICE)
    extra: list = []
    arguments = _mark_tensors({k: v for k, v in (kwargs[0] if kwargs else {}).items() if k != "name"}, extra)
    if constant is not None:
        if not extra:  # tf.einsum("ij,jk->ik", a, b) was recorded so: its tensors are not in the file
            raise refuse(name, class_name, "a TensorFlow op recorded without any of its tensors (tf.keras cannot reload it either)", _ADVICE)
        return [], "constant", dict(arguments, **{FIRST_CONSTANT: constant["value"]}), extra
    return [list(r[:3]) for r in records], listed, arguments, extra


def arguments_into_config(layer: dict) -> dict:
    """Move a TF-op layer's constant call arguments (``y=255.0``, ``shape=[...]``) from its call record into its config.

    Keras 3 traces call arguments as tensors when it infers shapes, so constants such
    as a reshape's target shape must be part of the layer, not of the call. Tensors
    among the other arguments (``x * y`` was recorded as ``multiply(x, y=<y>)``, a
    reshape to ``[tf.shape(x)[0], -1]``) become further inputs of the node, marked where
    they stood, because Keras 3's loader connects only a node's inputs. Call once per
    layer, on tf.keras's own node records (a bare record means one tensor, a list of
    records a list of tensors).
    """
    name = (layer.get("config") or {}).get("name", layer.get("name"))
    calls = [_one_node(node, name, layer.get("class_name")) for node in layer.get("inbound_nodes") or []]
    if any((c[1], c[2], len(c[0])) != (calls[0][1], calls[0][2], len(calls[0][0])) for c in calls):
        raise refuse(name, layer.get("class_name"), "one TensorFlow-op layer called with different arguments", _ADVICE)
    config = dict(layer.get("config") or {})
    config["arguments"] = calls[0][2] if calls else {}
    if calls and calls[0][1] == "constant":
        config["first_inputs"] = -1  # no tensor in front: every input is a marked one
    elif calls and (calls[0][1] or calls[0][3]):
        # The node's inputs are then a list: the first argument's tensors, then the marked ones.
        config["first_inputs"] = len(calls[0][0]) if calls[0][1] else 0
    nodes = [[*(r + [{}] for r in records), *([*ref, {}] for ref in extra)] for records, _, _, extra in calls]
    return dict(layer, config=config, inbound_nodes=nodes)


def _unmark(value, tensors):
    if isinstance(value, dict) and set(value) == {INPUT_MARK}:
        return tensors[value[INPUT_MARK]]
    if isinstance(value, list):
        return [_unmark(v, tensors) for v in value]
    if isinstance(value, dict):
        return {k: _unmark(v, tensors) for k, v in value.items()}
    return value


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
        """One TensorFlow function tf.keras 2 recorded, computed with Keras 3 ops (kerasafe.legacy.tf_functions.OPS).

        ``first_inputs``: absent when the node's input is the function's one tensor
        argument; otherwise the node's inputs are a list whose first ``first_inputs``
        are the function's first argument (0: a single tensor, the list's first item;
        -1: none, the first argument is the constant in ``arguments``) and the rest the
        tensors marked in ``arguments``. ``tensor_arguments`` is the
        older form (kerasafe 0.1's files): keyword names for the inputs after the first.
        """

        def __init__(self, function, arguments=None, first_inputs=None, tensor_arguments=(), **kwargs):
            super().__init__(**kwargs)
            # Shapes tf.keras computed with (tf.shape(x)[0]) arrive as NumPy and must stay so (tf_functions._shape).
            self._convert_input_args = False
            self._allow_non_tensor_positional_args = True
            if function not in OPS:
                raise ValueError(f"TensorFlow function '{function}' has no Keras 3 equivalent in kerasafe's table")
            self.function = function
            self.arguments = dict(arguments or {})  # the op's constant arguments, as tf.keras recorded them
            self.first_inputs = first_inputs
            self.tensor_arguments = list(tensor_arguments)

        def call(self, inputs, **kwargs):
            kwargs.pop("name", None)
            if self.tensor_arguments:
                kwargs.update(zip(self.tensor_arguments, inputs[1:]))
                inputs = inputs[0]
            arguments = self.arguments
            if self.first_inputs is not None:
                inputs = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
                if self.first_inputs < 0:  # the first argument is a constant; all inputs are marked ones
                    arguments = _unmark(arguments, inputs)
                    inputs = arguments.pop(FIRST_CONSTANT)
                else:
                    count = max(self.first_inputs, 1)
                    first, rest = inputs[:count], inputs[count:]
                    inputs = first if self.first_inputs else first[0]
                    arguments = _unmark(arguments, rest)
            return OPS[self.function](inputs, **{**arguments, **kwargs})

        def __call__(self, *args, **kwargs):
            # Shape arithmetic that tf_functions._shape kept in NumPy (so JAX sees static shapes) mixes
            # NumPy and tensors in one argument, which Keras's call checks refuse; a TFOp has no weights,
            # masks or training mode to set up, so such a call goes straight to the function.
            flat = keras.tree.flatten((args, kwargs))
            if any(isinstance(x, np.ndarray | np.generic) for x in flat) and not any(isinstance(x, keras.KerasTensor) for x in flat):
                return self.call(*args, **kwargs)
            return super().__call__(*args, **kwargs)

        def _split_inputs(self, inputs):
            """(the function's first argument, the tensors marked in its other arguments) of a call's inputs."""
            if self.first_inputs is None or self.tensor_arguments:
                return inputs, []
            parts = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
            if self.first_inputs < 0:
                return None, parts
            count = max(self.first_inputs, 1)
            return (parts[:count] if self.first_inputs else parts[0]), parts[count:]

        def compute_output_spec(self, *args, **kwargs):
            # Shape arithmetic (tf.shape(x)[0] into a reshape) is followed on the known dimensions: on JAX
            # a shape must be known before any value exists (tf_shape_values).
            first, marked = self._split_inputs(args[0] if args else kwargs.get("inputs"))
            static = tf_shape_values.static_spec(self.function, first, marked, self.arguments, INPUT_MARK)
            if static is not None:
                spec = keras.KerasTensor(static[0], dtype=static[1])
                if static[2] is not tf_shape_values.unknown():
                    setattr(spec, tf_shape_values.ATTRIBUTE, static[2])
                return spec
            return super().compute_output_spec(*args, **kwargs)

        def get_config(self):
            config = {**super().get_config(), "function": self.function, "arguments": self.arguments}
            if self.first_inputs is not None:
                config["first_inputs"] = self.first_inputs
            return dict(config, tensor_arguments=self.tensor_arguments) if self.tensor_arguments else config

    _CLASS.append(TFOp)
