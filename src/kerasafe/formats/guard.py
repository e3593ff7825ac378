"""The promise at every reader's edge: whatever a file holds, a reader returns or raises one ``kerasafe.errors`` line.

Each format reader checks what it knows to check (sizes, links, types) and names the
problem itself. A file can still hold what no check foresaw, and the libraries under the
readers (h5py, zipfile, json, protobuf, Keras's deserializer) answer such content with
their own exceptions; :func:`reading` turns those into a CorruptFileError naming the file
and what was found, so that no reader lets another exception type out.

Example:
    >>> from kerasafe.formats.guard import reading
    >>> try:
    ...     with reading("m.h5", "a Keras model file"):
    ...         {}["model_config"]
    ... except Exception as exc:
    ...     print(exc)
    m.h5: expected a Keras model file, found content its reader could not use (KeyError: 'model_config'); the file is damaged or was not written by Keras: save the model again from its source
"""

from __future__ import annotations

import contextlib

from .. import errors


def _text(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


@contextlib.contextmanager
def reading(path, expected: str):
    """Run a reader; turn any exception its file caused into one CorruptFileError naming ``path``."""
    try:
        yield
    except errors.KerasafeError:
        raise
    except RecursionError:
        raise errors.CorruptFileError(path, expected, "values nested deeper than any model needs",
                                      "the file is damaged or made to exhaust the stack; do not load it") from None
    except MemoryError:
        raise errors.CorruptFileError(path, expected, "content that would need more memory than there is",
                                      "the file is damaged or made to exhaust memory; do not load it") from None
    except Exception as exc:  # noqa: BLE001 - the purpose: no other exception type leaves a reader
        raise errors.CorruptFileError(path, expected, f"content its reader could not use ({_text(exc)})",
                                      "the file is damaged or was not written by Keras: save the model again from its source") from None


# The most text a JSON or YAML member of a model file may hold: a config of a model with
# tens of thousands of layers is a few MB; past this it is damage or a decompression bomb.
TEXT_LIMIT = 64 << 20


def json_value(data: bytes | str, path, what: str, kind: type | tuple = dict):
    """Parse JSON ``data`` that came from ``path`` (``what`` names where), checking its top-level type.

    Example:
        >>> json_value(b'{"a": 1}', "m.keras", "member 'config.json'")
        {'a': 1}
        >>> json_value(b'[1]', "m.keras", "member 'config.json'")
        Traceback (most recent call last):
        ...
        kerasafe.errors.CorruptFileError: m.keras: expected JSON object in member 'config.json', found a list; save the model again
    """
    import json

    if len(data) > TEXT_LIMIT:
        raise errors.CorruptFileError(path, f"JSON of at most {TEXT_LIMIT >> 20} MiB in {what}", f"{len(data):,} bytes",
                                      "the file is damaged or made to exhaust memory; do not load it")
    try:
        value = json.loads(data)
    except RecursionError:
        raise errors.CorruptFileError(path, f"JSON in {what}", "values nested deeper than any model needs",
                                      "the file is damaged or made to exhaust the stack; do not load it") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise errors.CorruptFileError(path, f"JSON in {what}", f"unreadable text ({_text(exc)[:120]})", "save the model again") from None
    if not isinstance(value, kind):
        wanted = "JSON object" if kind is dict else "JSON " + " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        found = {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(value), f"a {type(value).__name__}")
        raise errors.CorruptFileError(path, f"{wanted} in {what}", found, "save the model again")
    return value
