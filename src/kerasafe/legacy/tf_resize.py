"""Image resizing exactly as TensorFlow's ``tf.image.resize`` computed it, for tf.keras 2's Resizing layer.

Keras 3 resizes with each backend's own kernels: it has no ``area``, ``gaussian`` or
``mitchellcubic`` method, and its ``bicubic`` (JAX's Keys cubic over the whole image)
differs from TensorFlow's (a 1024-entry coefficient table, out-of-image taps dropped and
the rest renormalized) by up to 5e-4. tf.keras models resized with TensorFlow's, so
kerasafe's ``TFResizing`` stand-in does too: for each axis it computes, in NumPy, the
matrix of weights TensorFlow's kernel gives every (output, input) pair, then resizes
with two matrix products, on any backend. The kernels follow TensorFlow's
``resize_bilinear_op``, ``resize_bicubic_op``, ``resize_area_op`` and
``scale_and_translate_op`` (half-pixel centres, no antialiasing: tf.image.resize's
defaults, which tf.keras's Resizing used).

Example:
    >>> import numpy as np
    >>> resize_weights("area", 4, 2).tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

_TABLE_SIZE = 1024  # TensorFlow's bicubic coefficient table


@functools.cache
def _bicubic_table(a: float = -0.5) -> np.ndarray:
    table = np.empty((_TABLE_SIZE + 1, 2), np.float32)
    for i in range(_TABLE_SIZE + 1):
        x = i / _TABLE_SIZE
        table[i, 0] = ((a + 2) * x - (a + 3)) * x * x + 1
        x += 1.0
        table[i, 1] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return table


def _bicubic(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    table = _bicubic_table()
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        position = (out + 0.5) * scale - 0.5
        floor = math.floor(position)
        offset = int(np.rint((position - floor) * _TABLE_SIZE))
        taps = (table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0], table[_TABLE_SIZE - offset, 1])
        inside = [(floor - 1 + k, float(w)) for k, w in enumerate(taps) if 0 <= floor - 1 + k < in_size]
        total = sum(w for _, w in inside)
        for index, w in inside:  # taps outside the image are dropped and the rest renormalized
            weights[out, index] += w / total if abs(total) >= 1000 * np.finfo(np.float32).tiny else w
    return weights


def _bilinear(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        position = (out + 0.5) * scale - 0.5
        floor = math.floor(position)
        lower, upper = max(floor, 0), min(math.ceil(position), in_size - 1)
        lerp = position - floor
        weights[out, lower] += 1 - lerp
        weights[out, upper] += lerp
    return weights


def _nearest(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        weights[out, max(0, min(math.floor((out + 0.5) * scale), in_size - 1))] = 1.0
    return weights


def _area(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        start, end = out * scale, (out + 1) * scale
        for i in range(math.floor(start), math.ceil(end)):
            weights[out, min(i, in_size - 1)] += (min(i + 1, end) - max(i, start)) / scale
    return weights


def _lanczos(radius):
    def kernel(x):
        if x > radius:
            return 0.0
        if x <= 1e-3:
            return 1.0
        return radius * math.sin(math.pi * x) * math.sin(math.pi * x / radius) / (math.pi * math.pi * x * x)
    return kernel, radius


def _gaussian():
    radius, sigma = 1.5, 0.5
    return (lambda x: 0.0 if x >= radius else math.exp(-x * x / (2 * sigma * sigma))), radius


def _mitchell():
    def kernel(x):
        if x >= 2.0:
            return 0.0
        if x >= 1.0:
            return (((-7.0 / 18.0) * x + 2.0) * x - 10.0 / 3.0) * x + 16.0 / 9.0
        return (((7.0 / 6.0) * x - 2.0) * x) * x + 8.0 / 9.0
    return kernel, 2.0


_SPAN_KERNELS = {"lanczos3": lambda: _lanczos(3.0), "lanczos5": lambda: _lanczos(5.0), "gaussian": _gaussian, "mitchellcubic": _mitchell}


def _scale_and_translate(method: str, in_size: int, out_size: int) -> np.ndarray:
    kernel, radius = _SPAN_KERNELS[method]()
    inv_scale = in_size / out_size
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        sample = (out + 0.5) * inv_scale
        start = min(max(math.ceil(sample - radius - 0.5), 0), in_size - 1)
        end = min(max(math.floor(sample + radius - 0.5), 0), in_size - 1) + 1
        taps = [kernel(abs(source + 0.5 - sample)) for source in range(start, end)]
        total = sum(taps)
        for source, w in zip(range(start, end), taps):
            weights[out, source] = w / total if abs(total) >= 1000 * np.finfo(np.float32).tiny else w
    return weights


@functools.lru_cache(maxsize=64)
def resize_weights(method: str, in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix that resizes one axis as ``tf.image.resize(method=...)`` did."""
    if method in _SPAN_KERNELS:
        return _scale_and_translate(method, in_size, out_size)
    return {"bilinear": _bilinear, "bicubic": _bicubic, "area": _area, "nearest": _nearest}[method](in_size, out_size)


def _crop_box(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """tf.keras's smart_resize crop: the largest centred box with the target's aspect ratio."""
    crop_height = min(height, int(np.float32(width * target_height) / np.float32(target_width)))
    crop_width = min(width, int(np.float32(height * target_width) / np.float32(target_height)))
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


@keras.saving.register_keras_serializable(package="kerasafe")
class TFResizing(keras.layers.Layer):
    """tf.keras 2's Resizing with TensorFlow's own resampling (see the module docstring); channels last, as tf.keras's."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.interpolation = str(interpolation)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        resize_weights(self.interpolation, 2, 1)  # an unknown method fails here, not on the first call

    def call(self, inputs):
        height, width = inputs.shape[-3], inputs.shape[-2]
        if height is None or width is None:
            raise ValueError("TFResizing needs the image's height and width known when the model runs")
        top, left = 0, 0
        if self.crop_to_aspect_ratio:
            top, left, height, width = _crop_box(height, width, self.height, self.width)
            inputs = inputs[..., top:top + height, left:left + width, :]
        rows = ops.convert_to_tensor(resize_weights(self.interpolation, height, self.height).astype("float32"))
        cols = ops.convert_to_tensor(resize_weights(self.interpolation, width, self.width).astype("float32"))
        images = ops.cast(inputs, "float32")
        out = ops.einsum("hi,...ijc->...hjc", rows, images)
        out = ops.einsum("wj,...hjc->...hwc", cols, out)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-3], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio}
