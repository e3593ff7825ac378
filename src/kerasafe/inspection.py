"""``inspect`` and ``verify``: what a model file holds, read without Keras or any framework.

Example:
    >>> import keras, kerasafe as ks, tempfile, os
    >>> p = ks.save(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), os.path.join(tempfile.mkdtemp(), "m.keras"))
    >>> info = ks.inspect(p)
    >>> info["format"], info["total_params"], info["hashes"]["ok"]
    ('keras', 8, True)
"""

from __future__ import annotations

import pathlib

from . import formats, remote
from .formats.guard import reading

# inspect() checks hashes itself for files up to this size; larger ones are left to
# verify(), so that inspect stays a header read even for gigabytes.
AUTO_VERIFY_BYTES = 256 << 20


def _size(path: pathlib.Path) -> int:
    if not path.exists():  # a TensorFlow checkpoint prefix: its .index and .data files
        return sum(p.stat().st_size for p in path.parent.glob(path.name + ".*") if p.is_file())
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _text_or_none(value) -> str | None:
    return None if value is None else str(value)[:200]


def _clean_layers(rows) -> list[dict]:
    """Layer rows as every consumer expects them (a config from a file may hold any JSON where a name goes)."""
    out = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        shape = row.get("output_shape")
        params = row.get("params")
        out.append({"name": _text_or_none(row.get("name")), "class": _text_or_none(row.get("class")),
                    "output_shape": [d if type(d) is int else None for d in shape] if isinstance(shape, list | tuple) else None,
                    "params": params if type(params) is int else None})
    return out


@remote.reads_urls
def verify(path) -> dict:
    """Re-hash every member the file recorded; ``{"ok": bool|None, "members": {...}}``.

    ``ok`` is None when the file recorded no hashes (not written by kerasafe).

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> p = ks.save(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), os.path.join(tempfile.mkdtemp(), "m.h5"))
        >>> ks.verify(p)["ok"]
        True
    """
    p, fmt = formats.locate(path, "a model file")
    with reading(p, f"a readable {fmt.description}"):
        members = fmt.verify(p)
    ok = None if not members else all(v == "ok" for v in members.values())
    return {"path": str(p), "ok": ok, "members": members}


@remote.reads_urls
def inspect(path, *, verify_hashes: bool | None = None) -> dict:
    """Describe a model file: format, writer, layers, parameters, labels, preprocessing, hashes.

    Never imports keras, jax, tensorflow or torch. ``verify_hashes=None`` checks
    hashes for files up to 256 MiB and leaves larger ones to :func:`verify`.

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> info = ks.inspect(ks.save(m, os.path.join(tempfile.mkdtemp(), "m.safetensors"), labels=["a", "b"]))
        >>> info["format"], info["labels"], [l["class"] for l in info["layers"]]
        ('safetensors', ['a', 'b'], ['Dense'])
    """
    p, fmt = formats.locate(path, "a model file")
    with reading(p, f"a readable {fmt.description}"):
        result = fmt.inspect(p)
        result["layers"] = _clean_layers(result.get("layers"))
        for key in ("keras_version", "backend", "created"):  # from a config or an old file's attributes: any JSON
            result[key] = _text_or_none(result.get(key))
        result["file_bytes"] = _size(p)
        check = result["file_bytes"] <= AUTO_VERIFY_BYTES if verify_hashes is None else verify_hashes
        if check and result["hashes"]["recorded"]:
            members = fmt.verify(p)
            result["hashes"].update(checked=True, members=members, ok=all(v == "ok" for v in members.values()))
    return result
