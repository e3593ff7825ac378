"""A sharded checkpoint: a directory each process of a ``keras.distribution`` run writes its own part of.

Layout (one committed checkpoint; the commit protocol is :mod:`kerasafe.checkpoint.sharded_commit`)::

    ckpt-00000012/
        model.json                  the manifest: architecture, progress, the mesh and every variable's
                                    shape, dtype and partition spec (written by process 0)
        shards-p00000.safetensors   the shards process 0 holds copy 0 of (each distinct shard is in
        shards-p00001.safetensors   exactly one file, so the model's bytes are written once in all)
        done-p00000.json            per process, written after its shards are durable: where each of
        done-p00001.json            its shards sits in the whole array, and the shard's hash
        COMMIT                      written last, by process 0, once every done marker is there

Reading places each variable onto whatever layout the reading model has (the same
mesh, another mesh, one device, another backend): each process reads only the saved
shards that overlap the parts its devices hold, checks their hashes and cuts out the
overlap. A shard file is written by the streaming safetensors writer of
:mod:`.safetensors_format`, so other tools can open each one.

Example:
    >>> import keras, numpy as np, tempfile, pathlib, kerasafe as ks
    >>> from kerasafe.formats import sharded
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]); m.compile("adam", "mse")
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> part = sharded.snapshot(m, {}); sharded.write_part(part, d, primary=True)
    >>> _ = (d / "COMMIT").write_text("{}")
    >>> ks.load(d).count_params()
    8
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from .. import _keras, distributed, errors, storage
from .. import manifest as manifest_mod
from . import guard
from .base import MODEL, Format, apply_manifest, model_from_stored_architecture, refuse_code, summary
from .safetensors_format import _CODES, _read_tensor, read_header, write_file

LAYOUT = "model.json"
COMMIT = "COMMIT"  # the checkpoint store's marker: a directory without it is no checkpoint
FORMAT_NAME = "kerasafe-sharded"
# Not every dtype has a safetensors code; those travel as unsigned integers of their width.
_CARRIERS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def shard_file(process: int) -> str:
    return f"shards-p{process:05d}.safetensors"


def done_file(process: int) -> str:
    return f"done-p{process:05d}.json"


def state_variables(model) -> list[tuple[str, object]]:
    """``[(group, variable), ...]``: the model's weights, then the optimizer's variables (if built)."""
    out = [("model", v) for v in model.weights]
    opt = getattr(model, "optimizer", None)
    if opt is not None and getattr(opt, "built", False):
        out += [("optimizer", v) for v in opt.variables]
    return out


@dataclasses.dataclass
class Part:
    """What one process writes of a checkpoint, copied off the live model."""

    shards: list[tuple[int, tuple, np.ndarray]]  # (variable number, ((start, stop), ...), host copy)
    layout: dict | None  # model.json's content: only in process 0
    process: int

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, _, a in self.shards)


def snapshot(model, manifest: dict, *, reuse: Part | None = None) -> Part:
    """Copy this process's shards (copy 0 of each) to host memory; process 0 also describes the whole.

    ``reuse``: an earlier Part of this process whose write is done; its arrays are refilled.
    """
    variables = state_variables(model)
    old = {(n, index): a for n, index, a in reuse.shards} if reuse else {}
    shards = []
    for n, (_, variable) in enumerate(variables):
        for index, data in distributed.owned_shards(variable.value):
            shards.append((n, index, _keras.host_copy(data, into=old.get((n, index)))))
    layout = None
    if distributed.is_primary():
        rows = [{"group": group, "path": str(v.path), "shape": [int(s) for s in v.shape], "dtype": str(np.dtype(_dtype(v))),
                 "spec": distributed.partition_spec(v)} for group, v in variables]
        layout = dict(manifest, format=FORMAT_NAME, architecture=_keras.serialize_model(model),
                      layout=dict(distributed.describe_layout(), variables=rows))
    return Part(shards, layout, distributed.process_index())


def _dtype(variable):
    return np.dtype(_keras.keras().backend.standardize_dtype(variable.dtype)) if str(variable.dtype) != "bfloat16" else _bfloat16()


def _bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _storable(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    return array if str(array.dtype) in _CODES else array.view(_CARRIERS[array.dtype.itemsize])


def write_part(part: Part, directory: pathlib.Path, *, primary: bool) -> None:
    """Write this process's shards and then its done marker (both durable) into ``directory``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    if part.shards:
        tensors = {}
        for i, (n, index, array) in enumerate(part.shards):
            key = f"{n}/{i}"
            tensors[key] = _storable(array)
            rows.append({"variable": n, "key": key, "index": [list(p) for p in index], "hash": storage.hash_bytes(tensors[key])})
        write_file(directory / shard_file(part.process), tensors, {"format": FORMAT_NAME})
    if primary and part.layout is not None:
        _write_json(directory / LAYOUT, part.layout)
    marker = {"process": part.process, "file": shard_file(part.process) if part.shards else None, "shards": rows}
    _write_json(directory / done_file(part.process), marker)


def _write_json(path: pathlib.Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(value))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_layout(path: pathlib.Path) -> dict:
    """model.json of a sharded checkpoint, checked to be one."""
    file = pathlib.Path(path) / LAYOUT
    data = file.read_bytes() if file.stat().st_size <= guard.TEXT_LIMIT else b""
    layout = guard.json_value(data, file, "a sharded checkpoint's model.json")
    if layout.get("format") != FORMAT_NAME or not isinstance(layout.get("layout", {}).get("variables"), list):
        raise errors.CorruptFileError(file, f"a '{FORMAT_NAME}' layout listing the variables", f"keys {sorted(layout)[:6]}",
                                      "the checkpoint is damaged; restore an earlier one")
    return layout


class _Saved:
    """The shards of one checkpoint, by variable, read on demand (whole shards, hash-checked)."""

    def __init__(self, path: pathlib.Path, processes: int):
        self.path = pathlib.Path(path)
        self.by_variable: dict[int, list[dict]] = {}
        self._headers: dict[str, tuple[dict, int]] = {}
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.bytes_read = 0  # shard bytes this process read: only those overlapping its devices' parts
        for p in range(processes):
            marker_path = self.path / done_file(p)
            if not marker_path.is_file():
                raise errors.CorruptFileError(self.path, f"the done marker of process {p} ({marker_path.name})", "none",
                                              "the checkpoint is incomplete; restore an earlier one")
            marker = guard.json_value(marker_path.read_bytes(), marker_path, "a done marker")
            for row in marker.get("shards", []):
                self.by_variable.setdefault(int(row["variable"]), []).append(dict(row, file=marker["file"]))

    def _shard(self, row: dict) -> np.ndarray:
        key = (row["file"], row["key"])
        if key not in self._cache:
            file = self.path / row["file"]
            if file.name not in self._headers:
                self._headers[file.name] = read_header(file)
            header, start = self._headers[file.name]
            if row["key"] not in header:
                raise errors.CorruptFileError(file, f"shard '{row['key']}' (named in its done marker)", "no such tensor",
                                              "the checkpoint is damaged; restore an earlier one")
            hasher = storage.new_hasher()
            with open(file, "rb") as f:
                array = _read_tensor(f.fileno(), header[row["key"]], start, file, row["key"], hasher)
            self.bytes_read += array.nbytes
            if storage.digest(hasher) != row["hash"]:
                raise errors.HashMismatchError(file, f"shard '{row['key']}' with hash {row['hash']}", "other bytes",
                                               "the checkpoint is damaged; restore an earlier step (ks.restore(dir, which=STEP))")
            self._cache[key] = array
        return self._cache[key]

    def reader(self, n: int, shape, dtype: np.dtype, name: str):
        """``read(((start, stop), ...)) -> np.ndarray`` for variable ``n``, assembled from the saved shards."""
        rows = self.by_variable.get(n, [])

        def read(want):
            out = np.empty(tuple(b - a for a, b in want), dtype=dtype)
            covered = 0
            for row in rows:
                have = [tuple(p) for p in row["index"]]
                overlap = [(max(a, c), min(b, d)) for (a, b), (c, d) in zip(want, have)]
                if any(a >= b for a, b in overlap):
                    continue
                source = self._shard(row)
                if source.dtype != dtype:
                    source = source.view(dtype)
                src = tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(overlap, have))
                dst = tuple(slice(a - c, b - c) for (a, b), (c, _) in zip(overlap, want))
                out[dst] = source[src].reshape(out[dst].shape)
                covered += int(np.prod([b - a for a, b in overlap]))
            if covered < out.size:
                raise errors.CorruptFileError(self.path, f"shards covering all of '{name}' {tuple(shape)}",
                                              f"{covered:,} of {out.size:,} elements", "the checkpoint is damaged; restore an earlier one")
            return out

        return read

    def drop_cache(self) -> None:
        self._cache.clear()


def fill(model, path: pathlib.Path, layout: dict | None = None) -> dict:
    """Assign a sharded checkpoint's weights (and optimizer state, when the model has an optimizer) to ``model``.

    Returns the checkpoint's model.json; ``fill.bytes_read`` is then how many shard bytes this process read.
    """
    path = pathlib.Path(path)
    layout = layout or read_layout(path)
    saved_rows = layout["layout"]["variables"]
    processes = int(layout["layout"].get("processes") or 1)
    saved = _Saved(path, processes)
    targets = state_variables(model)
    want_groups = {g for g, _ in targets}
    pairs = []
    for group in ("model", "optimizer"):
        ours = [v for g, v in targets if g == group]
        theirs = [(n, r) for n, r in enumerate(saved_rows) if r["group"] == group]
        if group not in want_groups or group == "optimizer" and not theirs:
            continue  # no optimizer state saved (it had not been built): the model's stays fresh
        if len(ours) != len(theirs):
            raise errors.WeightsMismatchError(path, f"{len(ours)} {group} variables for model '{model.name}'",
                                              f"{len(theirs)} in the checkpoint", "restore into the model the checkpoint was written from")
        for variable, (n, row) in zip(ours, theirs):
            if tuple(row["shape"]) != tuple(variable.shape):
                raise errors.WeightsMismatchError(path, f"shape {tuple(variable.shape)} for '{variable.path}'",
                                                  f"'{row['path']}' of shape {tuple(row['shape'])}",
                                                  "restore into the model the checkpoint was written from")
            pairs.append((variable, n, row))
    for variable, n, row in pairs:
        dtype = _bfloat16() if row["dtype"] == "bfloat16" else np.dtype(row["dtype"])
        value = distributed.place(row["shape"], dtype, distributed.sharding_of(variable), saved.reader(n, row["shape"], dtype, row["path"]))
        variable.assign(value)
        saved.drop_cache()
    _keras.finalize_loaded_state(model)
    fill.bytes_read = saved.bytes_read
    return layout


class ShardedCheckpointFormat(Format):
    name = "sharded"
    description = "kerasafe sharded checkpoint (a directory of per-process shard files)"
    holds = MODEL
    is_directory = True

    def recognise(self, path, head):
        path = pathlib.Path(path)
        return path.is_dir() and (path / LAYOUT).is_file() and any(path.glob("done-p*.json"))

    def read(self, path, *, compile, safe_mode, custom_objects):
        layout = read_layout(path)
        refuse_code(layout.get("architecture"), path, safe_mode)
        model = model_from_stored_architecture(layout, path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)
        if compile:
            _keras.ensure_optimizer_built(model)
        fill(model, path, layout)
        return model, manifest_mod.checked({k: v for k, v in layout.items() if k not in ("format", "architecture", "layout")}, path)

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        layout = fill(model, path)
        return {k: v for k, v in layout.items() if k not in ("format", "architecture", "layout")}

    def inspect(self, path):
        layout = read_layout(path)
        result = summary(path, self, has_architecture=True)
        apply_manifest(result, {k: v for k, v in layout.items() if k not in ("format", "architecture", "layout")})
        info = layout["layout"]
        result["layout"] = {k: info.get(k) for k in ("distribution", "processes", "devices", "mesh")}
        result["layout"]["variables"] = [{k: r.get(k) for k in ("path", "group", "shape", "dtype", "spec")} for r in info["variables"]]
        result["hashes"]["recorded"] = sum(len(_done(path, p).get("shards", [])) for p in range(int(info.get("processes") or 1)))
        return result

    def verify(self, path):
        layout = read_layout(path)
        processes = int(layout["layout"].get("processes") or 1)
        saved = _Saved(path, processes)
        out = {}
        for rows in saved.by_variable.values():
            for row in rows:
                name = f"{row['file']}:{row['key']}"
                try:
                    saved._shard(row)
                    out[name] = "ok"
                except errors.HashMismatchError:
                    out[name] = "mismatch"
                except (errors.CorruptFileError, OSError):
                    out[name] = "missing"
                saved.drop_cache()
        return out


def _done(path, process: int) -> dict:
    file = pathlib.Path(path) / done_file(process)
    return guard.json_value(file.read_bytes(), file, "a done marker") if file.is_file() else {}
