"""Preprocessing and augmentation layers: the Keras 2 -> Keras 3 table.

The Random* augmentation layers return their input at inference; RandomHeight and
RandomWidth, which Keras 3 dropped, are rebuilt by kerasafe's stand-ins that do
the same (and resize randomly in training, as they did).
"""

from __future__ import annotations

from .rules import Rule

RULES = {
    "RandomHeight": Rule(keras3_class="kerasafe>RandomHeight"),
    "RandomWidth": Rule(keras3_class="kerasafe>RandomWidth"),
}
