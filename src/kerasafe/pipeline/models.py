"""The architectures ``kerasafe train --arch`` builds, with preprocessing layers at the input.

Scaling (Rescaling 1/255 for images, an adapted Normalization for tables) and, with
``augment``, random flips/rotations/shifts/zoom (active only while training) are
layers of the model, so they travel inside the saved file.

Example:
    >>> from kerasafe.pipeline.data import load_dataset
    >>> from kerasafe.pipeline.models import build
    >>> build("auto", load_dataset("digits")).name
    'shallownet'
"""

from __future__ import annotations

from .. import _keras, errors
from ..checkpoint.sources import is_lazy
from .data import Dataset

ARCHITECTURES = ("auto", "mlp", "shallownet", "resnet")


def _image_input(keras, ds: Dataset, augment: bool):
    inputs = keras.Input(ds.x_train.shape[1:], name="image")
    x = keras.layers.Rescaling(ds.preprocessing["scale"], name="rescale")(inputs)
    if augment:  # tutorial 001's ImageDataGenerator, as layers that are identity at inference
        x = keras.layers.RandomFlip("horizontal", name="augment_flip")(x)
        x = keras.layers.RandomRotation(20 / 360, name="augment_rotate")(x)
        x = keras.layers.RandomTranslation(0.05, 0.05, name="augment_shift")(x)
        x = keras.layers.RandomZoom(0.05, name="augment_zoom")(x)
    return inputs, x


def _table_input(keras, ds: Dataset):
    inputs = keras.Input(ds.x_train.shape[1:], name="features")
    if is_lazy(ds.x_train):  # rows on disk: the same statistics, read in chunks
        from .streaming import column_statistics

        mean, variance = column_statistics(ds.x_train)
        norm = keras.layers.Normalization(mean=mean, variance=variance, name="standardize")
    else:
        norm = keras.layers.Normalization(name="standardize")
        norm.adapt(ds.x_train)
    return inputs, norm(inputs)


def _head(keras, x, n_classes):
    return keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)


def _mlp(keras, ds, augment):
    if ds.kind == "table":
        inputs, x = _table_input(keras, ds)
        x = keras.layers.Dense(12, activation="relu")(x)
        x = keras.layers.Dense(8, activation="relu")(x)
    else:
        inputs, x = _image_input(keras, ds, augment)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu")(x)
        x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, _head(keras, x, len(ds.labels)), name="mlp")


def _shallownet(keras, ds, augment):
    inputs, x = _image_input(keras, ds, augment)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, len(ds.labels)), name="shallownet")


def _residual_block(keras, x, filters, stride):
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = keras.layers.BatchNormalization()(shortcut)
    return keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))


def _resnet(keras, ds, augment):
    inputs, x = _image_input(keras, ds, augment)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        x = _residual_block(keras, x, filters, stride)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(keras, x, len(ds.labels)), name="resnet")


def choose(ds: Dataset) -> str:
    """``auto``: an MLP for tables, ShallowNet for small images, a small ResNet for larger ones."""
    if ds.kind == "table":
        return "mlp"
    height, width = ds.preprocessing["size"]
    return "shallownet" if height * width <= 32 * 32 else "resnet"


def build(arch: str, ds: Dataset, *, augment: bool = False):
    """A fresh model for ``ds`` (uncompiled)."""
    if arch not in ARCHITECTURES:
        raise errors.KerasafeError(None, f"an architecture among {ARCHITECTURES}", repr(arch), "pass --arch with one of those")
    name = choose(ds) if arch == "auto" else arch
    if ds.kind == "table" and name != "mlp":
        raise errors.KerasafeError(ds.source, "images for a convolutional architecture", "a table (CSV)", "use --arch mlp or auto")
    keras = _keras.keras()
    return {"mlp": _mlp, "shallownet": _shallownet, "resnet": _resnet}[name](keras, ds, augment)
