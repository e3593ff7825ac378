"""Preprocessing and augmentation layers: the Keras 2 -> Keras 3 table.

The Random* augmentation layers return their input at inference; RandomHeight and
RandomWidth, which Keras 3 dropped, are rebuilt by kerasafe's stand-ins that do the
same (and resize randomly in training, as they did). Resizing methods Keras 3 lacks
or computes differently go to kerasafe's TFResizing (tf_resize.py). Lookup layers
carry their vocabulary in the config when it was given as a list; a vocabulary
learned by ``adapt`` lived only in TensorFlow's lookup table, which no HDF5 file,
JSON text or TensorFlow checkpoint holds: such a file is refused, naming the layer.
A SavedModel's graph holds the table; formats/savedmodel_graph.py puts its
vocabulary into the config before this table sees it.
"""

from __future__ import annotations

import numpy as np

from .rules import LegacyError, Replacement, Rule, keras_object

# Layers Keras 3 builds with TensorFlow's own ops on every backend (keras/src/layers/preprocessing).
NEEDS_TENSORFLOW = ("StringLookup", "IntegerLookup", "TextVectorization", "Hashing", "HashedCrossing")

# tf.image.resize methods whose Keras 3 counterpart is missing or differs beyond 1e-5 (tf_resize.py); the
# lanczos ones Keras 3 has on JAX and TensorFlow only, not on PyTorch.
TF_ONLY_RESIZE = ("bicubic", "area", "gaussian", "mitchellcubic", "lanczos3", "lanczos5")


def _resizing(config: dict, name: str) -> dict | Replacement:
    if config.get("interpolation", "bilinear") not in TF_ONLY_RESIZE:
        return config
    keep = ("name", "trainable", "dtype", "height", "width", "interpolation", "crop_to_aspect_ratio")
    return Replacement(keras_object("kerasafe>TFResizing", {k: v for k, v in config.items() if k in keep}))


def _with_vocabulary(class_name: str, reserved: int):
    def rewrite(config: dict, name: str) -> dict:
        size = config.get("vocabulary_size")
        if config.get("vocabulary") is None and isinstance(size, int) and size > reserved:
            raise LegacyError(f"layer '{name}' ({class_name}) with a vocabulary of {size} entries learned by adapt(), "
                              "which this file does not hold (tf.keras kept it only in its lookup table); load the "
                              "SavedModel directory tf.keras saved of this model (its graph holds the table), or put "
                              "the vocabulary in the layer's config and load the weights into that")
        return config
    return rewrite


def _idf_in_config(layer, names: list, values: list) -> None:
    """tf.keras kept a tf-idf layer's weights as a variable too; Keras 3 takes them from the config, checked equal here."""
    configured = getattr(layer, "input_idf_weights", None)
    if configured is None:
        lookup = getattr(layer, "_lookup_layer", None)
        configured = getattr(lookup, "input_idf_weights", None)
    for name, value in zip(names, values):
        if "idf_weights" not in name and len(names) > 1:
            continue  # the adapt() counters a checkpoint also keeps (num_documents, ...)
        saved = np.asarray(value).reshape(-1)
        if configured is not None and not np.allclose(saved[-len(configured):], np.asarray(configured, "float32")):
            raise ValueError(f"layer '{layer.name}': the file's idf weights differ from its configuration")


def _discretization_summary(layer, names: list, values: list) -> None:
    """tf.keras kept an adapted Discretization's quantile summary as a weight; Keras 3 keeps it as state (finalize_state)."""
    layer.summary = np.asarray(values[0], "float32")


RULES = {
    "RandomHeight": Rule(keras3_class="kerasafe>RandomHeight"),
    "RandomWidth": Rule(keras3_class="kerasafe>RandomWidth"),
    "Resizing": Rule(rewrite=_resizing),
    # Keras 3's Discretization takes no `trainable` (it has no weights).
    "Discretization": Rule(ignored=("trainable",), state=_discretization_summary),
    "StringLookup": Rule(rewrite=_with_vocabulary("StringLookup", 2), state=_idf_in_config),
    "IntegerLookup": Rule(rewrite=_with_vocabulary("IntegerLookup", 2), state=_idf_in_config),
    "TextVectorization": Rule(rewrite=_with_vocabulary("TextVectorization", 2), state=_idf_in_config),
}
