"""The table of on-disk formats that ``save``, ``load``, ``inspect`` and ``convert`` consult.

``detect`` decides a format from content (magic bytes, zip members, HDF5
attributes, directory contents), never from a name alone; ``for_save`` and
``for_save_weights`` pick the format a target name asks for.

Example:
    >>> from kerasafe import formats
    >>> formats.for_save("model.h5").name
    'h5'
"""

from __future__ import annotations

import pathlib
import warnings

from .. import errors
from .architecture import JsonFormat, YamlFormat
from .base import ARCHITECTURE, MODEL, WEIGHTS, Format
from .guard import reading
from .hdf5_model import HDF5ModelFormat
from .hdf5_weights import Keras3WeightsFormat, LegacyWeightsFormat
from .keras_zip import KerasZipFormat
from .safetensors_format import SafetensorsFormat
from .savedmodel import SavedModelFormat
from .sharded import ShardedCheckpointFormat
from .tf_checkpoint import TFCheckpointFormat, resolve_prefix

KERAS = KerasZipFormat()
H5 = HDF5ModelFormat()
WEIGHTS_H5 = Keras3WeightsFormat()
LEGACY_WEIGHTS_H5 = LegacyWeightsFormat()
SAFETENSORS = SafetensorsFormat()
JSON = JsonFormat()
YAML = YamlFormat()
SAVEDMODEL = SavedModelFormat()
TF_CHECKPOINT = TFCheckpointFormat()
SHARDED = ShardedCheckpointFormat()

# Order matters for detection: the cheapest and most specific checks first.
FORMATS: tuple[Format, ...] = (KERAS, H5, LEGACY_WEIGHTS_H5, WEIGHTS_H5, SAFETENSORS, JSON, YAML, SAVEDMODEL, TF_CHECKPOINT, SHARDED)
BY_NAME = {f.name: f for f in FORMATS}
_HEAD = 4096

__all__ = ["ARCHITECTURE", "BY_NAME", "FORMATS", "MODEL", "WEIGHTS", "Format", "detect", "for_save", "for_save_weights", "locate"]


def _describe(head: bytes) -> str:
    if not head:
        return "an empty file"
    printable = head[:24]
    return f"content starting with {printable!r}"


def locate(path, expected: str) -> tuple[pathlib.Path, Format]:
    """The path to read and its format; a TensorFlow checkpoint is named by its prefix, which is no file."""
    from .. import storage

    with reading(path, expected):  # a checkpoint's state file names the prefix: any text may be there
        prefix = resolve_prefix(path)
    if prefix is not None:
        return prefix, TF_CHECKPOINT
    p = storage.existing_path(path, expected)
    if p.is_dir():
        from ..checkpoint import store

        if store.committed(p):  # a checkpoint directory stands for its newest intact checkpoint
            p = store.model_file(store.newest_intact(p))
    return p, detect(p)


def detect(path: pathlib.Path) -> Format:
    """The format of the file or directory at ``path``, judged by its content."""
    path = pathlib.Path(path)
    if path.is_dir():
        for fmt in (SAVEDMODEL, SHARDED):
            if fmt.recognise(path, b""):
                return fmt
        raise errors.UnrecognizedFormatError(
            path, "a model file, a SavedModel directory (with saved_model.pb) or a checkpoint directory",
            f"a directory holding {sorted(p.name for p in path.iterdir())[:5]}",
            "pass the model file inside it",
        )
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    with reading(path, "a Keras model file"):  # recognising opens HDF5 and zip files: their errors too
        for fmt in FORMATS:
            if not fmt.is_directory and fmt.recognise(path, head):
                return fmt
    from ._hdf5 import is_hdf5

    if is_hdf5(head):
        raise errors.CorruptFileError(
            path, "an HDF5 file in a Keras layout (model_config, layer_names, or layers/ groups)",
            "an HDF5 file without any of them", "pass a file written by Keras or kerasafe",
        )
    if path.suffix == ".keras" or head.startswith(b"PK"):
        # A .keras name or a zip signature that failed the zip checks: say what is damaged.
        from .keras_zip import open_archive

        open_archive(path).close()
    raise errors.UnrecognizedFormatError(
        path, "a Keras model file (.keras, .h5, .weights.h5, .safetensors, .json, .yaml)",
        _describe(head), "check that this is a model file and that it was copied completely",
    )


def _suffix(path: pathlib.Path) -> str:
    name = path.name.lower()
    return ".weights.h5" if name.endswith(".weights.h5") else path.suffix.lower()


def _by_format_name(format: str) -> Format:
    try:
        return BY_NAME[format]
    except KeyError:
        raise errors.KerasafeError(None, f"a format among {sorted(BY_NAME)}", repr(format), "pass one of those names") from None


def for_save(path, format: str | None = None) -> Format:
    """The format ``ks.save(model, path)`` writes."""
    if format is not None:
        return _by_format_name(format)
    path = pathlib.Path(path)
    suffix = _suffix(path)
    table = {".keras": KERAS, ".h5": H5, ".hdf5": H5, ".weights.h5": WEIGHTS_H5, ".safetensors": SAFETENSORS,
             ".json": JSON, ".yaml": YAML, ".yml": YAML}
    if suffix in table:
        return table[suffix]
    if path.is_dir() or not suffix or str(path).endswith(("/", "\\")):
        return SAVEDMODEL
    warnings.warn(
        f"{path}: '{suffix}' is not a model suffix kerasafe knows; writing .keras content "
        "(ks.load reads it back by content; rename it to .keras to open it with plain Keras)",
        stacklevel=3,
    )
    return KERAS


def for_save_weights(path, format: str | None = None) -> Format:
    """The format ``ks.save_weights(model, path)`` writes (Keras 2 layout for a plain ``.h5``)."""
    if format is not None:
        return _by_format_name(format)
    path = pathlib.Path(path)
    suffix = _suffix(path)
    table = {".weights.h5": WEIGHTS_H5, ".h5": LEGACY_WEIGHTS_H5, ".hdf5": LEGACY_WEIGHTS_H5, ".safetensors": SAFETENSORS}
    if suffix in table:
        return table[suffix]
    if suffix in (".keras", ".json", ".yaml", ".yml"):
        raise errors.UnsupportedOperationError(
            path, "a weights file name (.weights.h5, .h5, .safetensors)", f"a '{suffix}' name",
            "use ks.save for a whole model, or ks.to_json for the architecture",
        )
    warnings.warn(
        f"{path}: no weights suffix; writing Keras 3 .weights.h5 content under this name "
        "(ks.load_weights reads it back by content)",
        stacklevel=3,
    )
    return WEIGHTS_H5

