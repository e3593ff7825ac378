"""Reading HDF5 weights straight from their byte offsets, checked and hashed as they pass.

h5py reads a dataset through HDF5's own I/O layer, and from inside a zip member
through Python's zipfile, which recomputes the CRC-32 on every seek (seconds per
GiB). But Keras writes each weight as a contiguous, unfiltered dataset: its bytes
sit at one offset in the file. Here h5py reads only the headers (through
:class:`FileWindow`, a plain window on the file), and each array's bytes are read
with one ``os.preadv`` into a preallocated NumPy array. No library reads an HDF5
dataset this way, hence this module.

Every offset and size is checked against the window's length before anything is
allocated or read, and the window's bytes are hashed in file order as they are read
(the gaps between datasets too), so damage is found without a second pass.

Example:
    >>> import h5py, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("layers/d/vars/0", data=np.arange(6, dtype="float32").reshape(2, 3))
    >>> with open(path, "rb") as raw, FileWindow(raw.fileno(), 0, os.path.getsize(path)) as window:
    ...     with h5py.File(window, "r") as h5:
    ...         refs = layout(h5, window.length, path)
    ...         reader = SequentialReader(window, path)
    ...         reader.read(refs["layers/d/vars/0"], h5).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import io
import math
import os
import zlib

import h5py
import numpy as np

from .. import errors, storage


class FileWindow(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes at ``start`` of an open file (no copy, no CRC)."""

    def __init__(self, fd: int, start: int, length: int):
        super().__init__()
        self.fd, self.start, self.length, self._pos = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self.length - self._pos))
        got = os.preadv(self.fd, [view[:want]], self.start + self._pos) if want else 0
        self._pos += got
        return got


def pread_into(fd: int, view: memoryview, offset: int, path, what: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (preadv may return less than asked; a short file is CorruptFileError)."""
    done = 0
    while done < len(view):
        try:
            got = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise errors.CorruptFileError(path, what, f"an unreadable file ({exc})", "the file is damaged; save it again") from None
        if got <= 0:
            raise errors.CorruptFileError(path, f"{what} ({len(view):,} bytes)", "the file ends inside it",
                                          "the file is truncated; save the model again")
        done += got


# Hashing runs at about twice the speed of reading from the page cache here, and both
# release the GIL: a large array is read in pieces on a helper thread while the caller
# hashes the piece before, so checking costs little on top of reading.
_PIECE = 16 << 20
_AHEAD = 2  # pieces in flight: two readers keep the page-cache copy going on both cores


@functools.cache
def _read_ahead():
    return concurrent.futures.ThreadPoolExecutor(max_workers=_AHEAD, thread_name_prefix="kerasafe-read")


def pread_hashed(fd: int, view: memoryview, offset: int, path, what: str, update=None) -> None:
    """:func:`pread_into`, passing each piece to ``update`` (a hash's) while the next are read."""
    if update is None or len(view) <= 2 * _PIECE:
        pread_into(fd, view, offset, path, what)
        if update is not None:
            update(view)
        return
    starts = list(range(0, len(view), _PIECE))
    pending = collections.deque()
    for start in starts[:_AHEAD]:
        pending.append(_read_ahead().submit(pread_into, fd, view[start:start + _PIECE], offset + start, path, what))
    for i, start in enumerate(starts):
        pending.popleft().result()
        if i + _AHEAD < len(starts):
            following = starts[i + _AHEAD]
            pending.append(_read_ahead().submit(pread_into, fd, view[following:following + _PIECE], offset + following, path, what))
        update(view[start:start + _PIECE])


@dataclasses.dataclass(frozen=True)
class DatasetRef:
    name: str
    shape: tuple
    dtype: np.dtype
    offset: int | None  # within the window; None: read through h5py (chunked, compact, filtered, ...)
    nbytes: int


# Nested models nest Keras's groups a few levels each; no real file comes near this.
MAX_DEPTH = 64


def layout(h5: h5py.File, length: int, path, groups: set | None = None) -> dict[str, DatasetRef]:
    """Every dataset of ``h5`` with where its bytes are, each checked to lie inside its ``length`` bytes.

    One walk over the file's links does every check a load needs: links and storage
    outside the file (UnsafeContentError), declared sizes larger than the file (plain
    data cannot be; compressed data not 1000x larger) and offsets past its end
    (CorruptFileError). Walking twice costs seconds on a model of 10,000 weights.
    ``groups``, when given, receives every group's path.
    """
    refs: dict[str, DatasetRef] = {}

    # h5py's low-level API: its high-level objects (a Dataset, whose .chunks, .compression
    # and .external each fetch the creation property list again) cost 0.5 ms a dataset,
    # a second on a model of 2,000 weights.
    def check(raw_name: bytes, info):
        name = raw_name.decode("utf-8", "surrogateescape")
        if raw_name.count(b"/") >= MAX_DEPTH:  # HDF5 walks each level again for every object below it
            return errors.CorruptFileError(path, f"groups nested at most {MAX_DEPTH} deep (Keras nests a handful)",
                                          f"'{name[:60]}...' deeper", "the file is damaged or made to exhaust time; do not load it")
        if info.type == h5py.h5l.TYPE_EXTERNAL:
            filename, target = (v.decode("utf-8", "surrogateescape") for v in h5.id.links.get_val(raw_name))
            return errors.UnsafeContentError(path, "an HDF5 file whose data is all inside it",
                                            f"external link '{name}' -> {filename}:{target}", "remove the link, or copy the data into the file")
        if info.type != h5py.h5l.TYPE_HARD:
            return  # a soft link names an object inside the file, visited under its own name
        obj = h5py.h5o.open(h5.id, raw_name)
        if isinstance(obj, h5py.h5g.GroupID):
            if groups is not None:
                groups.add(name)
            return
        if not isinstance(obj, h5py.h5d.DatasetID):
            return
        plist = obj.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL:  # reads other files, or this one again (libhdf5 recurses)
            return errors.UnsafeContentError(path, "an HDF5 file whose data is all stored in it",
                                            f"virtual dataset '{name}' assembled from other datasets", "do not load this file")
        if plist.get_external_count():
            return errors.UnsafeContentError(path, "an HDF5 file whose data is all inside it",
                                            f"dataset '{name}' stored in external file {plist.get_external(0)[0].decode(errors='replace')!r}",
                                            "copy the data into the file")
        shape, dtype = tuple(obj.shape), obj.dtype
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape must not wrap around
        filtered = plist.get_nfilters() > 0
        offset = None
        plain = dtype.kind in "biufc" and plist.get_layout() != h5py.h5d.CHUNKED and not filtered and not h5py.h5a.exists(obj, b"dtype")
        if plain and nbytes:
            offset = obj.get_offset()
        # A header can declare any shape; reading it would allocate that much.
        if nbytes > length * (1000 if filtered else 1) + 4096:
            return errors.CorruptFileError(path, "datasets that fit inside the file",
                                          f"dataset '{name}' declaring shape {shape} ({nbytes:,} bytes) in a file of {length:,} bytes",
                                          "the file is damaged or made to exhaust memory; do not load it")
        if offset is not None and (offset < 0 or offset + nbytes > length):
            return errors.CorruptFileError(path, f"dataset '{name}' inside the file",
                                          f"its {nbytes:,} bytes at offset {offset:,} past the end ({length:,} bytes)",
                                          "the file is truncated or damaged; save the model again")
        refs[name] = DatasetRef(name, shape, dtype, offset, nbytes)

    problems: list = []

    def visit(name, info):
        # An exception raised inside h5py's visit callback comes out mangled; stop and raise after.
        problem = check(name, info)
        if problem is not None:
            problems.append(problem)
            return True
        return None

    h5.id.links.visit(visit, info=True)
    if problems:
        raise problems[0]
    return refs


# XLA's CPU client uses a host buffer in place, without copying it, when the buffer is
# aligned to this many bytes; NumPy's allocator gives only 16.
ALIGNMENT = 64


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised array whose data starts on an :data:`ALIGNMENT`-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class FreedMemoryReturn:
    """Hands memory the C heap holds free back to the OS, once per ``budget`` bytes about to be read.

    Loading into a model that already has weights replaces each variable's array, and
    the old one is freed; but glibc's malloc keeps large freed blocks for reuse (its mmap
    threshold rises after the first such free), so the process grew by 65-99% of the
    model while loading 16 weights of 4 MiB into a ready model. ``malloc_trim`` (glibc,
    through ctypes: Python binds no allocator control) returns them; it takes about a
    millisecond, hence once per 1/64 of the file rather than per array. Elsewhere a no-op.

    Example:
        >>> freed = FreedMemoryReturn(1 << 30)
        >>> freed.before(4 << 20)
    """

    def __init__(self, total: int):
        self.budget, self._pending = max(total // 64, 1 << 20), 0

    def before(self, nbytes: int) -> None:
        self._pending += nbytes
        if self._pending >= self.budget:
            self._pending = 0
            trim = storage.libc_function("malloc_trim")
            if trim is not None:
                trim(0)


class SequentialReader:
    """Reads datasets at their offsets and hashes the window's bytes in order as it goes.

    ``expected``: ``"xxh3_128:<hex>"`` (kerasafe's manifest: the whole window),
    ``("crc32", value)`` (the zip's own check), ``{dataset name: "xxh3_128:<hex>"}``
    (a ``.weights.h5``'s manifest: each array checked as it is read), or None to check
    nothing. Reads that arrive out of file order are still served; :meth:`finish` then
    hashes the whole window in one more pass. Arrays come back 64-byte aligned
    (:func:`aligned_empty`), so a backend can take them without a copy.
    """

    def __init__(self, window: FileWindow, path, expected=None):
        self.window, self.path = window, path
        self._per_dataset = expected if isinstance(expected, dict) else None
        self.expected = None if isinstance(expected, dict) else expected
        self._crc = isinstance(expected, tuple)
        self.damage: errors.CorruptFileError | None = None
        self._freed = FreedMemoryReturn(window.length)
        self._restart()

    def _restart(self) -> None:
        """Hash from the window's first byte again."""
        self._hasher = None if self._crc else storage.new_hasher()
        self._crc_value = 0
        self._pos = 0
        self._in_order = True

    def _hash(self, data) -> None:
        if self._crc:
            self._crc_value = zlib.crc32(data, self._crc_value)
        else:
            self._hasher.update(data)

    def _hash_span(self, start: int, end: int) -> None:
        buffer = bytearray(min(storage._CHUNK, max(0, end - start)))
        while start < end:
            view = memoryview(buffer)[: min(len(buffer), end - start)]
            got = os.preadv(self.window.fd, [view], self.window.start + start)
            if got <= 0:
                raise errors.CorruptFileError(self.path, f"{self.window.length:,} bytes of weights", f"the file ends at {start:,}",
                                              "the file is truncated; save the model again")
            self._hash(view[:got])
            start += got

    def read(self, ref: DatasetRef, h5: h5py.File) -> np.ndarray:
        recorded = (self._per_dataset or {}).get(ref.name)
        hasher = storage.new_hasher() if recorded is not None else None
        array = self._read(ref, h5, hasher)
        if recorded is not None and storage.digest(hasher) != recorded:
            # Kept as well as raised: Keras's loader turns an error inside a layer into "could not be loaded".
            self.damage = errors.CorruptFileError(self.path, f"dataset '{ref.name}' with the bytes that were written",
                                                  "a different hash (damaged bytes)", "the file is corrupt; restore it from a copy or save the model again")
            raise self.damage
        return array

    def _read(self, ref: DatasetRef, h5: h5py.File, hasher) -> np.ndarray:
        if ref.offset is None:
            value = h5[ref.name][()]
            value = value if isinstance(value, np.ndarray) else np.asarray(value)
            if hasher is not None:
                hasher.update(memoryview(np.ascontiguousarray(value)).cast("B"))
            return value
        self._freed.before(ref.nbytes)
        array = aligned_empty(ref.shape, ref.dtype)
        view = memoryview(array).cast("B") if array.ndim else memoryview(array.reshape(1)).cast("B")
        if self.expected is not None and self._in_order and ref.offset >= self._pos:
            self._hash_span(self._pos, ref.offset)
        elif ref.offset < self._pos:
            self._in_order = False
        whole = self.expected is not None and self._in_order  # the window's hash (then no per-dataset one)
        update = self._hash if whole else (hasher.update if hasher is not None else None)
        pread_hashed(self.window.fd, view, self.window.start + ref.offset, self.path, f"dataset '{ref.name}'", update)
        if whole:
            self._pos = ref.offset + ref.nbytes
        return array

    def finish(self) -> None:
        """Hash what was not read and compare; CorruptFileError when the bytes are not what was written."""
        if self.expected is None:
            return
        if not self._in_order:
            self._restart()
        self._hash_span(self._pos, self.window.length)
        if self._crc:
            ok = self._crc_value == self.expected[1]
        else:
            ok = storage.digest(self._hasher) == self.expected
        if not ok:
            raise errors.CorruptFileError(self.path, "weights whose bytes match what was written", "a different hash (damaged bytes)",
                                          "the file is corrupt; restore it from a copy or save the model again")
