"""Shapes tf.keras models computed from other tensors' shapes, known before the model runs.

tf.keras 2 models often built a shape from a tensor's (``tf.reshape(x, [tf.shape(x)[0], -1])``,
``tf.ones(tf.shape(x))``); TensorFlow ran such arithmetic on tensors. Keras 3 infers each
layer's output before any value exists, and on JAX a shape must be known then, so the
arithmetic on shapes is followed here on the dimensions Keras knows: a ``tf.shape`` gives the
input's static dimensions (None where unknown), slicing, casting and stacking carry them
along, and an op whose output shape is made of them (reshape, broadcast_to, fill, ones,
zeros) gets that shape. The values travel on the symbolic tensors Keras hands from layer
to layer (``_kerasafe_value``).

Example:
    >>> resolve_reshape((None, 3, 4), [BATCH, -1])  # tf.reshape(x, [tf.shape(x)[0], -1])
    (None, 12)
"""

from __future__ import annotations

import math

import numpy as np

ATTRIBUTE = "_kerasafe_value"
_UNKNOWN = object()
# The size of the first axis where Keras does not know it: the batch, the same for every tensor of a model.
BATCH = "batch"


def value_of(tensor):
    """The static value a symbolic tensor carries (an int, None, or a list of them), or _UNKNOWN."""
    return getattr(tensor, ATTRIBUTE, _UNKNOWN)


def _substitute(arguments, marked: list, mark: str):
    """``arguments`` with each mark replaced by its tensor's static value (or _UNKNOWN)."""
    if isinstance(arguments, dict) and set(arguments) == {mark}:
        return value_of(marked[arguments[mark]])
    if isinstance(arguments, list):
        return [_substitute(a, marked, mark) for a in arguments]
    if isinstance(arguments, dict):
        return {k: _substitute(v, marked, mark) for k, v in arguments.items()}
    return arguments


def _dims(value) -> list | None:
    """A shape argument as dimensions (ints, -1 or None), or None when it is not known to be one."""
    if value is _UNKNOWN or not isinstance(value, list | tuple):
        return None
    out = []
    for d in value:
        if isinstance(d, list | tuple) and len(d) == 1:
            d = d[0]
        if d is _UNKNOWN:
            d = None
        if d is not None and d != BATCH and not isinstance(d, int | np.integer):
            return None
        out.append(d if d is None or d == BATCH else int(d))
    return out


def resolve_reshape(shape: tuple, target: list) -> tuple:
    """The shape a reshape of ``shape`` to ``target`` gives (one -1 inferred where the rest is known).

    A target entry BATCH (``tf.shape(x)[0]`` where the batch size is not known yet) keeps the
    input's unknown first axis, so the -1 can still be counted from the other axes.
    """
    dims = list(target)
    source = list(shape)
    if BATCH in dims and source and source[0] is None:
        source = source[1:]
        dims_known = [d for d in dims if d not in (BATCH, -1)]
    else:
        dims_known = [d for d in dims if d != -1]
    if dims.count(-1) == 1:
        known = None not in source and None not in dims_known
        dims[dims.index(-1)] = math.prod(source) // max(1, math.prod(dims_known)) if known else None
    return tuple(None if d == BATCH else d for d in dims)


def static_spec(function: str, first, marked: list, arguments: dict, mark: str):
    """(shape, dtype, value) of one TF op's output when the shape arithmetic decides it, else None."""
    arguments = _substitute(arguments, marked, mark)
    if function in ("compat.v1.shape", "shape"):
        value = [BATCH if i == 0 and d is None else d for i, d in enumerate(first.shape)]
        return (len(first.shape),), arguments.get("out_type") or "int32", value
    if function == "__operators__.getitem" and isinstance(value_of(first), list):
        spec = arguments.get("slice_spec")
        if isinstance(spec, int) and -len(value_of(first)) <= spec < len(value_of(first)):
            return (), first.dtype, value_of(first)[spec]
        if isinstance(spec, dict) and {"start", "stop", "step"} >= set(spec):
            picked = value_of(first)[slice(spec.get("start"), spec.get("stop"), spec.get("step"))]
            return (len(picked),), first.dtype, picked
        return None
    if function == "cast" and value_of(first) is not _UNKNOWN:
        return tuple(first.shape), arguments.get("dtype"), value_of(first)
    if function in ("stack", "concat") and isinstance(first, list | tuple) and all(value_of(t) is not _UNKNOWN for t in first):
        values = [value_of(t) for t in first]
        flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
        return (len(flat),), first[0].dtype, flat
    if function in ("reshape", "broadcast_to"):
        target = _dims(arguments.get("shape"))
        if target is None:
            return None
        shape = resolve_reshape(tuple(first.shape), target) if function == "reshape" else tuple(
            None if d == BATCH else d for d in target)
        return shape, first.dtype, _UNKNOWN
    if function in ("eye", "linalg.eye"):
        rows = value_of(first) if first is not None and not isinstance(first, int) else first
        columns = arguments.get("num_columns")
        batch = _dims(arguments.get("batch_shape")) if arguments.get("batch_shape") is not None else []
        if batch is None or (rows is not None and not isinstance(rows, int | np.integer)) or rows is _UNKNOWN:
            return None
        batch = [None if d == BATCH else d for d in batch]
        columns = rows if columns is None or columns is _UNKNOWN else columns
        return (*batch, rows, columns if isinstance(columns, int | np.integer) else None), arguments.get("dtype") or "float32", _UNKNOWN
    if function in ("fill", "ones", "zeros"):
        dims = _dims(value_of(first) if not isinstance(first, list | tuple) else [value_of(t) for t in first])
        if dims is None:
            return None
        dims = [None if d == BATCH else d for d in dims]
        value = arguments.get("value", 0.0)
        dtype = arguments.get("dtype") or ("int32" if function == "fill" and isinstance(value, int) else "float32")
        return tuple(dims), dtype, _UNKNOWN
    return None


def unknown() -> object:
    return _UNKNOWN
