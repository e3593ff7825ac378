"""Per-format scanners: read each part of a file that loading would act on, as data, and list findings.

Each takes a path and returns findings; none raises for the file's content (what cannot
be read is a KS900 finding, which makes the verdict inconclusive).

Example:
    >>> sorted(SCANNERS)[:3]
    ['h5', 'json', 'keras']
"""

from __future__ import annotations

import io
import pathlib
import posixpath
import zipfile

from .. import errors
from .config_rules import config_findings
from .findings import Finding


def _from_error(exc: errors.KerasafeError, location: str) -> Finding:
    """A reader's refusal as a finding: outside references, bombs and nesting by their rule; anything else unreadable."""
    text = " ".join(str(exc).split())[:300]
    if isinstance(exc, errors.UnsafeContentError):
        return Finding("KS202", location, text)
    if "nested" in text or "deeper" in text:
        return Finding("KS302", location, text)
    if "declaring" in text or "inflate" in text or "expand past" in text or "exhaust memory" in text:
        return Finding("KS301", location, text)
    return Finding("KS900", location, text)


def _guarded(location: str, read, out: list):
    """Run ``read`` (which returns findings); a refusal or any other error becomes a finding."""
    try:
        out.extend(read())
    except errors.KerasafeError as exc:
        out.append(_from_error(exc, location))
    except RecursionError:
        out.append(Finding("KS302", location, "values nested deeper than any model"))
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, the scan reports it and goes on
        out.append(Finding("KS900", location, f"unreadable ({' '.join(f'{type(exc).__name__}: {exc}'.split())[:200]})"))


def _manifest_architecture(manifest, location: str) -> list[Finding]:
    arch = (manifest or {}).get("architecture")
    return config_findings(arch, f"{location}kerasafe manifest architecture") if isinstance(arch, dict) else []


def _h5_names(h5, location: str) -> list[Finding]:
    """Soft links (Keras never writes one; a loop of them hangs a walk) and name lists a reader could not use."""
    import h5py

    from ..legacy.weights import name_list

    out, groups = [], []

    def visit(raw, info):
        name = raw.decode("utf-8", "replace")
        if info.type == h5py.h5l.TYPE_SOFT and not out:
            target = h5.id.links.get_val(raw).decode("utf-8", "replace")
            out.append(Finding("KS900", f"{location}{name}", f"a soft link to '{target[:80]}' (Keras never writes one)"))
        elif info.type == h5py.h5l.TYPE_HARD and len(groups) < 100_000 and isinstance(h5.get(raw, getlink=True), h5py.HardLink):
            groups.append(name)
    h5.id.links.visit(visit, info=True)
    for name in ["/", *groups]:
        obj = h5.get(name) if name != "/" else h5
        if isinstance(obj, h5py.Group):
            for attr in ("layer_names", "weight_names"):
                try:
                    name_list(obj, attr)
                except ValueError as exc:
                    return out + [Finding("KS900", f"{location}{name}@{attr}", str(exc)[:200])]
    return out


def _h5_object(h5, path, location: str) -> list[Finding]:
    from ..formats import _direct, _hdf5

    out: list[Finding] = []
    size = h5.id.get_filesize()
    _guarded(location or "file", lambda: (_direct.layout(h5, size, path), [])[1], out)
    if not out:  # (a file refused above is not walked again)
        _guarded(location or "file", lambda: _h5_names(h5, location), out)
    if "model_config" in h5.attrs:
        _guarded(f"{location}model_config", lambda: config_findings(_hdf5.attr_json(h5, "model_config", path), f"{location}model_config"), out)
    _guarded(f"{location}kerasafe manifest", lambda: _manifest_architecture(_hdf5.read_manifest(h5, path), location), out)
    return out


def scan_hdf5(path: pathlib.Path) -> list[Finding]:
    from ..formats import _hdf5

    out: list[Finding] = []

    def read():
        with _hdf5.open_h5(path) as h5:
            return _h5_object(h5, path, "")
    _guarded("file", read, out)
    return out


def _npz_pickles(data: bytes, location: str) -> list[Finding]:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        for key in archive.files:
            try:
                archive[key]
            except ValueError:  # "Object arrays cannot be loaded when allow_pickle=False"
                return [Finding("KS103", f"{location}:{key}", "an object array (a pickle) in the weights", trust="pickle")]
    return []


def scan_zip(path: pathlib.Path) -> list[Finding]:
    from ..formats import guard, keras_zip

    out: list[Finding] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [Finding("KS900", "file", f"a damaged zip ({exc})")]
    with zf:
        bombs = set()
        for info in zf.infolist():
            name = info.filename
            if name.startswith(("/", "\\")) or posixpath.normpath(name).startswith("..") or ":" in name.split("/")[0]:
                out.append(Finding("KS202", name, f"archive member '{name}' pointing outside the archive"))
            if keras_zip.inflates_too_far(info):
                bombs.add(name)
                out.append(Finding("KS301", name, f"member declaring {info.file_size:,} bytes from {info.compress_size:,}"))
            if name.endswith((".pkl", ".pickle", ".pt", ".pth", ".joblib")):
                out.append(Finding("KS103", name, f"member '{name}' in a pickle format", trust="pickle"))
        names = set(zf.namelist())
        missing = [m for m in (keras_zip.CONFIG, keras_zip.WEIGHTS_H5) if m not in names]
        if missing and not (missing == [keras_zip.WEIGHTS_H5] and keras_zip.WEIGHTS_NPZ in names):
            out.append(Finding("KS900", "archive", f"no member '{missing[0]}' (a .keras archive has one)"))
        if len(names) != len(zf.namelist()):
            out.append(Finding("KS900", "archive", "a member stored twice (which copy a reader takes depends on the reader)"))
        if keras_zip.MANIFEST in names and keras_zip.MANIFEST not in bombs:
            _guarded(keras_zip.MANIFEST, lambda: (keras_zip.read_manifest(zf, path), [])[1], out)
        for name in sorted(n for n in names if n.endswith(".npz") and n not in bombs):
            _guarded(name, lambda name=name: _npz_pickles(keras_zip.read_member(zf, name, path, limit=zf.getinfo(name).file_size), name), out)
        if keras_zip.CONFIG in names and keras_zip.CONFIG not in bombs:
            _guarded(keras_zip.CONFIG, lambda: config_findings(
                guard.json_value(keras_zip.read_member(zf, keras_zip.CONFIG, path), path, keras_zip.CONFIG), keras_zip.CONFIG), out)
        if keras_zip.WEIGHTS_H5 in names and keras_zip.WEIGHTS_H5 not in bombs:
            def weights():
                with keras_zip.weights_h5(zf, path) as (h5, _):
                    return _h5_object(h5, path, f"{keras_zip.WEIGHTS_H5}:")
            _guarded(keras_zip.WEIGHTS_H5, weights, out)
    return out


def scan_safetensors(path: pathlib.Path) -> list[Finding]:
    from .. import manifest as manifest_mod
    from ..formats import safetensors_format

    out: list[Finding] = []

    def read():
        header, _ = safetensors_format.read_header(path)
        text = (header.get("__metadata__") or {}).get(manifest_mod.MANIFEST_KEY)
        return _manifest_architecture(manifest_mod.loads(text, path), "") if text else []
    _guarded("header", read, out)
    return out


def scan_architecture(path: pathlib.Path) -> list[Finding]:
    from ..formats import BY_NAME

    fmt = BY_NAME["yaml" if path.read_bytes()[:1] != b"{" and not path.name.endswith(".json") else "json"]
    out: list[Finding] = []

    def read():
        try:
            config = fmt._load(path)
        except errors.UnsafeContentError as exc:
            return [Finding("KS104", "file", " ".join(str(exc).split())[:300])]
        return config_findings(config, "config")
    _guarded("file", read, out)
    return out


def scan_savedmodel(path: pathlib.Path) -> list[Finding]:
    from ..formats import savedmodel, tf_checkpoint

    inner = savedmodel.embedded_model(path)
    if inner.is_file():
        return [dataclass_at(f, f"{inner.relative_to(path)}:") for f in scan_zip(inner)]
    if (path / "keras_metadata.pb").is_file():
        out: list[Finding] = []
        _guarded("keras_metadata.pb", lambda: config_findings(
            tf_checkpoint.keras_metadata_model(path / "keras_metadata.pb")["model_config"], "keras_metadata.pb"), out)
        out += [dataclass_at(f, "variables/") for f in scan_checkpoint(path / "variables" / "variables")]
        return out
    out = [Finding("KS105", "saved_model.pb", "a TensorFlow graph with no Keras model: loading it runs the graph "
                   "(resource initializers and any op it holds)", trust="tensorflow-graph")]

    def ops():
        from ..formats.savedmodel_graph import graph_ops
        from .graph_ops import outside_allowlist

        return [Finding("KS106", f"saved_model.pb:{(functions[0] or 'graph')[:80]}",
                        f"TensorFlow op {op} outside the allowlist of ops that touch only tensors and variables "
                        f"(in {len(functions)} function(s))", trust=f"tf-op:{op}")
                for op, functions in outside_allowlist(graph_ops(path / "saved_model.pb")).items()]
    _guarded("saved_model.pb", ops, out)
    return out


def dataclass_at(finding: Finding, prefix: str) -> Finding:
    return Finding(finding.rule, prefix + finding.location, finding.message, finding.trust)


def scan_checkpoint(path: pathlib.Path) -> list[Finding]:
    from ..formats import tf_checkpoint

    out: list[Finding] = []
    _guarded("index", lambda: (tf_checkpoint.read_index(path.with_name(path.name + ".index")), [])[1], out)
    return out


SCANNERS = {"keras": scan_zip, "h5": scan_hdf5, "weights.h5": scan_hdf5, "legacy-weights.h5": scan_hdf5,
            "safetensors": scan_safetensors, "json": scan_architecture, "yaml": scan_architecture,
            "savedmodel": scan_savedmodel, "tf-checkpoint": scan_checkpoint}
