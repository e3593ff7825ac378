"""Keras-version translation: tables of renames between what one Keras wrote and another reads.

Each table entry names the Keras version it bridges and is tested with the text
it came from (tests/test_translation.py). The legacy rescue work grows this
module; today it holds what kerasafe's own HDF5 writer needs.

Example:
    >>> from kerasafe.translation import canonical_training_config
    >>> canonical_training_config({"loss": {"reg": "mse"}, "metrics": ["mae"]})["loss"]
    {'reg': 'mean_squared_error'}
"""

from __future__ import annotations

# Keras 3 (checked on 3.15) writes the short names a user compiled with into an HDF5
# file's training_config, then cannot read them back: its legacy loader looks them up
# as "keras.metrics.mse" and raises. The full names load in Keras 3 and in tf.keras 2.
LOSS_AND_METRIC_ALIASES = {
    "mse": "mean_squared_error",
    "MSE": "mean_squared_error",
    "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "MSLE": "mean_squared_logarithmic_error",
}


def _rename(value):
    if isinstance(value, str):
        return LOSS_AND_METRIC_ALIASES.get(value, value)
    if isinstance(value, list):
        return [_rename(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _rename(v) for k, v in value.items()}
    return value


def canonical_training_config(config: dict) -> dict:
    """A copy of an HDF5 ``training_config`` whose loss and metric names every Keras reads."""
    out = dict(config)
    for key in ("loss", "metrics", "weighted_metrics"):
        if out.get(key) is not None:
            out[key] = _rename(out[key])
    return out
