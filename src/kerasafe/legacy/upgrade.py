"""``kerasafe upgrade FOLDER``: every old model found under a folder, converted to ``.keras`` beside it.

What counts as a model: a full-model HDF5 file, a SavedModel directory, or an
architecture (JSON/YAML) with its weights beside it under the same stem
(``model.json`` + ``model.h5`` / ``model.weights.h5`` / ``model-weights.h5`` /
``model_weights.h5`` / a TensorFlow checkpoint ``model.index`` or folder
``model.ckpt``). Weights and architectures found alone are reported, not guessed
at. Nothing is overwritten without ``force=True``.

Example:
    >>> import tempfile
    >>> from kerasafe.legacy.upgrade import upgrade
    >>> upgrade(tempfile.mkdtemp())
    []
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

from .. import api, errors, formats
from ..formats.base import ARCHITECTURE, MODEL, WEIGHTS
from ..formats.tf_checkpoint import resolve_prefix

WEIGHTS_BESIDE = ("{stem}.h5", "{stem}.weights.h5", "{stem}-weights.h5", "{stem}_weights.h5", "{stem}.hdf5",
                  "{stem}.safetensors", "{stem}.ckpt", "{stem}")


@dataclasses.dataclass
class Outcome:
    source: str
    format: str
    result: str  # "converted", "exists", "skipped", "failed"
    target: str | None = None
    detail: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)


def _candidates(folder: pathlib.Path):
    """Model files and SavedModel directories under ``folder``, full models first, in a stable order."""
    savedmodels, files = [], []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden: temporaries, .git
        if any(parent in savedmodels for parent in path.parents):
            continue
        if path.is_dir() and (path / "saved_model.pb").is_file():
            savedmodels.append(path)
        elif path.is_file() and path.suffix.lower() in (".h5", ".hdf5", ".json", ".yaml", ".yml", ".index", ".safetensors"):
            files.append(path)
    return savedmodels, files


def _weights_for(architecture: pathlib.Path) -> pathlib.Path | None:
    """The weights file of the same name beside an architecture (a full-model file is not one)."""
    for pattern in WEIGHTS_BESIDE:
        candidate = architecture.with_name(pattern.format(stem=architecture.stem))
        if candidate == architecture or not (resolve_prefix(candidate) is not None or candidate.is_file()):
            continue
        try:
            if formats.locate(candidate, "weights")[1].holds == WEIGHTS:
                return candidate
        except errors.KerasafeError:
            continue
    return None


def _convert(source, target: pathlib.Path, force: bool, produced: set, weights=None) -> Outcome:
    outcome = Outcome(str(source), "?", "failed", str(target))
    try:
        _, fmt = formats.locate(source, "a model")
        outcome.format = fmt.name
        if target in produced:
            outcome.result, outcome.detail = "skipped", f"{target.name} comes from another file found here"
            return outcome
        if target.exists() and not force:
            outcome.result, outcome.detail = "exists", "pass --force to replace it"
            return outcome
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            api.convert(source, target, weights=weights)
        # What kerasafe and Keras say about the file (not the libraries' deprecation noise).
        outcome.warnings = sorted({str(w.message)[:200] for w in caught if issubclass(w.category, UserWarning)})
        outcome.result = "converted"
        produced.add(target)
    except errors.KerasafeError as exc:
        outcome.detail = str(exc)
    return outcome


def upgrade(folder, *, force: bool = False) -> list[Outcome]:
    """Convert every model found under ``folder`` (recursively) to ``.keras`` beside it; one Outcome per find."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise errors.WrongKindOfPathError(root, "a folder to search for models", "no folder there", "pass the folder that holds the models")
    savedmodels, files = _candidates(root)
    produced: set[pathlib.Path] = set()
    results = [_convert(d, d.with_suffix(".keras") if d.suffix else d.with_name(d.name + ".keras"), force, produced)
               for d in savedmodels]
    found: dict[pathlib.Path, formats.Format] = {}  # each file's format, detected once
    for path in files:
        try:
            found[path] = formats.locate(path, "a model")[1]
        except errors.KerasafeError:
            results.append(Outcome(str(path), "?", "skipped", detail="not a model file"))
            continue
        if found[path].holds == MODEL:
            results.append(_convert(path, path.with_suffix(".keras"), force, produced))
    used_as_weights: set[pathlib.Path] = set()
    for path in [p for p, fmt in found.items() if fmt.holds == ARCHITECTURE]:
        weights = _weights_for(path)
        if weights is None:
            results.append(Outcome(str(path), found[path].name, "skipped", detail="architecture only: no weights beside it"))
            continue
        used_as_weights.add(weights)
        results.append(_convert(path, path.with_suffix(".keras"), force, produced, weights=weights))
    for path in [p for p, fmt in found.items() if fmt.holds == WEIGHTS]:
        prefix = resolve_prefix(path)  # a checkpoint is named by its prefix or folder, found by its .index
        if path in used_as_weights or (prefix is not None and (prefix in used_as_weights or prefix.parent in used_as_weights)):
            continue
        results.append(Outcome(str(path), found[path].name, "skipped",
                               detail="weights only: no architecture of the same name beside it"))
    return results
