"""``.keras``: Keras 3's zip archive, plus kerasafe's manifest as an extra member.

Members (stored, not compressed, as Keras writes them): ``metadata.json``,
``config.json``, ``model.weights.h5``, optional ``assets/...``, and
``kerasafe.json``. Plain ``keras.saving.load_model`` ignores the extra member.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import collections
import json
import os
import pathlib
import posixpath
import re
import tempfile
import zipfile

from .. import _keras, _keras_direct, errors, storage
from .. import manifest as manifest_mod
from . import _direct, _hdf5, guard
from .base import MODEL, Format, apply_manifest, keras_failure, refuse_code, summary

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS_H5 = "model.weights.h5"
WEIGHTS_NPZ = "model.weights.npz"
MANIFEST = "kerasafe.json"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# zipfile never inflates a member past the size the central directory declares, so checking
# the declared sizes bounds every read (Keras's own included). Model data compresses a few
# times at most; past 100x, and past 64 MiB, it is a decompression bomb or damage.
MEMBER_RATIO, MEMBER_FLOOR = 100, 64 << 20


def inflates_too_far(info: zipfile.ZipInfo) -> bool:
    """Whether a member declares more than MEMBER_RATIO x its compressed size (and more than MEMBER_FLOOR)."""
    return info.file_size > max(MEMBER_FLOOR, MEMBER_RATIO * info.compress_size)


def open_archive(path: pathlib.Path) -> zipfile.ZipFile:
    """Open and check a ``.keras`` zip: readable, member names safe, required members present."""
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError) as exc:
        raise errors.CorruptFileError(
            path, "a .keras zip archive", f"a damaged or truncated zip ({exc})", "the file is incomplete; save the model again"
        ) from None
    names = zf.namelist()
    for info in zf.infolist():
        if inflates_too_far(info):
            zf.close()
            raise errors.CorruptFileError(
                path, f"zip members that inflate at most {MEMBER_RATIO}x (or to {MEMBER_FLOOR >> 20} MiB)",
                f"member '{info.filename}' declaring {info.file_size:,} bytes from {info.compress_size:,}",
                "the file is damaged or a decompression bomb; do not load it")
    if len(names) != len(set(names)):
        duplicate = next(n for n, count in collections.Counter(names).items() if count > 1)
        zf.close()  # which copy a reader gets depends on the reader: refuse rather than guess
        raise errors.CorruptFileError(path, "each zip member once", f"member '{duplicate}' twice", "save the model again")
    for name in names:
        normal = posixpath.normpath(name)
        if name.startswith(("/", "\\")) or normal.startswith("..") or ":" in name.split("/")[0]:
            zf.close()
            raise errors.UnsafeContentError(
                path, "zip members inside the archive", f"member '{name}' pointing outside it", "do not load this file"
            )
    if CONFIG not in names or (WEIGHTS_H5 not in names and WEIGHTS_NPZ not in names):
        missing = CONFIG if CONFIG not in names else WEIGHTS_H5
        zf.close()
        raise errors.CorruptFileError(
            path, f"a .keras archive with member '{missing}'", f"members {sorted(names)[:6]}", "save the model again"
        )
    return zf


def read_member(zf: zipfile.ZipFile, name: str, path, limit: int = guard.TEXT_LIMIT) -> bytes:
    """A member's bytes, read whole only up to ``limit``: a few hundred compressed bytes can inflate to gigabytes."""
    info = zf.getinfo(name)
    too_big = errors.CorruptFileError(path, f"zip member '{name}' of at most {limit:,} bytes",
                                      f"one that inflates past that (it declares {info.file_size:,})",
                                      "the file is damaged or made to exhaust memory; do not load it")
    if info.file_size > limit:
        raise too_big
    try:
        with zf.open(info) as member:  # the declared size can lie: read one byte past the limit at most
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:  # CRC, truncation, method
        raise errors.CorruptFileError(
            path, f"intact zip member '{name}'", f"damaged data ({exc})", "the file is corrupt; save the model again"
        ) from None
    if len(data) > limit:
        raise too_big
    return data


def read_manifest(zf: zipfile.ZipFile, path) -> dict | None:
    if MANIFEST not in zf.namelist():
        return None
    return manifest_mod.loads(read_member(zf, MANIFEST, path), path)


def check_weights_member(zf: zipfile.ZipFile, path) -> None:
    """The HDF5 member's links and declared dataset sizes, checked from its headers before Keras reads it."""
    if WEIGHTS_H5 not in zf.namelist():
        return
    with weights_h5(zf, path) as (h5, _):
        _hdf5.reject_external_links(h5, path)


def member_window(zf: zipfile.ZipFile, raw, info: zipfile.ZipInfo, path) -> _direct.FileWindow:
    """The bytes of a stored (uncompressed) member, as a window on the open archive file ``raw``."""
    # zipfile keeps where a member's local header starts, not where its data starts:
    # the local header (30 bytes + name + extra field) says that.
    header = os.pread(raw.fileno(), 30, info.header_offset)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise errors.CorruptFileError(path, f"a zip local header for '{info.filename}'", "other bytes", "the file is corrupt; save the model again")
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    size = os.fstat(raw.fileno()).st_size
    if start + info.file_size > size:
        raise errors.CorruptFileError(path, f"member '{info.filename}' of {info.file_size:,} bytes inside the file",
                                      f"a file of {size:,} bytes", "the file is truncated; save the model again")
    return _direct.FileWindow(raw.fileno(), start, info.file_size)


@contextlib.contextmanager
def _damage_is_corrupt(path, what: str):
    """Damaged HDF5 headers (h5py raises OSError or RuntimeError) or zip data become CorruptFileError."""
    try:
        yield
    except (OSError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        raise errors.CorruptFileError(path, f"an intact HDF5 {what}", f"damaged data ({str(exc)[:160]})",
                                      "the file is corrupt; save the model again") from None


@contextlib.contextmanager
def weights_h5(zf: zipfile.ZipFile, path):
    """``(h5py file, window)`` over the weights member; the window (no CRC on every seek) when it is stored."""
    info = zf.getinfo(WEIGHTS_H5)
    with _damage_is_corrupt(path, f"member '{WEIGHTS_H5}'"):
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as raw, member_window(zf, raw, info, path) as window, _hdf5.h5py.File(window, "r") as h5:
                yield h5, window
        else:
            with zf.open(WEIGHTS_H5) as member, _hdf5.h5py.File(member, "r") as h5:
                yield h5, None


@contextlib.contextmanager
def weights_file(path):
    """``(h5py file, window)`` over a whole ``.weights.h5`` file, for :class:`DirectWeights`."""
    with _damage_is_corrupt(path, "weights file"), open(path, "rb") as raw:
        with _direct.FileWindow(raw.fileno(), 0, os.fstat(raw.fileno()).st_size) as window, _hdf5.h5py.File(window, "r") as h5:
            yield h5, window


class DirectWeights:
    """Keras 3's weights layout in ``h5``, its offsets checked, ready to fill a model (formats._direct).

    Constructing it walks the file once: links and storage outside it are refused and
    every dataset's offset and size is checked against the window, before a model is
    built or a byte of weights is read. ``expected``: see ``_direct.SequentialReader``.
    """

    def __init__(self, h5, window: _direct.FileWindow, path, expected=None):
        self.h5, self.path, self.groups = h5, path, set()
        self.refs = _direct.layout(h5, window.length, path, self.groups)
        self.reader = _direct.SequentialReader(window, path, expected)

    def fill(self, model, assets_store=None, *, skip_mismatch=False, by_name=False) -> None:
        """Keras's own walk over ``model``'s state, each array read from its offset; hashes checked at the end."""
        store = _keras_direct.direct_store(self.h5, self.refs, self.reader, self.groups)
        try:
            if by_name:
                _keras_direct.load_layers_by_name(model, store, skip_mismatch=skip_mismatch)
            else:
                _keras_direct.load_state(model, store, assets_store=assets_store, skip_mismatch=skip_mismatch)
        except ValueError:
            if self.reader.damage is not None:  # Keras reports it as a layer that did not fit
                raise self.reader.damage from None
            raise
        if self.reader.damage is not None:  # with skip_mismatch Keras only warns
            raise self.reader.damage
        self.reader.finish()


def hash_member(zf: zipfile.ZipFile, name: str, path=None) -> str:
    """xxh3 of a member's bytes: read straight from the file when stored (zipfile would add a CRC-32 pass)."""
    info = zf.getinfo(name)
    if path is not None and info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw, member_window(zf, raw, info, path) as window:
            return storage.hash_stream(window, info.file_size)
    with zf.open(name) as f:
        return storage.hash_stream(f)


@dataclasses.dataclass
class Snapshot:
    """Everything a ``.keras`` file will hold, copied off the live model (see :func:`snapshot`)."""

    members: dict[str, bytes]  # metadata.json, config.json
    state: list  # _keras.StateEntry groups of model.weights.h5
    assets: dict[str, bytes]
    manifest: dict

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for e in self.state for _, a in e.arrays)


def snapshot(model, manifest: dict, *, include_optimizer: bool, reuse: Snapshot | None = None, copy: bool = True) -> Snapshot:
    """Copy what a ``.keras`` file of ``model`` holds into host memory; the model may change afterwards.

    ``reuse``: an earlier snapshot that is written and no longer needed; its arrays
    are filled again instead of allocating (checkpoints do this every time).
    ``copy=False``: views of the variables instead of copies, for a snapshot written
    before the model runs again (``ks.save``).

    Example:
        >>> import keras, tempfile, pathlib
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> snap = snapshot(m, {}, include_optimizer=False)
        >>> snap.nbytes
        12
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.keras"
        >>> write_snapshot(snap, path).startswith("xxh3_128:")
        True
        >>> keras.saving.load_model(path).count_params()
        3
    """
    config = _keras.serialize_model(model)
    if not include_optimizer:
        config["compile_config"] = None
    meta = {
        "keras_version": _keras.keras().__version__,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    state, assets = _keras.capture_state(model, skip_optimizer=not include_optimizer, reuse=reuse.state if reuse else (), copy=copy)
    members = {METADATA: json.dumps(meta).encode(), CONFIG: json.dumps(config).encode()}
    return Snapshot(members, state, assets, dict(manifest))


def write_snapshot(snap: Snapshot, target: pathlib.Path) -> str:
    """Write a :class:`Snapshot` as a ``.keras`` file at ``target``; return the whole file's hash.

    Any thread may call it; the caller makes the file's arrival atomic. The file is
    written front to back (members with data descriptors, as zipfile writes to any
    stream that cannot seek), on a writer thread that overlaps the disk with
    zipfile's CRC-32 and hashes the bytes as they pass.
    """
    target = pathlib.Path(target)
    hashes = {name: storage.hash_bytes(data) for name, data in {**snap.members, **snap.assets}.items()}
    with storage.HashingFileWriter(target) as out:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, data in snap.members.items():
                zf.writestr(name, data)
            # The weights go into their member in one pass (no temporary copy of the
            # whole HDF5 file, no second copy in memory).
            with zf.open(WEIGHTS_H5, "w", force_zip64=True) as member:
                hashes[WEIGHTS_H5] = _hdf5.stream_state(member, snap.state, target.with_name(target.name + ".skeleton.h5"))
            for name, data in snap.assets.items():
                zf.writestr(name, data)
            # The manifest goes last so it can hold the hash of every other member.
            zf.writestr(MANIFEST, manifest_mod.dumps(dict(snap.manifest, hashes=hashes)))
    return out.digest


def write_weights_snapshot(snap: Snapshot, target: pathlib.Path) -> str:
    """Write only the weights (and optimizer state) of a :class:`Snapshot` as a ``.weights.h5`` file; return its hash.

    The architecture travels in the manifest, as in every kerasafe weights file, so
    ``ks.load`` can still rebuild the model from it. Used by weights-only checkpoints.
    """
    manifest = dict(snap.manifest, architecture=json.loads(snap.members[CONFIG]), hashes=_hdf5.state_hashes(snap.state))

    def build(h5, placed):
        _hdf5.write_state(h5, snap.state, placed=placed)
        _hdf5.write_manifest(h5, manifest)

    return _hdf5.write_h5_file(target, build)


class KerasZipFormat(Format):
    name = "keras"
    description = "Keras 3 .keras archive"
    suffixes = (".keras",)
    holds = MODEL

    def recognise(self, path, head):
        if not head.startswith(ZIP_MAGICS):
            return False
        try:
            with zipfile.ZipFile(path) as zf:
                return CONFIG in zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return path.suffix == ".keras"  # a damaged .keras: let read() explain what is wrong

    def write(self, model, target, manifest, *, include_optimizer):
        # Written before ks.save returns, so views of the variables do (no copy of the model).
        write_snapshot(snapshot(model, manifest, include_optimizer=include_optimizer, copy=False), target)

    def read(self, path, *, compile, safe_mode, custom_objects):
        with open_archive(path) as zf:
            manifest = read_manifest(zf, path)
            config_json = read_member(zf, CONFIG, path)
            refuse_code(guard.json_value(config_json, path, f"zip member '{CONFIG}'"), path, safe_mode)
            if WEIGHTS_H5 in zf.namelist() and zf.getinfo(WEIGHTS_H5).compress_type == zipfile.ZIP_STORED:
                try:
                    return self._read_direct(zf, path, config_json, manifest, compile, safe_mode, custom_objects), manifest
                except (ValueError, TypeError, KeyError) as exc:
                    raise keras_failure(path, exc, "a .keras model Keras can rebuild") from None
            check_weights_member(zf, path)
        # A compressed or .npz weights member (not what Keras writes): Keras's own reader.
        try:
            with open(path, "rb") as f:
                model = _keras.saving_lib()._load_model_from_fileobj(f, custom_objects, compile, safe_mode)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError) as exc:
            raise keras_failure(path, exc, "a .keras model Keras can rebuild") from None
        return model, manifest

    def _read_direct(self, zf, path, config_json, manifest, compile, safe_mode, custom_objects):
        """Build the model from config.json and read each weight from its offset in the archive.

        Keras's loader copies the whole HDF5 member out first (into memory, or to a
        temporary file, which with kerasafe's extra member means extracting the whole
        archive); here nothing is copied, one array at a time is read, and the member's
        bytes are hashed on the way (the manifest's xxh3, else the zip's CRC-32).
        """
        lib = _keras.saving_lib()
        expected = _member_check(zf, manifest)
        assets_dir = None
        with weights_h5(zf, path) as (h5, window):
            weights = DirectWeights(h5, window, path, expected)  # checks the file before anything is built
            try:
                # Variables are created empty and get their first value from the file (JAX, PyTorch).
                with _keras_direct.variables_filled_by_loading() as built:
                    model = _keras_direct.model_from_config_json(config_json, custom_objects, compile, safe_mode, built)
                    assets = [n for n in zf.namelist() if n.startswith("assets/")]
                    if assets:  # only the assets are extracted (Keras's store would extract every member)
                        assets_dir = tempfile.TemporaryDirectory(prefix="kerasafe-assets-")
                        zf.extractall(assets_dir.name, members=assets)
                        assets_store = lib.DiskIOStore(os.path.join(assets_dir.name, "assets"), mode="r")
                    else:
                        assets_store = None
                    weights.fill(model, assets_store)
            finally:
                if assets_dir is not None:
                    assets_dir.cleanup()
        return model

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        with open_archive(path) as zf:
            manifest = read_manifest(zf, path)
            if WEIGHTS_H5 in zf.namelist() and zf.getinfo(WEIGHTS_H5).compress_type == zipfile.ZIP_STORED:
                with weights_h5(zf, path) as (h5, window):
                    load_keras3_weights(model, DirectWeights(h5, window, path, _member_check(zf, manifest)), path, by_name=by_name, skip_mismatch=skip_mismatch)
                return manifest
            check_weights_member(zf, path)
            data = io.BytesIO(read_member(zf, WEIGHTS_H5, path, limit=zf.getinfo(WEIGHTS_H5).file_size))  # checked on opening
        load_keras3_weights(model, data, path, by_name=by_name, skip_mismatch=skip_mismatch)
        return manifest

    def inspect(self, path):
        with open_archive(path) as zf:
            manifest = read_manifest(zf, path)
            meta = guard.json_value(read_member(zf, METADATA, path), path, f"zip member '{METADATA}'") if METADATA in zf.namelist() else {}
            config = guard.json_value(read_member(zf, CONFIG, path), path, f"zip member '{CONFIG}'")
            result = summary(path, self, keras_version=meta.get("keras_version"), has_architecture=True)
            if WEIGHTS_H5 in zf.namelist() and not (manifest and manifest.get("layers")):
                # Stored members are plain bytes inside the zip; h5py reads them through the
                # member's file object without extracting anything.
                with weights_h5(zf, path) as (h5, _):
                    _hdf5.reject_external_links(h5, path)  # inspect walks nothing load would refuse
                    result.update(keras3_weights_overview(h5, config))
            result["optimizer"] = _optimizer_from_config(config)
            result["members"] = {i.filename: i.file_size for i in zf.infolist()}
        return apply_manifest(result, manifest)

    def verify(self, path):
        with open_archive(path) as zf:
            manifest = read_manifest(zf, path) or {}
            names = set(zf.namelist())
            out = {}
            for name, expected in (manifest.get("hashes") or {}).items():
                if name not in names:
                    out[name] = "missing"
                    continue
                try:
                    out[name] = "ok" if hash_member(zf, name, path) == expected else "mismatch"
                except (zipfile.BadZipFile, OSError, EOFError, errors.CorruptFileError):
                    out[name] = "mismatch"
            return out


def _member_check(zf: zipfile.ZipFile, manifest: dict | None):
    """What the weights member's bytes are checked against: the manifest's xxh3, else the zip's CRC-32."""
    recorded = ((manifest or {}).get("hashes") or {}).get(WEIGHTS_H5)
    return recorded if str(recorded).startswith(storage.HASH_ALGORITHM + ":") else ("crc32", zf.getinfo(WEIGHTS_H5).CRC)


def _optimizer_from_config(config: dict) -> dict | None:
    compile_config = config.get("compile_config") or {}
    opt = compile_config.get("optimizer")
    if isinstance(opt, dict):
        return {"class": opt.get("class_name"), "learning_rate": (opt.get("config") or {}).get("learning_rate")}
    if isinstance(opt, str):
        return {"class": opt}
    return None


def _snake(class_name: str) -> str:
    # Keras names each layer's group after its class (keras.src.utils.naming.to_snake_case);
    # restated here because inspect must not import Keras.
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _config_layers(config: dict | None) -> list[dict]:
    inner = (config or {}).get("config")
    layers = inner.get("layers", []) if isinstance(inner, dict) else (inner or [])
    return [l for l in layers if isinstance(l, dict)]


def keras3_layer_table(layers_group, config: dict | None) -> list[dict]:
    """Layer rows of a Keras 3 weights layout, named as in the model config.

    Keras stores layer ``i`` under ``layers/<class in snake case>[_<n>]``, counting
    each class in the order of the model's layers, not under the layer's own name.
    """
    rows, used = [], {}
    for layer in _config_layers(config):
        cls = layer.get("class_name") or "?"
        key = _snake(cls)
        index = used.get(key, -1) + 1
        group = layers_group.get(key if index == 0 else f"{key}_{index}") if layers_group is not None else None
        if group is None and cls == "InputLayer":
            continue  # Sequential keeps its InputLayer out of the saved layers
        used[key] = index
        params = _hdf5.weights_summary(group)[0] if group is not None else None
        name = (layer.get("config") or {}).get("name")
        rows.append({"name": name, "class": cls, "output_shape": None, "params": params})
    if not rows and layers_group is not None:  # no config to go by: the groups as stored
        rows = [{"name": k, "class": None, "output_shape": None, "params": _hdf5.weights_summary(layers_group[k])[0]} for k in layers_group]
    return rows


def keras3_weights_overview(h5, config: dict | None) -> dict:
    """Layer table, parameter count, bytes and dtypes of a Keras 3 weights layout (optimizer excluded)."""
    params = nbytes = 0
    dtypes: dict[str, int] = {}
    for key in h5:
        group = h5[key]
        if key == "optimizer" or not isinstance(group, _hdf5.h5py.Group):
            continue
        p, b, d = _hdf5.weights_summary(group)
        params, nbytes = params + p, nbytes + b
        for k, v in d.items():
            dtypes[k] = dtypes.get(k, 0) + v
    table = keras3_layer_table(h5.get("layers"), config)
    return {"layers": table, "total_params": params, "weights_bytes": nbytes, "dtypes": dtypes}


def load_keras3_weights(model, source, path, *, by_name: bool, skip_mismatch: bool) -> None:
    """Load Keras 3's weights layout into ``model``, as kerasafe errors.

    ``source``: a :class:`DirectWeights` (read from offsets), or a path or BytesIO for h5py.
    """
    try:
        if isinstance(source, DirectWeights):
            source.fill(model, skip_mismatch=skip_mismatch, by_name=by_name)
            return
        store = _keras.saving_lib().H5IOStore(source, mode="r")
        try:
            if by_name:
                _keras_direct.load_layers_by_name(model, store, skip_mismatch=skip_mismatch)
            else:
                _keras_direct.load_state(model, store, skip_mismatch=skip_mismatch)
        finally:
            store.close()
    except ValueError as exc:
        raise errors.WeightsMismatchError(
            path, "weights that fit the model's variables", _first_line(exc), "load them into the model they were saved from, or pass skip_mismatch=True"
        ) from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().split("\n")[0][:240]
