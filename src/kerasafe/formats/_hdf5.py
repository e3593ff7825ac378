"""HDF5 helpers shared by the HDF5 formats (full model, Keras 3 and Keras 2 weights)."""

from __future__ import annotations

import contextlib
import pathlib

import h5py
import numpy as np

from .. import errors, storage
from .. import manifest as manifest_mod
from . import guard

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(head: bytes) -> bool:
    # A user block can push the signature to 512, 1024, ... ; Keras never writes one,
    # so the common case is decided from the first bytes without opening the file.
    return head.startswith(HDF5_MAGIC)


@contextlib.contextmanager
def open_h5(path: pathlib.Path, mode: str = "r", *, expected: str = "an HDF5 file"):
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise errors.CorruptFileError(
            path, expected, f"a file HDF5 cannot open ({_short(exc)})", "the file is truncated or damaged; save it again"
        ) from None
    try:
        yield f
    finally:
        f.close()


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:160]


def attr_text(obj, name: str) -> str | None:
    value = obj.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return str(value)


def attr_json(obj, name: str, path) -> dict | None:
    text = attr_text(obj, name)
    if text is None:
        return None
    return guard.json_value(text, path, f"HDF5 attribute '{name}'")


def read_manifest(f: h5py.File, path) -> dict | None:
    text = attr_text(f, manifest_mod.MANIFEST_KEY)
    return None if text is None else manifest_mod.loads(text, path)


def write_manifest(f: h5py.File, manifest: dict) -> None:
    f.attrs[manifest_mod.MANIFEST_KEY] = manifest_mod.dumps(manifest)


def reject_external_links(f: h5py.File, path) -> dict:
    """External links and external dataset storage make HDF5 read other files; refuse both,
    and datasets declaring more bytes than the file holds (formats._direct.layout's checks).
    Returns the layout (every dataset's offset), for reads that follow."""
    from . import _direct

    return _direct.layout(f, f.id.get_filesize(), path)


def datasets(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    """Every dataset under ``group`` in a stable order (HDF5 keeps names sorted)."""
    out: list[tuple[str, h5py.Dataset]] = []
    group.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def state_hashes(entries) -> dict[str, str]:
    """Each dataset's hash (by its path in the file) of the file :func:`write_state` makes, from the arrays in memory."""
    return {(f"{e.path}/vars/{name}" if e.path else f"vars/{name}"): storage.hash_bytes(array)
            for e in entries for name, array in e.arrays}


def verify_hashes(path, recorded: dict[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    with open_h5(path) as f:
        reject_external_links(f, path)  # read nothing load would refuse: links, other files, declared sizes
        for name, expected in recorded.items():
            obj = f.get(name)
            if not isinstance(obj, h5py.Dataset):
                result[name] = "missing"
                continue
            actual = storage.hash_bytes(obj[()])
            result[name] = "ok" if actual == expected else "mismatch"
    return result


def weights_summary(group: h5py.Group) -> tuple[int, int, dict[str, int]]:
    """(parameter count, bytes, dtype counts) of every dataset under ``group``."""
    params = nbytes = 0
    dtypes: dict[str, int] = {}
    for _name, ds in datasets(group):
        n = int(np.prod(ds.shape)) if ds.shape else 1
        params += n
        nbytes += n * ds.dtype.itemsize
        dtypes[str(ds.dtype)] = dtypes.get(str(ds.dtype), 0) + 1
    return params, nbytes, dtypes


def legacy_layer_table(weights_group: h5py.Group) -> list[dict]:
    """Layer table of a Keras 2 style weights group (``layer_names`` + per-layer ``weight_names``)."""
    from ..legacy.weights import name_list

    rows = []
    for name in name_list(weights_group, "layer_names"):
        g = weights_group.get(name)
        params = 0
        if isinstance(g, h5py.Group):
            params = sum(int(np.prod(ds.shape)) if ds.shape else 1 for _n, ds in datasets(g))
        rows.append({"name": name, "class": None, "output_shape": None, "params": params})
    return rows


def config_layer_classes(config: dict | None) -> dict[str, str]:
    """``{layer name: class name}`` from a model config of any Keras era."""
    if not config:
        return {}
    inner = config.get("config", {})
    layers = inner.get("layers", []) if isinstance(inner, dict) else inner
    out = {}
    for layer in layers or []:
        if isinstance(layer, dict):
            cfg = layer.get("config", {}) or {}
            name = cfg.get("name", layer.get("name"))
            if name:
                out[name] = layer.get("class_name")
    return out


# Arrays below this size are written into the skeleton by HDF5 itself: placing them one
# by one would cost more than the bytes.
STREAM_MIN_BYTES = 4096


def _streamable(array: np.ndarray) -> bool:
    # Only types whose bytes in the file are their bytes in memory: native-order numbers
    # and bfloat16 (stored as 2-byte opaque values).
    native = array.dtype.byteorder in ("=", "|") or array.dtype.isnative
    return array.nbytes >= STREAM_MIN_BYTES and native and (array.dtype.kind in "fiu" or array.dtype.name == "bfloat16")


def place_dataset(group, name: str, array: np.ndarray, placed: list | None, *, opaque_bfloat16: bool = True):
    """Create dataset ``name`` in ``group`` for ``array``.

    With ``placed`` (a list), a large array gets its space allocated but not written,
    and ``(file offset, array)`` is appended for :func:`stream_h5` to fill; small ones
    (and all without ``placed``) are written by HDF5. ``opaque_bfloat16=False`` leaves
    bfloat16 to h5py, as Keras's legacy writer does.
    """
    streamable = _streamable(array) and (opaque_bfloat16 or array.dtype.name != "bfloat16")
    if placed is not None and streamable:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # the offset is known now
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # and HDF5 never writes there
        dataset = group.create_dataset(name, shape=array.shape, dtype=array.dtype, dcpl=dcpl)
        placed.append((dataset.id.get_offset(), array))
        return dataset
    return group.create_dataset(name, data=array)


def write_state(h5, entries, *, placed: list | None = None) -> None:
    """Write captured state (``_keras.capture_state``) in the layout Keras's H5IOStore writes.

    Each entry becomes ``<path>/vars`` with its attributes and one dataset per
    array; bfloat16 arrays carry a ``dtype`` attribute, as Keras marks them.
    ``placed``: see :func:`place_dataset`.
    """
    for entry in entries:
        group = h5.create_group("vars") if not entry.path else h5.create_group(entry.path).create_group("vars")
        for key, value in entry.attrs.items():
            group.attrs[key] = value
        for name, array in entry.arrays:
            dataset = place_dataset(group, name, array, placed)
            if array.dtype.name == "bfloat16":
                dataset.attrs["dtype"] = "bfloat16"


def stream_state(out, entries, scratch: pathlib.Path) -> str:
    """Write captured state as one HDF5 file (Keras 3's weights layout) to ``out``; return its hash."""
    return stream_h5(out, scratch, lambda h5, placed: write_state(h5, entries, placed=placed))


def stream_h5(out, scratch: pathlib.Path, build) -> str:
    """Write an HDF5 file to the sequential stream ``out`` (a file or a zip member); return its hash.

    HDF5 cannot write to a stream that does not seek (a zip member), and going
    through a temporary file copies every byte twice. So HDF5 writes only a
    skeleton to ``scratch``: ``build(h5, placed)`` makes the groups, attributes
    and small datasets, and reserves space for the large ones with
    :func:`place_dataset`, left as holes. The file is then streamed in offset order:
    skeleton bytes where HDF5 wrote, array bytes where it reserved.
    """
    placed: list = []
    try:
        with h5py.File(scratch, "w") as h5:
            build(h5, placed)
        size = scratch.stat().st_size
        placed.sort(key=lambda p: p[0])
        hasher = storage.new_hasher()

        def emit(data) -> None:
            out.write(data)
            hasher.update(data)

        with open(scratch, "rb") as skeleton:
            position = 0
            for offset, array in placed:
                skeleton.seek(position)
                emit(skeleton.read(offset - position))
                for piece in storage.pieces(array):
                    emit(piece)
                position = offset + array.nbytes
            skeleton.seek(position)
            emit(skeleton.read(size - position))
        return storage.digest(hasher)
    finally:
        scratch.unlink(missing_ok=True)


def write_h5_file(target, build) -> str:
    """:func:`stream_h5` into the file ``target`` (written whole, fsynced; the caller commits it)."""
    target = pathlib.Path(target)
    with storage.HashingFileWriter(target) as out:
        return stream_h5(out, target.with_name(target.name + ".skeleton.h5"), build)
