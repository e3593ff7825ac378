"""The model zoo the tests save and load: real Keras models covering what users build.

Importable by test subprocesses too (they need the registered custom layer).
"""

from __future__ import annotations

import numpy as np

import keras


@keras.saving.register_keras_serializable(package="kerasafe_tests")
class ScaledDense(keras.layers.Layer):
    """A custom layer with its own weights and config (y = scale * (x @ w))."""

    def __init__(self, units, scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="w")
        self.gain = self.add_weight(shape=(), initializer="ones", name="gain")

    def call(self, x):
        return self.scale * self.gain * keras.ops.matmul(x, self.w)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


def mlp():
    m = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax")],
        name="mlp",
    )
    m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return m


def residual_cnn():
    rng = np.random.default_rng(1)
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(rng.uniform(0, 1, (32, 8, 8, 3)).astype("float32"))
    inp = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Resizing(8, 8, name="resize")(inp)
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(x)
    x = norm(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    y = keras.layers.Activation("relu")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(y)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Activation("relu")(keras.layers.Add()([x, y]))
    x = keras.layers.Dropout(0.25)(keras.layers.GlobalAveragePooling2D()(x))
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    m = keras.Model(inp, out, name="residual_cnn")
    m.compile(keras.optimizers.SGD(1e-2, momentum=0.9), "sparse_categorical_crossentropy")
    return m


def nested():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(4)], name="inner")
    inp = keras.Input((6,))
    out = keras.layers.Dense(3, activation="softmax", name="head")(inner(inp))
    m = keras.Model(inp, out, name="nested")
    m.compile(keras.optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy")
    return m


def multi_io():
    a, b = keras.Input((5,), name="a"), keras.Input((3,), name="b")
    h = keras.layers.Dense(8, activation="relu", name="shared")(keras.layers.Concatenate()([a, b]))
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    m = keras.Model({"a": a, "b": b}, {"cls": cls, "reg": reg}, name="multi_io")
    m.compile(keras.optimizers.Adam(1e-3), {"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    return m


def custom():
    m = keras.Sequential([keras.Input((4,)), ScaledDense(3, scale=0.5, name="scaled"), keras.layers.Softmax()], name="custom")
    m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return m


BUILDERS = {"mlp": mlp, "residual_cnn": residual_cnn, "nested": nested, "multi_io": multi_io, "custom": custom}


def inputs(name: str, n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    if name == "mlp":
        return rng.normal(size=(n, 8)).astype("float32")
    if name == "residual_cnn":
        return rng.uniform(0, 255, size=(n, 12, 12, 3)).astype("float32")
    if name == "nested":
        return rng.normal(size=(n, 6)).astype("float32")
    if name == "multi_io":
        return {"a": rng.normal(size=(n, 5)).astype("float32"), "b": rng.normal(size=(n, 3)).astype("float32")}
    return rng.normal(size=(n, 4)).astype("float32")


def targets(name: str, n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, 3, size=(n,))
    if name == "multi_io":
        return {"cls": y, "reg": rng.normal(size=(n, 1)).astype("float32")}
    return y


def trained(name: str, steps: int = 2):
    """A zoo model after a few optimizer steps, so its optimizer holds real state."""
    from kerasafe import _keras

    _keras.set_random_seed(0)  # keras.utils.set_random_seed, minus importing TensorFlow on JAX
    m = BUILDERS[name]()
    m.fit(inputs(name), targets(name), batch_size=8, epochs=steps, verbose=0, shuffle=False)
    return m


def predict(model, x):
    out = model.predict(x, verbose=0)
    if isinstance(out, dict):
        return np.concatenate([np.asarray(out[k]).reshape(len(out[k]), -1) for k in sorted(out)], axis=1)
    return np.asarray(out)
