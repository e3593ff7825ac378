"""The TensorFlow functions tf.keras 2 recorded as TFOpLambda layers, each computed with Keras 3 ops.

Keys are the names tf.keras recorded (TensorFlow's canonical API name, ``tf.`` left
out: ``math.reduce_sum``, ``compat.v1.gather``); each function takes the call's first
argument positionally and the others under TensorFlow's own parameter names, as
tf.keras wrote them into the node. :data:`NO_KERAS3_EQUIVALENT` names the TensorFlow
functions that share a name with a Keras 3 op but cannot stand in a rebuilt model,
with the reason (README lists them). tests/test_legacy_layers.py checks that every
TensorFlow function with a Keras 3 op of the same meaning is in one of the two.

Example:
    >>> import numpy as np
    >>> np.asarray(OPS["math.reduce_sum"](np.ones((2, 3)), axis=1)).tolist()
    [3.0, 3.0]
"""

from __future__ import annotations

import numpy as np

from .. import _keras
from . import tf_nn


def _ops():
    return _keras.keras().ops


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _reduce(name):
    def reduce(input_tensor, axis=None, keepdims=False, **_):
        return getattr(_ops(), name)(input_tensor, axis=_axis(axis), keepdims=bool(keepdims))
    return reduce


def _unary(name):
    return lambda x, **_: getattr(_ops(), name)(x)


def _binary(name):
    return lambda x, y, **_: getattr(_ops(), name)(x, y)


def _feature(name):
    return lambda features, **_: getattr(_ops(), name)(features)


def _cumulative(name):
    def scan(x, axis=0, exclusive=False, reverse=False, **_):
        ops = _ops()
        if reverse:
            x = ops.flip(x, axis=axis)
        out = getattr(ops, name)(x, axis=axis)
        if exclusive:  # shift by one along the axis, the identity (0 or 1) first
            identity = ops.zeros_like(ops.take(x, [0], axis=axis)) if name == "cumsum" else ops.ones_like(ops.take(x, [0], axis=axis))
            length = ops.shape(x)[axis]
            out = ops.concatenate([identity, ops.take(out, ops.arange(0, length - 1), axis=axis)], axis=axis)
        return ops.flip(out, axis=axis) if reverse else out
    return scan


def _slice(x, slice_spec, **_):
    """``x[spec]`` from tf.keras's recorded slice spec: dicts of start/stop/step, ints, Ellipsis, None."""
    index = []
    for item in slice_spec if isinstance(slice_spec, list) else [slice_spec]:
        if isinstance(item, dict) and {"start", "stop", "step"} >= set(item):
            index.append(slice(item.get("start"), item.get("stop"), item.get("step")))
        elif isinstance(item, dict) and item.get("class_name") == "__ellipsis__" or item == "...":
            index.append(Ellipsis)
        else:
            index.append(item)
    if any(isinstance(i, slice) and (i.step or 1) < 0 for i in index):
        return _reversed_slices(x, index)
    return x[tuple(index)]


def _reversed_slices(x, index: list):
    """``x[index]`` where a slice steps backwards, which PyTorch's tensors refuse: those axes gathered in NumPy's order."""
    ops = _ops()
    axis, forward = 0, []
    for position, item in enumerate(index):
        if item is Ellipsis:
            skipped = len(x.shape) - sum(1 for i in index if i is not None and i is not Ellipsis)
            forward.append(item)
            axis += skipped
            continue
        if isinstance(item, slice) and (item.step or 1) < 0:
            x = ops.take(x, ops.convert_to_tensor(np.arange(x.shape[axis])[item]), axis=axis)
            forward.append(slice(None))
        else:
            forward.append(item)
        axis += 0 if item is None else 1
    return x[tuple(forward)]


def _tf_slice(input_, begin, size, **_):
    return input_[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


def _gather(params, indices, axis=None, batch_dims=0, **_):
    ops = _ops()
    axis = batch_dims if axis is None else axis
    indices = ops.convert_to_tensor(indices) if isinstance(indices, list | int) else indices
    if batch_dims == 0:
        return ops.take(params, indices, axis=axis)
    if len(indices.shape) == len(params.shape) and axis == batch_dims == len(params.shape) - 1:
        return ops.take_along_axis(params, indices, axis=axis)  # params[b, indices[b, j]]
    raise ValueError(f"tf.gather with batch_dims={batch_dims} and axis={axis} on these ranks has no Keras 3 equivalent here")


def _split(value, num_or_size_splits, axis=0, **_):
    if isinstance(num_or_size_splits, int):
        return _ops().split(value, num_or_size_splits, axis=axis)
    cuts = list(np.cumsum(num_or_size_splits)[:-1])  # TensorFlow gives sizes, Keras (NumPy) the cut points
    return _ops().split(value, cuts, axis=axis)


def _pad(tensor, paddings, mode="CONSTANT", constant_values=0, **_):
    mode = str(mode).lower()
    kwargs = {"constant_values": constant_values} if mode == "constant" else {}
    return _ops().pad(tensor, paddings, mode=mode, **kwargs)


def _one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, **_):
    ops = _ops()
    hot = ops.one_hot(indices, depth, axis=-1 if axis is None else axis, dtype=dtype or "float32")
    on, off = (1 if on_value is None else on_value), (0 if off_value is None else off_value)
    return hot if (on, off) == (1, 0) else hot * (on - off) + off


def _norm(tensor, ord="euclidean", axis=None, keepdims=None, keep_dims=None, **_):
    ord = None if ord in ("euclidean", "fro") else ord
    return _ops().norm(tensor, ord=ord, axis=_axis(axis), keepdims=bool(keepdims or keep_dims))


def _l2_normalize(x, axis=None, epsilon=1e-12, dim=None, **_):
    ops = _ops()
    axis = _axis(dim if axis is None else axis)
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


def _count_nonzero(input, axis=None, keepdims=None, dtype="int64", **_):
    ops = _ops()
    counted = ops.sum(ops.cast(ops.not_equal(input, 0), "int32"), axis=_axis(axis), keepdims=bool(keepdims))
    return ops.cast(counted, dtype or "int64")


def _sort(values, axis=-1, direction="ASCENDING", **_):
    out = _ops().sort(values, axis=axis)
    return _ops().flip(out, axis=axis) if direction == "DESCENDING" else out


def _argsort(values, axis=-1, direction="ASCENDING", **_):
    # Descending: argsort of the negated values keeps equal values in index order, as TensorFlow does.
    return _ops().argsort(-values if direction == "DESCENDING" else values, axis=axis)


def _matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False, **_):
    ops = _ops()
    if transpose_a or adjoint_a:
        a = ops.swapaxes(a, -1, -2)
    if transpose_b or adjoint_b:
        b = ops.swapaxes(b, -1, -2)
    return ops.matmul(a, b)


def _diag(diagonal, k=0, num_rows=-1, num_cols=-1, padding_value=0, **_):
    if k != 0 or num_rows != -1 or num_cols != -1 or padding_value != 0:
        raise ValueError("tf.linalg.diag with k, num_rows, num_cols or padding_value has no Keras 3 equivalent here")
    ops = _ops()
    return ops.expand_dims(diagonal, -1) * ops.eye(ops.shape(diagonal)[-1], dtype=diagonal.dtype)


def _resize(images, size, method="bilinear", preserve_aspect_ratio=False, antialias=False, **_):
    if preserve_aspect_ratio:
        raise ValueError("tf.image.resize with preserve_aspect_ratio=True has no Keras 3 equivalent here")
    return _ops().image.resize(images, tuple(size), interpolation=str(method), antialias=bool(antialias), data_format="channels_last")


def _shape(input, out_type=None, **_):
    """The input's shape: NumPy on JAX (where every dimension is known when the model runs), a tensor elsewhere.

    tf.keras models computed reshape targets from it (``[tf.shape(x)[0], -1]``); kept
    as NumPy, the arithmetic on it stays static, which JAX requires of a shape.
    """
    ops = _ops()
    dims = ops.shape(input)
    if _keras.backend_name() == "jax" and all(isinstance(d, int) for d in dims):
        return np.asarray(dims, dtype=out_type or "int32")
    return ops.stack([ops.cast(d, out_type or "int32") for d in dims])


def _size(input, out_type=None, **_):
    ops = _ops()
    dims = ops.shape(input)
    if _keras.backend_name() == "jax" and all(isinstance(d, int) for d in dims):
        return np.asarray(int(np.prod(dims)), dtype=out_type or "int32")
    return ops.cast(ops.size(input), out_type or "int32")


def _cast(x, dtype, **_):
    return _ops().cast(x, dtype)


def _convert_to_tensor(value, dtype=None, dtype_hint=None, **_):
    ops = _ops()
    tensor = ops.convert_to_tensor(value)
    return ops.cast(tensor, dtype) if dtype else tensor


def _like(kind):
    def like(input, dtype=None, **_):
        return getattr(_ops(), f"{kind}_like")(input, dtype=dtype)
    return like


def _lstsq(matrix, rhs, l2_regularizer):
    """tf.linalg.lstsq's default (fast) path: the regularized normal equations, solved."""
    ops = _ops()
    gram = ops.matmul(ops.swapaxes(matrix, -1, -2), matrix)
    if l2_regularizer:
        gram = gram + l2_regularizer * ops.eye(gram.shape[-1], dtype=gram.dtype)
    return ops.solve(gram, ops.matmul(ops.swapaxes(matrix, -1, -2), rhs))


def _searchsorted(sorted_sequence, values, side="left", out_type="int32", **_):
    """TensorFlow's searchsorted works row by row on the innermost axis (Keras 3's on one 1-D sequence)."""
    ops = _ops()
    before = ops.less if side == "left" else ops.less_equal
    counts = ops.sum(ops.cast(before(ops.expand_dims(sorted_sequence, -2), ops.expand_dims(values, -1)), "int32"), axis=-1)
    return ops.cast(counts, out_type or "int32")


def _psnr(a, b, max_val, **_):
    """tf.image.psnr: per image (over its last three axes), as TensorFlow computed it."""
    ops = _ops()
    mse = ops.mean(ops.square(ops.cast(a, "float32") - ops.cast(b, "float32")), axis=(-3, -2, -1))
    return 20.0 * ops.log(ops.cast(max_val, "float32")) / np.log(10.0) - (10.0 / np.log(10.0)) * ops.log(mse)


def _normalize(tensor, ord="euclidean", axis=None, **_):
    norm = _norm(tensor, ord=ord, axis=axis, keepdims=True)
    return tensor / norm, norm


def _eye(num_rows, num_columns=None, batch_shape=None, dtype="float32", **_):
    ops = _ops()
    matrix = ops.eye(int(num_rows), None if num_columns is None else int(num_columns), dtype=dtype or "float32")
    return ops.broadcast_to(matrix, (*[int(d) for d in batch_shape], *matrix.shape)) if batch_shape is not None else matrix


def _filled(kind):
    def filled(shape, dtype="float32", **_):
        return getattr(_ops(), kind)([int(d) for d in shape], dtype=dtype or "float32")
    return filled


def _complex_part(x, part: str):
    """angle/conj/imag as TensorFlow gives them, for real tensors too (which some backends' ops refuse)."""
    ops = _ops()
    if "complex" in str(x.dtype):
        return getattr(ops, part)(x)
    if part == "conj":
        return x
    if part == "imag":
        return ops.zeros_like(x)
    return ops.where(ops.less(x, 0), np.float32(np.pi), np.float32(0.0))  # angle of a real number


def _linspace(start, stop, num: int, axis: int):
    """tf.linspace of tensors: ``num`` steps from start to stop along a new ``axis`` (PyTorch's linspace takes none)."""
    ops = _ops()
    start, stop = ops.convert_to_tensor(start, "float32"), ops.convert_to_tensor(stop, "float32")
    rank = len(start.shape) + 1
    axis = axis % rank
    steps = np.linspace(0.0, 1.0, num, dtype="float32") if num > 1 else np.zeros(1, "float32")
    steps = ops.reshape(ops.convert_to_tensor(steps), [num if i == axis else 1 for i in range(rank)])
    return ops.expand_dims(start, axis) + ops.expand_dims(stop - start, axis) * steps


# tf function name (as recorded) -> how to compute it with Keras 3 ops.
OPS = {
    # operators (x + y, x[...]) and elementwise arithmetic
    "__operators__.add": _binary("add"), "math.add": _binary("add"), "math.subtract": _binary("subtract"),
    "math.multiply": _binary("multiply"), "math.truediv": _binary("divide"), "math.divide": _binary("divide"),
    "compat.v1.floor_div": _binary("floor_divide"), "math.floordiv": _binary("floor_divide"), "math.floormod": _binary("mod"),
    "math.maximum": _binary("maximum"), "math.minimum": _binary("minimum"), "math.pow": _binary("power"),
    "math.atan2": lambda y, x, **_: _ops().arctan2(y, x),
    "math.squared_difference": lambda x, y, **_: _ops().square(_ops().subtract(x, y)),
    "math.divide_no_nan": lambda x, y, **_: _ops().where(_ops().equal(y, 0), _ops().zeros_like(x * y), x / _ops().where(_ops().equal(y, 0), 1, y)),
    "math.xlogy": lambda x, y, **_: _ops().where(_ops().equal(x, 0), _ops().zeros_like(x * y), x * _ops().log(y)),
    "math.equal": _binary("equal"), "math.not_equal": _binary("not_equal"), "math.greater": _binary("greater"),
    "math.greater_equal": _binary("greater_equal"), "math.less": _binary("less"), "math.less_equal": _binary("less_equal"),
    "math.logical_and": _binary("logical_and"), "math.logical_or": _binary("logical_or"), "math.logical_xor": _binary("logical_xor"),
    "math.logical_not": _unary("logical_not"),
    "clip_by_value": lambda t, clip_value_min, clip_value_max, **_: _ops().clip(t, clip_value_min, clip_value_max),
    "where": lambda condition, x=None, y=None, **_: _ops().where(condition, x, y),
    "__operators__.getitem": _slice,
    # elementwise functions of one tensor
    **{f"math.{name}": _unary(keras_name) for name, keras_name in {
        "abs": "abs", "acos": "arccos", "acosh": "arccosh", "asin": "arcsin", "asinh": "arcsinh", "atan": "arctan",
        "atanh": "arctanh", "ceil": "ceil", "cos": "cos", "cosh": "cosh", "erf": "erf", "erfinv": "erfinv", "exp": "exp",
        "expm1": "expm1", "floor": "floor", "log": "log", "log1p": "log1p", "log_sigmoid": "log_sigmoid", "negative": "negative",
        "reciprocal": "reciprocal", "round": "round", "rsqrt": "rsqrt", "sigmoid": "sigmoid", "sign": "sign", "sin": "sin",
        "sinh": "sinh", "sqrt": "sqrt", "square": "square", "tan": "tan", "tanh": "tanh", "is_nan": "isnan", "is_inf": "isinf",
        "is_finite": "isfinite", "real": "real", "softsign": "softsign"}.items()},
    "math.erfc": lambda x, **_: 1.0 - _ops().erf(x),
    "math.softplus": _feature("softplus"), "identity": lambda input, **_: input, "stop_gradient": lambda input, **_: _ops().stop_gradient(input),
    "zeros_like": _like("zeros"), "ones_like": _like("ones"), "cast": _cast, "convert_to_tensor": _convert_to_tensor,
    # reductions and scans
    **{f"math.reduce_{name}": _reduce(keras_name) for name, keras_name in {
        "sum": "sum", "mean": "mean", "max": "max", "min": "min", "prod": "prod", "std": "std", "variance": "var",
        "logsumexp": "logsumexp", "any": "any", "all": "all"}.items()},
    "math.argmax": lambda input, axis=None, output_type="int64", **_: _ops().cast(_ops().argmax(input, axis=0 if axis is None else axis), output_type or "int64"),
    "math.argmin": lambda input, axis=None, output_type="int64", **_: _ops().cast(_ops().argmin(input, axis=0 if axis is None else axis), output_type or "int64"),
    "math.count_nonzero": _count_nonzero, "math.cumsum": _cumulative("cumsum"), "math.cumprod": _cumulative("cumprod"),
    "compat.v1.norm": _norm, "norm": _norm, "math.l2_normalize": _l2_normalize,
    "math.top_k": lambda input, k=1, sorted=True, **_: tuple(_ops().top_k(input, k, sorted=sorted)),
    "sort": _sort, "argsort": _argsort,
    "compat.v1.math.in_top_k": lambda predictions, targets, k, **_: _ops().in_top_k(targets, predictions, k),
    "math.in_top_k": lambda targets, predictions, k, **_: _ops().in_top_k(targets, predictions, k),
    # shapes and indexing
    "reshape": lambda tensor, shape, **_: _ops().reshape(tensor, shape),
    "compat.v1.transpose": lambda a, perm=None, **_: _ops().transpose(a, axes=perm),
    "transpose": lambda a, perm=None, **_: _ops().transpose(a, axes=perm),
    "expand_dims": lambda input, axis, **_: _ops().expand_dims(input, axis),
    "compat.v1.squeeze": lambda input, axis=None, squeeze_dims=None, **_: _ops().squeeze(input, axis=_axis(axis if axis is not None else squeeze_dims)),
    "squeeze": lambda input, axis=None, **_: _ops().squeeze(input, axis=_axis(axis)),
    "concat": lambda values, axis, **_: _ops().concatenate(values, axis=axis),
    "stack": lambda values, axis=0, **_: _ops().stack(values, axis=axis),
    "unstack": lambda value, num=None, axis=0, **_: tuple(_ops().unstack(value, num=num, axis=axis)),
    "split": lambda value, num_or_size_splits, axis=0, **_: tuple(_split(value, num_or_size_splits, axis)),
    "tile": lambda input, multiples, **_: _ops().tile(input, multiples),
    "repeat": lambda input, repeats, axis=None, **_: _ops().repeat(input, repeats, axis=axis),
    "reverse": lambda tensor, axis, **_: _ops().flip(tensor, axis=_axis(axis)),
    "compat.v1.gather": _gather, "gather": _gather, "compat.v1.pad": _pad, "pad": _pad, "slice": _tf_slice,
    "roll": lambda input, shift, axis, **_: _ops().roll(input, shift, axis=_axis(axis)),
    "broadcast_to": lambda input, shape, **_: _ops().broadcast_to(input, tuple(shape)),
    "one_hot": _one_hot, "compat.v1.shape": _shape, "shape": _shape, "compat.v1.size": _size, "size": _size,
    # linear algebra
    "linalg.matmul": _matmul, "tensordot": lambda a, b, axes, **_: _ops().tensordot(a, b, axes=axes),
    "linalg.trace": lambda x, **_: _ops().trace(x, axis1=-2, axis2=-1), "linalg.diag": _diag,
    "linalg.diag_part": lambda input, k=0, **_: _ops().diagonal(input, offset=k, axis1=-2, axis2=-1),
    "linalg.det": lambda input, **_: _ops().det(input), "linalg.inv": lambda input, adjoint=False, **_: _ops().inv(
        _ops().swapaxes(input, -1, -2) if adjoint else input),
    "linalg.cholesky": lambda input, **_: _ops().cholesky(input),
    "linalg.solve": lambda matrix, rhs, adjoint=False, **_: _ops().solve(_ops().swapaxes(matrix, -1, -2) if adjoint else matrix, rhs),
    "linalg.cross": lambda a, b, **_: _ops().cross(a, b),
    # neural-network functions
    "nn.relu": _feature("relu"), "nn.relu6": _feature("relu6"), "nn.elu": _feature("elu"), "nn.selu": _feature("selu"),
    "nn.softsign": _feature("softsign"),
    "nn.gelu": lambda features, approximate=False, **_: _ops().gelu(features, approximate=bool(approximate)),
    "nn.silu": lambda features, beta=1.0, **_: features * _ops().sigmoid(beta * features),
    "nn.leaky_relu": lambda features, alpha=0.2, **_: _ops().leaky_relu(features, negative_slope=alpha),
    "nn.softmax": lambda logits, axis=None, **_: _ops().softmax(logits, axis=-1 if axis is None else axis),
    "nn.log_softmax": lambda logits, axis=None, **_: _ops().log_softmax(logits, axis=-1 if axis is None else axis),
    "nn.bias_add": lambda value, bias, data_format=None, **_: tf_nn.bias_add(value, bias, data_format),
    "nn.max_pool1d": tf_nn.pool_of("max", 1), "nn.max_pool2d": tf_nn.pool_of("max", 2), "nn.max_pool3d": tf_nn.pool_of("max", 3),
    "nn.avg_pool1d": tf_nn.pool_of("average", 1), "nn.avg_pool2d": tf_nn.pool_of("average", 2), "nn.avg_pool3d": tf_nn.pool_of("average", 3),
    "compat.v1.nn.conv1d": tf_nn.conv_of_rank(1), "compat.v1.nn.conv2d": tf_nn.conv_of_rank(2), "nn.conv2d": tf_nn.conv_of_rank(2), "nn.conv1d": tf_nn.conv_of_rank(1),
    "compat.v1.nn.depthwise_conv2d": tf_nn.depthwise_conv2d, "nn.depthwise_conv2d": tf_nn.depthwise_conv2d,
    "nn.depth_to_space": tf_nn.block_op("depth_to_space"), "nn.space_to_depth": tf_nn.block_op("space_to_depth"),
    "compat.v1.nn.sigmoid_cross_entropy_with_logits": tf_nn.sigmoid_cross_entropy, "nn.sigmoid_cross_entropy_with_logits": tf_nn.sigmoid_cross_entropy,
    "image.resize": _resize,
    "conv": tf_nn.conv_nd, "nn.convolution": tf_nn.conv_nd, "nn.conv3d": tf_nn.conv_of_rank(3),
    "nn.avg_pool": tf_nn.pool_nd("average"), "nn.max_pool": tf_nn.pool_nd("max"),
    "nn.conv1d_transpose": tf_nn.conv_transpose, "nn.conv2d_transpose": tf_nn.conv_transpose, "nn.conv3d_transpose": tf_nn.conv_transpose,
    "nn.conv_transpose": tf_nn.conv_transpose, "nn.separable_conv2d": tf_nn.separable_conv2d,
    "compat.v1.nn.separable_conv2d": tf_nn.separable_conv2d,
    "fill": lambda dims, value, **_: _ops().full([int(d) for d in dims], value, dtype="int32" if isinstance(value, int) else None), "nn.batch_normalization": tf_nn.batch_normalization,
    "nn.ctc_loss": tf_nn.ctc_loss,
    # images
    "image.rot90": lambda image, k=1, **_: _ops().rot90(image, k=k, axes=(len(image.shape) - 3, len(image.shape) - 2)),
    "image.transpose": lambda image, **_: _ops().swapaxes(image, -3, -2), "image.psnr": _psnr,
    # more elementwise and linear algebra
    "dtypes.saturate_cast": lambda value, dtype, **_: _ops().saturate_cast(value, dtype),
    "math.angle": lambda input, **_: _complex_part(input, "angle"), "math.conj": lambda x, **_: _complex_part(x, "conj"),
    "math.imag": lambda input, **_: _complex_part(input, "imag"), "math.nextafter": lambda x1, x2, **_: _ops().nextafter(x1, x2),
    "searchsorted": _searchsorted,
    "unravel_index": lambda indices, dims, **_: _ops().stack(_ops().unravel_index(indices, tuple(int(d) for d in dims)), axis=0),
    "linalg.logdet": lambda matrix, **_: _ops().logdet(matrix),
    "linalg.lstsq": lambda matrix, rhs, l2_regularizer=0.0, **_: _lstsq(matrix, rhs, l2_regularizer),
    "linalg.pinv": lambda a, rcond=None, **_: _ops().pinv(a, rcond=rcond) if rcond is not None else _ops().pinv(a),
    "linalg.matrix_rank": lambda a, tol=None, **_: _ops().matrix_rank(a, tol=tol),
    "linalg.normalize": _normalize,
    # made from the model's shapes (tf.ones(tf.shape(x)), tf.eye(n, batch_shape=...))
    "ones": _filled("ones"), "zeros": _filled("zeros"), "eye": _eye, "linalg.eye": _eye,
    "linspace": lambda start, stop, num, axis=0, **_: _linspace(start, stop, int(num), axis),
}


_PYTHON_FUNCTION = "it takes a Python function, which no config can hold (tf.keras could not save it as a layer)"
_VALUE_SIZED = "its output's size depends on the values, which Keras 3 needs fixed before any value exists (on JAX)"
_UP_TO_SIGN = "its vectors are fixed only up to sign, which each backend's LAPACK chooses its own way"
# TensorFlow functions named like a Keras 3 op that a rebuilt model cannot hold, and why (README lists them).
NO_KERAS3_EQUIVALENT = {
    "einsum": "tf.keras recorded only the equation, not the tensors (tf.keras itself cannot reload such a file)",
    "meshgrid": "tf.keras recorded none of its tensors (they are variadic; tf.keras itself cannot reload such a file)",
    "cond": _PYTHON_FUNCTION, "scan": _PYTHON_FUNCTION, "while_loop": _PYTHON_FUNCTION, "vectorized_map": _PYTHON_FUNCTION,
    "custom_gradient": _PYTHON_FUNCTION,
    "is_tensor": "it answers a Python bool about its argument, not a tensor a layer could give",
    "linalg.slogdet": "tf.keras refused to record it as a layer (it returns a tuple of two tensors)",
    "nn.moments": "never a layer of its own: tf.keras recorded the ops it is made of (rebuilt one by one)",
    "math.bincount": _VALUE_SIZED, "unique": _VALUE_SIZED, "math.segment_sum": _VALUE_SIZED, "math.segment_max": _VALUE_SIZED,
    "math.segment_min": _VALUE_SIZED, "math.segment_prod": _VALUE_SIZED,
    "linalg.eig": _UP_TO_SIGN, "linalg.eigh": _UP_TO_SIGN, "linalg.qr": _UP_TO_SIGN, "linalg.svd": _UP_TO_SIGN,
}
