"""``.safetensors``: the model's weights, with the architecture and manifest in the metadata.

Tensor names are the Keras variable paths (``dense/kernel``), so other tools
see meaningful names; the metadata key ``kerasafe`` holds the manifest, whose
``architecture`` lets ``ks.load`` rebuild a working model from this one file
and whose ``weight_order`` maps tensors back to variables exactly.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .. import _keras, _keras_direct, errors, storage
from .. import manifest as manifest_mod
from . import _direct, guard
from .base import WEIGHTS, Format, apply_manifest, stored_model_to_fill, summary

# Largest header this reader accepts; the format's reference reader uses the same cap.
_MAX_HEADER = 100_000_000

# safetensors dtype codes (the format's spec) for the NumPy dtypes Keras variables use.
_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
          "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}
_DTYPES = {code: name for name, code in _CODES.items()}


def write_file(target, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a safetensors file front to back from arrays as they are (no copies).

    Written here rather than with ``safetensors.numpy.save_file``, which wants every
    tensor as its own NumPy copy and buffers the file in its writer: this streams each
    array's memory through :class:`storage.HashingFileWriter` (a writer thread, early
    write-back, fsync). The layout is the format's: an 8-byte little-endian header
    length, a JSON header (padded with spaces to 8 bytes), then the tensors' bytes.
    """
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, array in arrays.items():
        code = _CODES.get(str(array.dtype))
        if code is None:
            raise TypeError(f"safetensors has no dtype for {array.dtype} (tensor '{name}')")
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with storage.HashingFileWriter(target) as out:
        out.write(len(text).to_bytes(8, "little") + text)
        for array in arrays.values():
            for piece in storage.pieces(array):
                out.write(piece)


def read_header(path) -> tuple[dict, int]:
    """The header (names -> dtype, shape, offsets) and where the data starts; every entry checked against the file's size."""
    def bad(found):
        return errors.CorruptFileError(path, "a safetensors file", found, "the file is truncated or damaged; save it again")

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= min(_MAX_HEADER, size - 8):
            raise bad(f"a header length of {length:,} in a file of {size:,} bytes")
        header = guard.json_value(f.read(length), path, "the safetensors header")
    start = 8 + length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in entry["data_offsets"])
            shape = tuple(int(v) for v in entry["shape"])
            itemsize = np.dtype(_keras_dtype(entry["dtype"])).itemsize
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor '{name}' with an entry {str(entry)[:80]}") from None
        if not 0 <= begin <= end <= size - start or end - begin != math.prod(shape) * itemsize:
            raise bad(f"tensor '{name}' of shape {shape} at bytes {begin:,}..{end:,} of {size - start:,}")
    return header, start


def _keras_dtype(code: str):
    name = _DTYPES[code]
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name


def _read_tensor(fd: int, entry: dict, start: int, path, name: str, hasher=None) -> np.ndarray:
    """The tensor's bytes, 64-byte aligned; ``hasher`` (optional) is fed them as they arrive."""
    array = _direct.aligned_empty(tuple(entry["shape"]), _keras_dtype(entry["dtype"]))
    _direct.pread_hashed(fd, memoryview(array.reshape(-1)).cast("B"), start + entry["data_offsets"][0], path, f"tensor '{name}'",
                         None if hasher is None else hasher.update)
    return array


def _safe_open(path):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError, ValueError) as exc:
        raise errors.CorruptFileError(
            path, "a safetensors file", f"an unreadable header or data ({exc})", "the file is truncated or damaged; save it again"
        ) from None


def _unique_names(variables) -> list[str]:
    names, seen = [], {}
    for v in variables:
        base = str(getattr(v, "path", v.name))
        n = seen.get(base, 0)
        seen[base] = n + 1
        names.append(base if n == 0 else f"{base}__{n}")
    return names


class SafetensorsFormat(Format):
    name = "safetensors"
    description = "safetensors weights (.safetensors)"
    suffixes = (".safetensors",)
    holds = WEIGHTS

    def recognise(self, path, head):
        if len(head) < 10 or head[8:10] != b'{"':
            return False
        # A header longer than the file is a truncated safetensors file: recognise it,
        # and let read() say it is damaged.
        return 0 < int.from_bytes(head[:8], "little") <= _MAX_HEADER

    def write(self, model, target, manifest, *, include_optimizer):
        self.write_weights(model, target, manifest)

    def write_weights(self, model, target, manifest):
        names = _unique_names(model.weights)
        # Views of the variables' memory where the backend allows (nothing changes them during a save).
        tensors = {n: np.require(_keras._host_view(w), requirements="C") for n, w in zip(names, model.weights)}
        hashes = {n: storage.hash_bytes(a) for n, a in tensors.items()}
        manifest = dict(manifest, hashes=hashes, weight_order=names)
        write_file(target, tensors, {manifest_mod.MANIFEST_KEY: manifest_mod.dumps(manifest)})

    def _manifest(self, f, path) -> dict | None:
        meta = f.metadata() or {}
        text = meta.get(manifest_mod.MANIFEST_KEY)
        return None if text is None else manifest_mod.loads(text, path)

    def read(self, path, *, compile, safe_mode, custom_objects):
        with _safe_open(path) as f:
            manifest = self._manifest(f, path)
        with stored_model_to_fill(manifest, path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects) as model:
            self.read_weights(model, path, by_name=False, skip_mismatch=False)
        return model, manifest

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        variables = model.weights
        header, start = read_header(path)
        text = (header.get("__metadata__") or {}).get(manifest_mod.MANIFEST_KEY)
        manifest = None if text is None else manifest_mod.loads(text, path)
        keys = set(header) - {"__metadata__"}
        order = (manifest or {}).get("weight_order")
        if order and not by_name:
            if len(order) != len(variables):
                raise errors.WeightsMismatchError(
                    path, f"{len(variables)} weights for model '{model.name}'", f"{len(order)} tensors",
                    "load them into the model they were saved from, or pass by_name=True",
                )
            missing = [n for n in order if n not in keys]
            if missing:
                raise errors.CorruptFileError(path, f"tensor '{missing[0]}' (named in the manifest)", f"tensors {sorted(keys)[:4]}",
                                              "the file was changed after saving; save it again")
            pairs = list(zip(variables, order))
        else:
            # Files from other tools: match each variable by its path, the natural key.
            names = _unique_names(variables)
            pairs = [(v, n) for v, n in zip(variables, names) if n in keys]
            missing = [n for n in names if n not in keys]
            if missing and not (by_name or skip_mismatch):
                raise errors.WeightsMismatchError(
                    path, f"a tensor named '{missing[0]}'", f"tensors {sorted(keys)[:4]}",
                    "pass by_name=True to load the tensors whose names match, or skip_mismatch=True",
                )
        hashes = (manifest or {}).get("hashes") or {}
        with open(path, "rb") as f:
            freed = _direct.FreedMemoryReturn(os.fstat(f.fileno()).st_size)
            for variable, key in pairs:
                shape = tuple(header[key]["shape"])
                if shape != tuple(variable.shape):
                    if skip_mismatch:
                        continue
                    raise errors.WeightsMismatchError(
                        path, f"shape {tuple(variable.shape)} for '{variable.path}'", f"tensor '{key}' of shape {shape}",
                        "load into the model these weights were saved from, or pass skip_mismatch=True",
                    )
                hasher = storage.new_hasher() if key in hashes else None
                freed.before(header[key]["data_offsets"][1] - header[key]["data_offsets"][0])
                value = _read_tensor(f.fileno(), header[key], start, path, key, hasher)
                if hasher is not None and storage.digest(hasher) != hashes[key]:
                    raise errors.CorruptFileError(path, f"tensor '{key}' as it was saved", "different bytes (its hash does not match)",
                                                  "the file is corrupt; restore it from a copy or save the model again")
                variable.assign(_keras_direct.adopt(value.astype(str(variable.dtype), copy=False)))
                del value  # one tensor in memory at a time
        _keras.finalize_loaded_state(model)
        return manifest

    def inspect(self, path):
        with _safe_open(path) as f:
            manifest = self._manifest(f, path)
            result = summary(path, self, has_architecture=bool(manifest and manifest.get("architecture")))
            params = nbytes = 0
            dtypes: dict[str, int] = {}
            layers: dict[str, int] = {}
            for key in f.keys():
                sl = f.get_slice(key)
                n = int(np.prod(sl.get_shape())) if sl.get_shape() else 1
                dt = sl.get_dtype()
                params += n
                nbytes += n * _itemsize(dt)
                dtypes[dt] = dtypes.get(dt, 0) + 1
                layer = key.rsplit("/", 1)[0]
                layers[layer] = layers.get(layer, 0) + n
            result.update(total_params=params, weights_bytes=nbytes, dtypes=dtypes)
            result["layers"] = [{"name": k, "class": None, "output_shape": None, "params": v} for k, v in layers.items()]
        return apply_manifest(result, manifest)

    def verify(self, path):
        out = {}
        with _safe_open(path) as f:
            recorded = (self._manifest(f, path) or {}).get("hashes") or {}
            keys = set(f.keys())
            for name, expected in recorded.items():
                if name not in keys:
                    out[name] = "missing"
                else:
                    out[name] = "ok" if storage.hash_bytes(f.get_tensor(name)) == expected else "mismatch"
        return out


def _itemsize(safetensors_dtype: str) -> int:
    digits = "".join(ch for ch in safetensors_dtype if ch.isdigit())
    return max(1, int(digits) // 8) if digits else 1


