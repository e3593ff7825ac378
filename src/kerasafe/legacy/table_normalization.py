"""Normalization layers: the Keras 2 -> Keras 3 table.

BatchNormalization kept its computation at inference. tf.keras's ``fused`` chose a
kernel, ``virtual_batch_size`` ("ghost" batch norm) split the batch only while
training, and SyncBatchNormalization differed only in averaging the batch statistics
across replicas while training: at inference all of them use the moving mean and
variance, as Keras 3's BatchNormalization does.
"""

from __future__ import annotations

from .rules import Replacement, Rule, keras_object


def _batch_normalization(config: dict, name: str) -> dict | Replacement:
    axis = config.get("axis", -1)
    axis = list(axis) if isinstance(axis, list | tuple) else [axis]
    if config.pop("virtual_batch_size", None) and all(a > 0 for a in axis):
        # A built tf.keras layer with virtual batches had moved its axes one to the right, past the
        # virtual batch axis it inserts, and wrote them so; the model's input has no such axis.
        axis = [a - 1 for a in axis]
    if len(axis) > 1:  # Keras 3's BatchNormalization takes one axis: kerasafe's stand-in takes several
        return Replacement(keras_object("kerasafe>MultiAxisBatchNormalization", dict(config, axis=axis)))
    config["axis"] = int(axis[0])
    return config


_BATCH_NORMALIZATION = Rule(ignored=("fused",), neutral={"adjustment": (None,)}, rewrite=_batch_normalization)

RULES = {
    "BatchNormalization": _BATCH_NORMALIZATION,
    "SyncBatchNormalization": Rule(ignored=_BATCH_NORMALIZATION.ignored, neutral=_BATCH_NORMALIZATION.neutral,
                                   rewrite=_batch_normalization, keras3_class="BatchNormalization"),
}
