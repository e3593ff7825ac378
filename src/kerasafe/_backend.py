"""Which Keras backend a process gets, decided before Keras is imported.

Keras reads ``KERAS_BACKEND``, else ``~/.keras/keras.json`` (``$KERAS_HOME/keras.json``),
else falls back to TensorFlow, and on its first import writes that fallback into
keras.json even when ``KERAS_BACKEND`` names another backend. kerasafe's default install
has JAX and no TensorFlow, so on a fresh machine both kerasafe and the user's own
``import keras`` would fail. The rule, applied before the first Keras import:

1. ``KERAS_BACKEND`` set: it is used as is.
2. keras.json names an installed backend: it is used.
3. Otherwise, if Keras's own fallback (TensorFlow) is not installed: the first installed of
   JAX, PyTorch is used, and written into keras.json when there is none or when it holds
   only what Keras writes by itself (its defaults naming TensorFlow), so that a plain
   ``import keras`` works too. This is said once, on stderr. A keras.json a user edited
   is never rewritten; this process uses the installed backend and says how to choose.

Example:
    >>> import os
    >>> from kerasafe import _backend
    >>> _backend.choose() is None or os.environ["KERAS_BACKEND"] in ("jax", "torch")
    True
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys

# What Keras 3 writes into a new keras.json (keras/src/backend/config.py) when none exists.
KERAS_DEFAULTS = {"floatx": "float32", "epsilon": 1e-07, "backend": "tensorflow", "image_data_format": "channels_last"}
PREFERRED = ("jax", "torch")  # the default install's backend first


def keras_home() -> pathlib.Path:
    """The folder Keras keeps keras.json in (its own rule: KERAS_HOME, else ~/.keras, else /tmp/.keras)."""
    if "KERAS_HOME" in os.environ:
        return pathlib.Path(os.environ["KERAS_HOME"])
    home = pathlib.Path.home()
    return (home if os.access(home, os.W_OK) else pathlib.Path("/tmp")) / ".keras"


def installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def _read(path: pathlib.Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: pathlib.Path, config: dict) -> bool:
    """Write keras.json whole or not at all (another process may read it meanwhile)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(config, indent=4))
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def plan(config: dict | None, is_installed=installed) -> tuple[str | None, bool]:
    """(backend to set, whether to write it into keras.json) for a keras.json holding ``config`` (None: absent)."""
    configured = config.get("backend") if config else None
    if isinstance(configured, str) and is_installed(configured):
        return None, False
    if not isinstance(configured, str) and is_installed("tensorflow"):
        return None, False  # Keras's fallback works
    chosen = next((b for b in PREFERRED if is_installed(b)), None)
    if chosen is None:
        return None, False  # nothing better to offer: Keras's own error says what to install
    return chosen, config is None or config == KERAS_DEFAULTS


def choose() -> str | None:
    """Set ``KERAS_BACKEND`` for this process where Keras's own choice would fail; return what was set (or None)."""
    if os.environ.get("KERAS_BACKEND") or "keras.src.backend.config" in sys.modules:
        return None  # chosen by the user, or too late: Keras has read its configuration
    path = keras_home() / "keras.json"
    config = _read(path) if path.exists() else None
    if config is None and path.exists():
        config = {}  # unreadable: still the user's file, never overwritten
    chosen, write = plan(config)
    if chosen is None:
        return None
    os.environ["KERAS_BACKEND"] = chosen
    configured = (config or {}).get("backend", "tensorflow")
    if write and _write(path, {**KERAS_DEFAULTS, "backend": chosen}):
        print(f"kerasafe: Keras backend set to {chosen!r} in {path} ({configured} is not installed); "
              "set KERAS_BACKEND or edit that file to choose another", file=sys.stderr)
    else:
        print(f"kerasafe: using the Keras backend {chosen!r}: {path} names {configured!r}, which is not installed "
              "(set KERAS_BACKEND or edit that file to choose)", file=sys.stderr)
    return chosen
