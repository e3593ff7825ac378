"""Recurrent layers, their cells and wrappers: the Keras 2 -> Keras 3 table.

Keras 3 dropped ``time_major`` (tf.keras 2 read time as the first axis when True:
rebuilt by kerasafe's TimeMajor wrapper, which transposes around the same layer) and
LSTM's ``implementation`` (1 and 2 computed the same thing with different matrix
products). Keras 1 and standalone Keras 2 before 2.1 had no ``reset_after``: their
GRUs applied the reset gate before the recurrent product, Keras 3's reset_after=False.
"""

from __future__ import annotations

from .rules import Replacement, Rule, keras_object


def _gru(config: dict, name: str) -> dict:
    config.setdefault("reset_after", False)  # written before reset_after existed
    return config


def _time_major(rule_class: str):
    def rewrite(config: dict, name: str) -> dict:
        if not config.pop("time_major", False):
            return config
        # Keras 3 reads (batch, time, ...): the same layer, wrapped to take and give time first.
        inner = keras_object(rule_class, dict(config, name=f"{name}_batch_major"))
        return Replacement(keras_object("kerasafe>TimeMajor", {"name": name, "layer": inner, "trainable": config.get("trainable", True)}))
    return rewrite


def _rnn(rule_class: str, **extra) -> Rule:
    rewrite = _time_major(rule_class)
    if rule_class in ("GRU",):
        rewrite = (lambda config, name, inner=rewrite: inner(_gru(config, name), name))
    return Rule(rewrite=rewrite, **extra)


RULES = {
    "SimpleRNN": _rnn("SimpleRNN"),
    "GRU": _rnn("GRU"),
    "LSTM": _rnn("LSTM", ignored=("implementation",)),
    "ConvLSTM1D": _rnn("ConvLSTM1D"),
    "ConvLSTM2D": _rnn("ConvLSTM2D"),
    "ConvLSTM3D": _rnn("ConvLSTM3D"),
    "RNN": _rnn("RNN", nested=("cell",)),
    "GRUCell": Rule(rewrite=_gru),
    "StackedRNNCells": Rule(nested=("cells",)),
}
