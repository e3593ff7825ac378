"""``.safetensors``: the model's weights, with the architecture and manifest in the metadata.

Tensor names are the Keras variable paths (``dense/kernel``), so other tools
see meaningful names; the metadata key ``kerasafe`` holds the manifest, whose
``architecture`` lets ``ks.load`` rebuild a working model from this one file
and whose ``weight_order`` maps tensors back to variables exactly.
"""

from __future__ import annotations


import numpy as np

from .. import _keras, errors, storage
from .. import manifest as manifest_mod
from .base import WEIGHTS, Format, apply_manifest, model_from_stored_architecture, summary

# Largest header this reader accepts; the format's reference reader uses the same cap.
_MAX_HEADER = 100_000_000


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
        from safetensors.numpy import save_file

        names = _unique_names(model.weights)
        tensors = {n: np.asarray(_keras.to_numpy(w), order="C") for n, w in zip(names, model.weights)}
        hashes = {n: storage.hash_bytes(a) for n, a in tensors.items()}
        manifest = dict(manifest, hashes=hashes, weight_order=names)
        save_file(tensors, str(target), metadata={manifest_mod.MANIFEST_KEY: manifest_mod.dumps(manifest)})

    def _manifest(self, f, path) -> dict | None:
        meta = f.metadata() or {}
        text = meta.get(manifest_mod.MANIFEST_KEY)
        return None if text is None else manifest_mod.loads(text, path)

    def read(self, path, *, compile, safe_mode, custom_objects):
        with _safe_open(path) as f:
            manifest = self._manifest(f, path)
        model = model_from_stored_architecture(manifest, path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)
        self.read_weights(model, path, by_name=False, skip_mismatch=False)
        return model, manifest

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        variables = model.weights
        with _safe_open(path) as f:
            manifest = self._manifest(f, path)
            keys = set(f.keys())
            order = (manifest or {}).get("weight_order")
            if order and not by_name:
                if len(order) != len(variables):
                    raise errors.WeightsMismatchError(
                        path, f"{len(variables)} weights for model '{model.name}'", f"{len(order)} tensors",
                        "load them into the model they were saved from, or pass by_name=True",
                    )
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
            for variable, key in pairs:
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(variable.shape):
                    if skip_mismatch:
                        continue
                    raise errors.WeightsMismatchError(
                        path, f"shape {tuple(variable.shape)} for '{variable.path}'", f"tensor '{key}' of shape {shape}",
                        "load into the model these weights were saved from, or pass skip_mismatch=True",
                    )
                variable.assign(f.get_tensor(key).astype(str(variable.dtype), copy=False))
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


