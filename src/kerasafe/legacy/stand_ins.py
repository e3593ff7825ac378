"""Keras 3 layers that compute what tf.keras 2 layers without a Keras 3 class computed.

Each keeps the old layer's arguments and weights (same names, shapes and order),
so the old weights load into it unchanged and a converted ``.keras`` file names it
as ``kerasafe>Class``. Keras finds them once kerasafe has registered them: on
``import kerasafe`` (as soon as Keras is imported too) or on kerasafe's first load.

This module imports Keras: it is imported only when one of these layers is needed.

Example:
    >>> import numpy as np
    >>> from kerasafe.legacy.stand_ins import ThresholdedReLU
    >>> np.asarray(ThresholdedReLU(theta=1.0)(np.array([0.5, 1.0, 2.0]))).tolist()
    [0.0, 0.0, 2.0]
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
from keras import ops

register = keras.saving.register_keras_serializable(package="kerasafe")

from . import tf_resize  # noqa: E402,F401 - registers TFResizing


def stand_in(registered_name: str):
    """The class registered as ``registered_name`` ("kerasafe>Name")."""
    from .. import _keras

    _keras.keras()  # registers kerasafe's functions and the TFOp layer too
    cls = keras.saving.get_registered_object(registered_name)
    if cls is None:
        raise ValueError(f"no kerasafe stand-in is registered as {registered_name}")
    return cls


@register
class ThresholdedReLU(keras.layers.Layer):
    """tf.keras 2's ThresholdedReLU: x where x > theta, else 0 (Keras 3's ReLU(threshold=) keeps x == theta)."""

    def __init__(self, theta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.theta = float(theta)

    def call(self, inputs):
        return inputs * ops.cast(ops.greater(inputs, self.theta), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "theta": self.theta}


def _output_length(length: int, kernel: int, padding: str, stride: int) -> int:
    return (length - kernel + stride) // stride if padding == "valid" else (length + stride - 1) // stride


def _connected(length: int, kernel: int, position: int, stride: int, padding: str) -> range:
    """The input positions one output position sees (tf.keras's conv_connected_inputs, one axis)."""
    left = kernel // 2
    center = position * stride + (left if padding == "valid" else 0)
    return range(max(0, center - left), min(length, center - left + kernel))


class _LocallyConnected(keras.layers.Layer):
    """A convolution with a separate kernel at every output position, computed as tf.keras 2 did.

    tf.keras kept the weights in one of three layouts (``implementation`` 1: one kernel
    per output position; 2: a dense masked matrix; 3: the non-zero entries of a sparse
    matrix). This layer keeps the file's layout and, when built, precomputes which stored
    weight multiplies which input for every output position; the call gathers them
    (NumPy index tables, Keras ops), so all three give the same numbers on any backend.
    """

    rank = 0

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, implementation=1, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = int(filters)
        self.kernel_size = self._tuple(kernel_size)
        self.strides = self._tuple(strides)
        self.padding = str(padding).lower()
        self.data_format = data_format or keras.config.image_data_format()
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.implementation = int(implementation)
        if self.implementation not in (1, 2, 3) or (self.implementation == 1 and self.padding != "valid"):
            raise ValueError(f"implementation={implementation} with padding={padding!r} is not a layout tf.keras wrote")

    def _tuple(self, value):
        return tuple(int(v) for v in value) if isinstance(value, list | tuple) else (int(value),) * self.rank

    def _spatial(self, input_shape):
        first = self.data_format == "channels_first"
        return tuple(input_shape[2:] if first else input_shape[1:-1]), input_shape[1] if first else input_shape[-1]

    def build(self, input_shape):
        spatial, channels = self._spatial(input_shape)
        out = tuple(_output_length(n, k, self.padding, s) for n, k, s in zip(spatial, self.kernel_size, self.strides))
        first = self.data_format == "channels_first"
        kernel_shape = {
            1: (math.prod(out), math.prod(self.kernel_size) * channels, self.filters),
            2: (channels, *spatial, self.filters, *out) if first else (*spatial, channels, *out, self.filters),
        }.get(self.implementation)
        self._inputs_index, self._kernel_index = self._index_tables(spatial, channels, out)
        if kernel_shape is None:  # 3: the sparse matrix's non-zero entries
            kernel_shape = (int((self._kernel_index >= 0).sum()),)
        self.output_spatial = out
        self.kernel = self.add_weight(shape=kernel_shape, initializer=self.kernel_initializer, name="kernel",
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = self.add_weight(shape=(*out, self.filters), initializer=self.bias_initializer, name="bias",
                                    regularizer=self.bias_regularizer, constraint=self.bias_constraint) if self.use_bias else None

    def _index_tables(self, spatial, channels, out):
        """(which input element, which stored weight) for every (output position, window slot[, filter]); -1 = none."""
        first = self.data_format == "channels_first"
        window = list(itertools.product(*(range(k) for k in self.kernel_size)))
        slots = [(c, w) for c in range(channels) for w in window] if first else [(c, w) for w in window for c in range(channels)]
        positions = list(itertools.product(*(range(n) for n in out)))
        in_dims = (channels, *spatial) if first else (*spatial, channels)
        out_dims = (self.filters, *out) if first else (*out, self.filters)
        inputs_index = np.full((len(positions), len(slots)), -1, np.int64)
        kernel_index = np.full((len(positions), len(slots), self.filters), -1, np.int64)
        sparse = {}
        for q, position in enumerate(positions):
            ranges = [_connected(n, k, p, s, self.padding) for n, k, p, s in zip(spatial, self.kernel_size, position, self.strides)]
            starts = [p * s + (k // 2 if self.padding == "valid" else 0) - k // 2
                      for p, s, k in zip(position, self.strides, self.kernel_size)]
            for j, (c, offset) in enumerate(slots):
                point = tuple(start + o for start, o in zip(starts, offset))
                if not all(p in r for p, r in zip(point, ranges)):
                    continue  # "same" padding: a slot past the edge multiplies zeros
                inputs_index[q, j] = np.ravel_multi_index((c, *point) if first else (*point, c), in_dims)
                for f in range(self.filters):
                    if self.implementation == 1:
                        kernel_index[q, j, f] = (q * len(slots) + j) * self.filters + f
                    elif self.implementation == 2:
                        kernel_index[q, j, f] = np.ravel_multi_index(
                            (c, *point, f, *position) if first else (*point, c, *position, f),
                            (channels, *spatial, self.filters, *out) if first else (*spatial, channels, *out, self.filters))
                    else:
                        out_index = np.ravel_multi_index((f, *position) if first else (*position, f), out_dims)
                        sparse[(out_index, int(inputs_index[q, j]))] = (q, j, f)
        if self.implementation == 3:  # the stored values follow tf.keras's sorted (output, input) index pairs
            for k, key in enumerate(sorted(sparse)):
                kernel_index[sparse[key]] = k
        return inputs_index, kernel_index

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        flat = ops.reshape(inputs, (batch, -1))
        flat = ops.concatenate([flat, ops.zeros((batch, 1), dtype=flat.dtype)], axis=1)  # index -1 reads this zero
        patches = ops.take(flat, ops.convert_to_tensor(self._inputs_index.reshape(-1)), axis=1)
        patches = ops.reshape(patches, (batch, *self._inputs_index.shape))
        stored = ops.reshape(self.kernel, (-1,))
        index = self._kernel_index
        kernel = ops.where(index >= 0, ops.take(stored, ops.convert_to_tensor(np.maximum(index, 0))), ops.zeros((), stored.dtype))
        outputs = ops.einsum("bqi,qif->bqf", patches, kernel)
        outputs = ops.reshape(outputs, (batch, *self.output_spatial, self.filters))
        if self.data_format == "channels_first":
            outputs = ops.transpose(outputs, (0, self.rank + 1, *range(1, self.rank + 1)))
            if self.bias is not None:  # tf.keras's bias_add reshaped (not transposed) the bias here
                outputs = outputs + ops.reshape(self.bias, (1, self.filters, *self.output_spatial))
        elif self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        spatial, _ = self._spatial(input_shape)
        out = tuple(_output_length(n, k, self.padding, s) for n, k, s in zip(spatial, self.kernel_size, self.strides))
        return (input_shape[0], self.filters, *out) if self.data_format == "channels_first" else (input_shape[0], *out, self.filters)

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format, "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias, "kernel_initializer": ser(self.kernel_initializer), "bias_initializer": ser(self.bias_initializer),
                "kernel_regularizer": ser(self.kernel_regularizer), "bias_regularizer": ser(self.bias_regularizer),
                "kernel_constraint": ser(self.kernel_constraint), "bias_constraint": ser(self.bias_constraint),
                "implementation": self.implementation}


@register
class LocallyConnected1D(_LocallyConnected):
    """tf.keras 2's LocallyConnected1D (same arguments and weights)."""

    rank = 1


@register
class LocallyConnected2D(_LocallyConnected):
    """tf.keras 2's LocallyConnected2D (same arguments and weights)."""

    rank = 2


class _RandomResize(keras.layers.Layer):
    """tf.keras 2's RandomHeight/RandomWidth: the input unchanged at inference, resized by a random factor in training."""

    axis = 0

    def __init__(self, factor, interpolation="bilinear", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        low, high = (-factor, factor) if isinstance(factor, int | float) else factor
        self._range = (1.0 + float(low), 1.0 + float(high))
        self.interpolation = interpolation
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        shape = ops.shape(inputs)
        axis = len(shape) - 3 + self.axis  # (batch,) height, width, channels
        scale = keras.random.uniform((), *self._range, seed=self.generator)
        size = [shape[-3], shape[-2]]
        size[self.axis] = ops.cast(ops.cast(shape[axis], "float32") * scale, "int32")
        return ops.image.resize(inputs, size, interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[len(shape) - 3 + self.axis] = None
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "interpolation": self.interpolation, "seed": self.seed}


@register
class RandomHeight(_RandomResize):
    """tf.keras 2's RandomHeight (Keras 3 has none)."""

    axis = 0


@register
class RandomWidth(_RandomResize):
    """tf.keras 2's RandomWidth (Keras 3 has none)."""

    axis = 1


@register
class RandomFourierFeatures(keras.layers.Layer):
    """tf.keras 2's experimental RandomFourierFeatures: cos(x @ (unscaled_kernel / kernel_scale) + bias)."""

    def __init__(self, output_dim, kernel_initializer="gaussian", scale=None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = int(output_dim)
        self.kernel_initializer = kernel_initializer
        self.scale = scale

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        # Created in tf.keras's order, with its trainable flags, so its weight lists line up.
        if str(self.kernel_initializer).lower() == "gaussian":
            initializer = keras.initializers.RandomNormal(stddev=1.0)
        else:  # "laplacian": Cauchy samples, as tf.keras drew them
            uniform = np.random.uniform(size=(input_dim, self.output_dim))
            initializer = keras.initializers.Constant(np.tan(np.pi * (uniform - 0.5)).astype("float32"))
        self.unscaled_kernel = self.add_weight(name="unscaled_kernel", shape=(input_dim, self.output_dim),
                                               initializer=initializer, trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.output_dim,), trainable=False,
                                    initializer=keras.initializers.RandomUniform(0.0, 2 * np.pi))
        scale = self.scale if self.scale is not None else (
            math.sqrt(input_dim / 2.0) if str(self.kernel_initializer).lower() == "gaussian" else 1.0)
        self.kernel_scale = self.add_weight(name="kernel_scale", shape=(1,), initializer=keras.initializers.Constant(scale),
                                            trainable=True, constraint="non_neg")

    def call(self, inputs):
        kernel = self.unscaled_kernel / self.kernel_scale
        return ops.cos(ops.matmul(ops.cast(inputs, "float32"), kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "kernel_initializer": self.kernel_initializer, "scale": self.scale}


@register
class TimeMajor(keras.layers.Layer):
    """A recurrent layer that tf.keras 2 ran with ``time_major=True``: (time, batch, ...) in, time first out.

    Keras 3's recurrent layers take (batch, time, ...) only; this wrapper swaps the
    first two axes around the same layer (whose weights are the old layer's).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer if isinstance(layer, keras.layers.Layer) else keras.layers.deserialize(layer)

    def build(self, input_shape):
        self.layer.build((input_shape[1], input_shape[0], *input_shape[2:]))

    def _swap(self, tensor):
        return ops.swapaxes(tensor, 0, 1)

    def call(self, inputs, training=None):
        outputs = self.layer(self._swap(inputs), training=training)
        sequences = getattr(self.layer, "return_sequences", False)
        if isinstance(outputs, list | tuple):  # return_state: [output, *states]; only a sequence output is time first
            return [self._swap(outputs[0]) if sequences else outputs[0], *outputs[1:]]
        return self._swap(outputs) if sequences else outputs

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((input_shape[1], input_shape[0], *input_shape[2:]))
        sequences = getattr(self.layer, "return_sequences", False)

        def swap(shape):
            return (shape[1], shape[0], *shape[2:]) if sequences else shape
        if isinstance(inner, list):
            return [swap(inner[0]), *inner[1:]]
        return swap(inner)

    def get_config(self):
        return {**super().get_config(), "layer": keras.layers.serialize(self.layer)}


@register
class MultiAxisBatchNormalization(keras.layers.Layer):
    """tf.keras 2's BatchNormalization over several axes at once (Keras 3's takes one axis).

    Its parameters keep tf.keras's shape: the input's rank, the normalized axes' sizes
    and 1 elsewhere. Training normalizes with the batch's moments over the other axes
    and moves the moving statistics by ``momentum``, as tf.keras's non-fused path did.
    """

    def __init__(self, axis, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = [int(a) for a in axis]
        self.momentum, self.epsilon, self.center, self.scale = float(momentum), float(epsilon), bool(center), bool(scale)
        self.initializers = {k: keras.initializers.get(v) for k, v in (
            ("beta", beta_initializer), ("gamma", gamma_initializer), ("moving_mean", moving_mean_initializer),
            ("moving_variance", moving_variance_initializer))}
        self.regularizers = {"beta": keras.regularizers.get(beta_regularizer), "gamma": keras.regularizers.get(gamma_regularizer)}
        self.constraints = {"beta": keras.constraints.get(beta_constraint), "gamma": keras.constraints.get(gamma_constraint)}

    def build(self, input_shape):
        rank = len(input_shape)
        self.axis = sorted(a % rank for a in self.axis)
        shape = tuple(input_shape[i] if i in self.axis else 1 for i in range(rank))

        def weight(name, trainable):
            return self.add_weight(name=name, shape=shape, initializer=self.initializers[name], trainable=trainable,
                                   regularizer=self.regularizers.get(name), constraint=self.constraints.get(name))
        # tf.keras's order: gamma, beta, then the moving statistics.
        self.gamma = weight("gamma", True) if self.scale else None
        self.beta = weight("beta", True) if self.center else None
        self.moving_mean = weight("moving_mean", False)
        self.moving_variance = weight("moving_variance", False)

    def call(self, inputs, training=False):
        x = ops.cast(inputs, self.moving_mean.dtype)
        if training:
            reduce = [i for i in range(len(x.shape)) if i not in self.axis]
            mean, variance = ops.moments(x, axes=reduce, keepdims=True)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        out = (x - mean) * ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            out = out * self.gamma
        if self.beta is not None:
            out = out + self.beta
        return ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                **{f"{k}_initializer": ser(v) for k, v in self.initializers.items()},
                **{f"{k}_regularizer": ser(v) for k, v in self.regularizers.items()},
                **{f"{k}_constraint": ser(v) for k, v in self.constraints.items()}}


class _AveragePoolingSame(keras.layers.Layer):
    """tf.keras 2's AveragePooling with ``padding="same"``: each window averages only the input it covers.

    Keras 3 on PyTorch pads unevenly padded windows with zeros and counts them
    (tf_nn.average_pool_same computes TensorFlow's averages on every backend).
    """

    rank = 0

    def __init__(self, pool_size, strides=None, padding="same", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size) if isinstance(pool_size, list | tuple) else (int(pool_size),) * self.rank
        strides = self.pool_size if strides is None else strides
        self.strides = tuple(strides) if isinstance(strides, list | tuple) else (int(strides),) * self.rank
        self.data_format = data_format or keras.config.image_data_format()

    def call(self, inputs):
        from .tf_nn import average_pool_same

        return average_pool_same(inputs, self.pool_size, self.strides, self.data_format)

    def compute_output_shape(self, input_shape):
        first = self.data_format == "channels_first"
        spatial = input_shape[2:] if first else input_shape[1:-1]
        out = tuple(None if n is None else -(-n // s) for n, s in zip(spatial, self.strides))
        return (input_shape[0], input_shape[1], *out) if first else (input_shape[0], *out, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides, "padding": "same",
                "data_format": self.data_format}


@register
class AveragePooling1DSame(_AveragePoolingSame):
    """tf.keras 2's AveragePooling1D(padding="same"), with TensorFlow's averages on every backend."""

    rank = 1


@register
class AveragePooling2DSame(_AveragePoolingSame):
    """tf.keras 2's AveragePooling2D(padding="same"), with TensorFlow's averages on every backend."""

    rank = 2


@register
class AveragePooling3DSame(_AveragePoolingSame):
    """tf.keras 2's AveragePooling3D(padding="same"), with TensorFlow's averages on every backend."""

    rank = 3
