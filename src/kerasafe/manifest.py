"""kerasafe's manifest: what a saved model carries beside its weights.

The manifest is one JSON object, stored in whatever place each format offers
(a zip member, an HDF5 attribute, safetensors metadata, a key in a JSON/YAML
file). It holds the user's ``labels``, ``preprocessing`` and ``metadata``,
facts about the writer (Keras version, backend, time), a summary for
``inspect`` (layer table, parameter count, dtypes, optimizer) and the hash of
every member, so that reading it never needs Keras.

Example:
    >>> from kerasafe.manifest import ModelInfo
    >>> info = ModelInfo.from_manifest({"labels": ["cat", "dog"]}, path="m.keras", format="keras")
    >>> info.labels
    ('cat', 'dog')
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import types
from typing import Any

from . import errors

MANIFEST_VERSION = 1
# The name of the manifest wherever a format stores it by name.
MANIFEST_KEY = "kerasafe"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kerasafe")
    except PackageNotFoundError:
        return "0+unknown"


# The preprocessing keys kerasafe itself reads (predict, serve), each with a check and what it must be;
# other keys are the user's own and stored as given.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _is_size(v) -> bool:
    return isinstance(v, list | tuple) and len(v) == 2 and all(type(d) is int and 0 < d <= 1 << 16 for d in v)


def _is_number(v) -> bool:
    return type(v) in (int, float) and v == v and abs(v) != float("inf")


PREPROCESSING_KEYS = {
    "kind": (lambda v: v in ("image", "table"), "'image' or 'table'"),
    "size": (_is_size, "[height, width] as two whole numbers > 0"),
    "color_mode": (lambda v: v in ("rgb", "grayscale"), "'rgb' or 'grayscale'"),
    "channel_order": (lambda v: v in ("rgb", "bgr"), "'rgb' or 'bgr'"),
    "interpolation": (lambda v: v in INTERPOLATIONS, f"one of {', '.join(INTERPOLATIONS)}"),
    "scale": (_is_number, "a finite number"),
    "columns": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of column names"),
    "label_column": (lambda v: isinstance(v, str), "a column name"),
    "label_index": (lambda v: type(v) is int and v >= 0, "a whole number >= 0"),
}
# What each kind needs for kerasafe to decode an input with it.
PREPROCESSING_NEEDS = {"image": ("size", "color_mode"), "table": ("columns",)}


def check_preprocessing(preprocessing: dict, path=None, advice: str = "pass e.g. preprocessing={'size': [64, 64], ...}") -> None:
    """Raise a KerasafeError naming the first key kerasafe reads whose value it cannot use.

    Example:
        >>> check_preprocessing({"kind": "image", "size": [64, 64], "color_mode": "rgb"})
        >>> check_preprocessing({"size": "big"})
        Traceback (most recent call last):
        ...
        kerasafe.errors.KerasafeError: <input>: expected preprocessing 'size' as [height, width] as two whole numbers > 0, found 'big'; pass e.g. preprocessing={'size': [64, 64], ...}
    """
    for key, (ok, wanted) in PREPROCESSING_KEYS.items():
        if key in preprocessing and not ok(preprocessing[key]):
            raise errors.KerasafeError(path, f"preprocessing '{key}' as {wanted}", repr(preprocessing[key])[:80], advice)
    missing = [k for k in PREPROCESSING_NEEDS.get(preprocessing.get("kind"), ()) if k not in preprocessing]
    if missing:
        raise errors.KerasafeError(path, f"preprocessing of kind {preprocessing['kind']!r} with '{missing[0]}'", "none", advice)


def check_user_fields(labels, preprocessing, metadata) -> tuple[list | None, dict | None, dict | None]:
    """Validate the three user-supplied fields; return JSON-clean copies."""
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not all(isinstance(x, (str, int)) for x in labels):
            raise errors.KerasafeError(
                None, "labels as a list of class names", repr(labels)[:80], "pass e.g. labels=['cat', 'dog']"
            )
        labels = [str(x) for x in labels]
    out = [labels]
    for name, value in (("preprocessing", preprocessing), ("metadata", metadata)):
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, dict):
            raise errors.KerasafeError(None, f"{name} as a dict", type(value).__name__, f"pass {name}={{...}}")
        try:
            out.append(json.loads(json.dumps(value)))
        except (TypeError, ValueError) as exc:
            raise errors.KerasafeError(
                None, f"{name} that JSON can hold", str(exc), "use only str, numbers, bool, None, lists and dicts"
            ) from None
    if out[1] is not None:
        check_preprocessing(out[1])
    return out[0], out[1], out[2]


def _output_shape(layer):
    try:
        shape = layer.output.shape
    except Exception:  # a layer not yet called has no symbolic output
        return None
    return [None if d is None else int(d) for d in shape]


def _nbytes(variable) -> int:
    import numpy as np

    size = 1
    for d in variable.shape:
        size *= int(d)
    try:
        return size * np.dtype(str(variable.dtype)).itemsize
    except TypeError:  # dtype numpy does not know (before ml_dtypes registers it)
        return size * 4


def summarize_optimizer(model) -> dict | None:
    """Class, step count and learning rate of ``model``'s optimizer (None when not compiled)."""
    from . import _keras

    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    summary: dict[str, Any] = {
        "class": type(opt).__name__,
        "variables": len(opt.variables),
        "iterations": int(_keras.to_numpy(opt.iterations)),
        "learning_rate": None,  # a schedule's config says more than one number
    }
    if hasattr(opt, "_learning_rate") and not callable(opt._learning_rate):
        summary["learning_rate"] = float(_keras.to_numpy(opt.learning_rate))
    return summary


def describe_model(model) -> dict:
    """The model summary part of a manifest (needs a live model, not Keras imports)."""
    layers = []
    for layer in model.layers:
        layers.append(
            {
                "name": layer.name,
                "class": type(layer).__name__,
                "output_shape": _output_shape(layer),
                "params": int(layer.count_params()) if layer.built else 0,
            }
        )
    dtypes: dict[str, int] = {}
    for w in model.weights:
        dtypes[str(w.dtype)] = dtypes.get(str(w.dtype), 0) + 1
    trainable = sum(int(_size(w)) for w in model.trainable_weights)
    total = sum(int(_size(w)) for w in model.weights)
    return {
        "model": {"class": type(model).__name__, "name": model.name},
        "params": {"total": total, "trainable": trainable, "non_trainable": total - trainable},
        "weights_bytes": sum(_nbytes(w) for w in model.weights),
        "dtypes": dtypes,
        "layers": layers,
    }


def _size(w) -> int:
    n = 1
    for d in w.shape:
        n *= int(d)
    return n


def build(model, *, labels=None, preprocessing=None, metadata=None, include_optimizer=True) -> dict:
    """A new manifest for ``model``; fields not given are taken from ``model.kerasafe``."""
    from . import _keras

    previous = getattr(model, "kerasafe", None)
    if isinstance(previous, ModelInfo):
        labels = list(previous.labels) if labels is None and previous.labels is not None else labels
        preprocessing = _thaw(previous.preprocessing) if preprocessing is None else preprocessing
        metadata = _thaw(previous.metadata) if metadata is None else metadata
    labels, preprocessing, metadata = check_user_fields(labels, preprocessing, metadata)
    _check_labels_fit(model, labels)
    manifest = {
        "kerasafe_manifest": MANIFEST_VERSION,
        "kerasafe_version": _version(),
        "keras_version": _keras.keras().__version__,
        "backend": _keras.backend_name(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labels": labels,
        "preprocessing": preprocessing,
        "metadata": metadata,
    }
    manifest.update(describe_model(model))
    manifest["optimizer"] = summarize_optimizer(model) if include_optimizer else None
    manifest["hashes"] = {}
    return manifest


def _check_labels_fit(model, labels) -> None:
    if labels is None or len(getattr(model, "outputs", None) or []) != 1:
        return
    last = model.outputs[0].shape[-1]
    if last is not None and last > 1 and last != len(labels):
        raise errors.KerasafeError(
            None,
            f"one label per model output ({last})",
            f"{len(labels)} labels",
            "pass exactly one class name per output unit",
        )


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, sort_keys=True)


def _whole(v) -> bool:
    return type(v) is int and v >= 0


def _list_of(kinds):
    return lambda v: isinstance(v, list) and all(isinstance(x, kinds) for x in v)


def _mapping_of(check):
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _layer_row(v) -> bool:
    return isinstance(v, dict) and all(isinstance(v.get(k), kinds) for k, kinds in (
        ("name", (str, type(None))), ("class", (str, type(None))), ("params", (int, type(None))), ("output_shape", (list, type(None)))))


# What each manifest field kerasafe reads must be (None is always allowed): a stored manifest is
# checked against this once, when it is read, so nothing later trips over a value of another type.
MANIFEST_FIELDS = {
    "kerasafe_manifest": (_whole, "a whole number"),
    "kerasafe_version": (lambda v: isinstance(v, str), "text"),
    "keras_version": (lambda v: isinstance(v, str), "text"),
    "backend": (lambda v: isinstance(v, str), "text"),
    "created": (lambda v: isinstance(v, str), "text"),
    "labels": (_list_of((str, int)), "a list of class names"),
    "preprocessing": (lambda v: isinstance(v, dict), "an object"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "optimizer": (lambda v: isinstance(v, dict), "an object"),
    "compile_config": (lambda v: isinstance(v, dict), "an object"),
    "architecture": (lambda v: isinstance(v, dict), "an object"),
    "checkpoint": (lambda v: isinstance(v, dict), "an object"),
    "hashes": (_mapping_of(lambda x: isinstance(x, str)), "an object of hash texts"),
    "dtypes": (_mapping_of(_whole), "an object of counts"),
    "weights_bytes": (_whole, "a whole number"),
    "params": (_mapping_of(lambda x: x is None or _whole(x)), "an object of counts"),
    "layers": (lambda v: isinstance(v, list) and all(_layer_row(x) for x in v), "a list of layer rows"),
}


def loads(text: str | bytes, path) -> dict:
    """Parse a stored manifest; a damaged one, or one with a field of another type, is a CorruptFileError naming ``path``.

    Example:
        >>> loads('{"labels": "cat"}', "m.keras")
        Traceback (most recent call last):
        ...
        kerasafe.errors.CorruptFileError: m.keras: expected kerasafe manifest field 'labels' as a list of class names, found 'cat'; the file's record is damaged: save the model again
    """
    from .formats.guard import json_value

    return checked(json_value(text, path, "the kerasafe manifest"), path)


def checked(manifest: dict, path) -> dict:
    """``manifest`` (stored in a file, however it was parsed) once every field kerasafe reads has its type."""
    for key, (ok, wanted) in MANIFEST_FIELDS.items():
        if manifest.get(key) is not None and not ok(manifest[key]):
            raise errors.CorruptFileError(path, f"kerasafe manifest field '{key}' as {wanted}", repr(manifest[key])[:80],
                                          "the file's record is damaged: save the model again")
    checkpoint = manifest.get("checkpoint") or {}
    for key in ("step", "epoch", "batch"):
        if checkpoint.get(key) is not None and not _whole(checkpoint[key]):
            raise errors.CorruptFileError(path, f"kerasafe manifest field 'checkpoint.{key}' as a whole number", repr(checkpoint[key])[:80],
                                          "the file's record is damaged: save the model again")
    if checkpoint.get("value") is not None and not _is_number(checkpoint["value"]):
        checkpoint["value"] = None  # a monitored value that is no number: shown as none
    return manifest


def _freeze(value):
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, types.MappingProxyType | dict):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a loaded model carries as ``model.kerasafe`` (read-only).

    Example:
        >>> info = ModelInfo.from_manifest({"preprocessing": {"size": [8, 8]}}, path="m.h5", format="h5")
        >>> info.preprocessing["size"]
        (8, 8)
    """

    path: str
    format: str
    labels: tuple | None = None
    preprocessing: types.MappingProxyType | None = None
    metadata: types.MappingProxyType | None = None
    keras_version: str | None = None
    backend: str | None = None
    created: str | None = None
    manifest: types.MappingProxyType = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))

    @classmethod
    def from_manifest(cls, manifest: dict | None, *, path, format: str) -> ModelInfo:
        m = manifest or {}
        return cls(
            path=str(path),
            format=format,
            labels=_freeze(m.get("labels")),
            preprocessing=_freeze(m.get("preprocessing")),
            metadata=_freeze(m.get("metadata")),
            keras_version=m.get("keras_version"),
            backend=m.get("backend"),
            created=m.get("created"),
            manifest=_freeze(m),
        )

    @property
    def epoch(self) -> int:
        """Epochs done when this model was checkpointed (0 for a model that is not a checkpoint).

        What a run with plain ``model.fit`` passes as ``initial_epoch`` to continue:
        ``model = ks.restore(d); model.fit(..., initial_epoch=model.kerasafe.epoch)``.
        """
        checkpoint = self.manifest.get("checkpoint")
        epoch = checkpoint.get("epoch") if hasattr(checkpoint, "get") else None
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else 0

    def as_dict(self) -> dict:
        """A plain, mutable copy (for JSON output or editing before a new save)."""
        return {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}


def attach(model, info: ModelInfo):
    """Set ``model.kerasafe`` without Keras's attribute tracking (it is not model state)."""
    object.__setattr__(model, "kerasafe", info)
    return model
