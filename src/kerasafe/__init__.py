"""kerasafe: save, load, inspect and convert Keras models in every format, safely.

``import kerasafe`` is light: Keras and its backend load on first use, and
:func:`inspect` never loads them.

Example:
    >>> import kerasafe as ks
    >>> sorted(n for n in ks.__all__ if n.startswith("load"))
    ['load', 'load_weights']
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it; imported on first access (PEP 562).
_EXPORTS = {
    "save": "api",
    "load": "api",
    "save_weights": "api",
    "load_weights": "api",
    "to_json": "api",
    "from_json": "api",
    "to_yaml": "api",
    "from_yaml": "api",
    "convert": "api",
    "inspect": "inspection",
    "verify": "inspection",
    "scan": "scanning",
    "Checkpoint": "checkpoint.callback",
    "restore": "checkpoint.callback",
    "fit": "checkpoint.resume",
    "errors": None,
}

__all__ = sorted(_EXPORTS)


from ._registration import register_when_keras_is_imported  # noqa: E402

# A .keras file converted from an old model may name kerasafe's stand-in layers; plain
# keras.saving.load_model finds them once kerasafe is imported (Keras itself is not imported here).
register_when_keras_is_imported()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kerasafe' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
