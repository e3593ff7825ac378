"""TensorFlow's tf.nn functions (convolutions, pooling, normalization, ctc_loss) on Keras 3 ops, for tf_functions.OPS.

Each takes TensorFlow's own parameter names, as tf.keras 2 recorded them in a TFOpLambda
node, and refuses (ValueError) the layouts Keras 3 has no op for. TensorFlow's "same"
average pooling is here too: the AveragePooling stand-ins share it.

Example:
    >>> import numpy as np
    >>> x = np.arange(3.0).reshape(1, 3, 1)
    >>> np.asarray(average_pool_same(x, (2,), (1,), "channels_last")).ravel().tolist()
    [0.5, 1.5, 2.0]
"""

from __future__ import annotations

import numpy as np

from .. import _keras


def _ops():
    return _keras.keras().ops


def pool_of(kind, rank):
    def pool(input, ksize, strides, padding, data_format=None, **_):
        if data_format not in (None, "NWC", "NHWC", "NDHWC"):
            raise ValueError(f"tf.nn pooling in {data_format} has no Keras 3 equivalent here")
        size = ksize if isinstance(ksize, int) else tuple(ksize[1:-1]) if len(ksize) == rank + 2 else tuple(ksize)
        step = strides if isinstance(strides, int) else tuple(strides[1:-1]) if len(strides) == rank + 2 else tuple(strides)
        if kind == "average" and padding.upper() == "SAME":
            return average_pool_same(input, (size,) * rank if isinstance(size, int) else size,
                                     (step,) * rank if isinstance(step, int) else step, "channels_last")
        return getattr(_ops(), f"{kind}_pool")(input, size, step, padding=padding.lower(), data_format="channels_last")
    return pool


def average_pool_same(inputs, pool_size: tuple, strides: tuple, data_format: str):
    """TensorFlow's "same" average pooling, where a window averages only the input it covers.

    Keras 3 on PyTorch pads uneven windows with zeros and counts them; dividing the zero-padded
    input's window averages by the padded ones' gives TensorFlow's numbers on every backend.
    """
    ops = _ops()
    first = data_format == "channels_first"
    spatial = inputs.shape[2:] if first else inputs.shape[1:-1]
    pads = []
    for size, k, s in zip(spatial, pool_size, strides):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    padding = [(0, 0), (0, 0), *pads] if first else [(0, 0), *pads, (0, 0)]
    ones = ops.ones((1, *inputs.shape[1:]), dtype=inputs.dtype)

    def pool(x):
        return ops.average_pool(ops.pad(x, padding), pool_size, strides, padding="valid", data_format=data_format)
    return pool(inputs) / pool(ones)


def _spatial(value, rank):
    if value is None or isinstance(value, int):
        return value or 1
    return tuple(value[1:-1]) if len(value) == rank + 2 else tuple(value)


def conv_of_rank(rank):
    def conv(input=None, filters=None, stride=None, strides=None, padding="VALID", data_format=None, dilations=None,
             filter=None, value=None, **_):
        if data_format not in (None, "NWC", "NHWC", "NDHWC"):
            raise ValueError(f"tf.nn convolution in {data_format} has no Keras 3 equivalent here")
        x = value if input is None else input
        kernel = np.asarray(filters if filter is None else filter, "float32") if not hasattr(filters if filter is None else filter, "shape") \
            else (filters if filter is None else filter)
        return _ops().conv(x, kernel, strides=_spatial(strides if stride is None else stride, rank), padding=padding.lower(),
                           data_format="channels_last", dilation_rate=_spatial(dilations, rank))
    return conv


def depthwise_conv2d(input, filter, strides, padding, rate=None, data_format=None, dilations=None, **_):
    if data_format not in (None, "NHWC"):
        raise ValueError(f"tf.nn.depthwise_conv2d in {data_format} has no Keras 3 equivalent here")
    kernel = filter if hasattr(filter, "shape") else np.asarray(filter, "float32")
    return _ops().depthwise_conv(input, kernel, strides=_spatial(strides, 2), padding=padding.lower(),
                                 data_format="channels_last", dilation_rate=_spatial(rate or dilations, 2))


def block_op(name):
    def block(input, block_size, data_format="NHWC", **_):
        if data_format not in (None, "NHWC"):
            raise ValueError(f"tf.nn.{name} in {data_format} has no Keras 3 equivalent here")
        return getattr(_ops(), name)(input, block_size, data_format="channels_last")
    return block


def sigmoid_cross_entropy(labels=None, logits=None, _sentinel=None, **_):
    ops = _ops()
    # TensorFlow's stable form: max(x, 0) - x z + log(1 + exp(-|x|))
    return ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))


def _rank_of(x) -> int:
    return len(x.shape) - 2


def conv_nd(input, filters, strides=None, padding="VALID", data_format=None, dilations=None, **_):
    return conv_of_rank(_rank_of(input))(input=input, filters=filters, strides=strides, padding=padding, data_format=data_format,
                                   dilations=dilations)


def pool_nd(kind):
    def pool(input, ksize, strides, padding, data_format=None, **_):
        return pool_of(kind, _rank_of(input))(input, ksize, strides, padding, data_format)
    return pool


def conv_transpose(input, filters, output_shape, strides, padding="SAME", data_format=None, dilations=None, **_):
    if data_format not in (None, "NWC", "NHWC", "NDHWC"):
        raise ValueError(f"tf.nn.conv_transpose in {data_format} has no Keras 3 equivalent here")
    ops, rank = _ops(), _rank_of(input)
    kernel = filters if hasattr(filters, "shape") else np.asarray(filters, "float32")
    out = ops.conv_transpose(input, kernel, strides=_spatial(strides, rank), padding=padding.lower(),
                             data_format="channels_last", dilation_rate=_spatial(dilations, rank))
    wanted = [int(d) for d in list(output_shape)[1:-1] if isinstance(d, int | np.integer)]
    if len(wanted) == rank and tuple(out.shape[1:-1]) != tuple(wanted):
        raise ValueError(f"tf.nn.conv_transpose to output_shape {list(output_shape)} (not the size its padding gives) "
                         "has no Keras 3 equivalent here")
    return out


def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding, data_format=None, dilations=None, rate=None, **_):
    if data_format not in (None, "NHWC"):
        raise ValueError(f"tf.nn.separable_conv2d in {data_format} has no Keras 3 equivalent here")
    depthwise = depthwise_filter if hasattr(depthwise_filter, "shape") else np.asarray(depthwise_filter, "float32")
    pointwise = pointwise_filter if hasattr(pointwise_filter, "shape") else np.asarray(pointwise_filter, "float32")
    return _ops().separable_conv(input, depthwise, pointwise, strides=_spatial(strides, 2), padding=padding.lower(),
                                 data_format="channels_last", dilation_rate=_spatial(rate or dilations, 2))


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, **_):
    ops = _ops()
    inverse = ops.rsqrt(variance + variance_epsilon)
    if scale is not None:
        inverse = inverse * scale
    return x * inverse + ((offset if offset is not None else 0.0) - mean * inverse)


def ctc_loss(labels, logits, label_length, logit_length, logits_time_major=True, unique=None, blank_index=None, **_):
    if unique is not None or blank_index not in (None, 0):
        raise ValueError("tf.nn.ctc_loss with unique= or a blank_index other than 0 has no Keras 3 equivalent here")
    ops = _ops()
    if logits_time_major:
        logits = ops.transpose(logits, (1, 0, 2))
    return ops.ctc_loss(labels, logits, label_length, logit_length, mask_index=0)


def bias_add(value, bias, data_format):
    ops = _ops()
    bias = ops.convert_to_tensor(bias, dtype=value.dtype)
    if data_format in (None, "NHWC", "NWC", "NDHWC", "N...C"):
        return value + bias
    return value + ops.reshape(bias, (-1,) + (1,) * (len(value.shape) - 2))
