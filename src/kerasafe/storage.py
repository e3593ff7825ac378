"""How bytes reach the disk: atomic commit, fsync, hashing, path checks.

Every format and (later) every checkpoint writes through here, so the rule
"nothing a user had on disk is lost or half-overwritten" is kept in one place:
a write goes to a temporary sibling, is flushed and fsynced, renamed over the
target, and the directory is fsynced so the rename itself survives a crash.

Example:
    >>> import pathlib, tempfile
    >>> from kerasafe import storage
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> with storage.atomic_file(target) as tmp:
    ...     _ = tmp.write_bytes(b"hello")
    >>> target.read_bytes()
    b'hello'
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import ctypes.util
import io
import os
import pathlib
import queue
import secrets
import shutil
import threading
from collections.abc import Iterator

import numpy as np
import xxhash

from . import errors

# xxh3-128 was measured at ~14.5 GiB/s on this machine against ~4-6 GiB/s for
# blake3 and ~1.5 GiB/s for sha256 (benchmarks/hash_choice.py). The hashes
# detect damage, not tampering, so the fastest sound hash wins.
HASH_ALGORITHM = "xxh3_128"
_CHUNK = 8 << 20

_TMP_MARK = ".kerasafe-tmp-"


def new_hasher():
    """A streaming hasher for :data:`HASH_ALGORITHM`."""
    return xxhash.xxh3_128()


def digest(hasher) -> str:
    """A hasher's result as recorded in manifests: ``"xxh3_128:<hex>"``."""
    return f"{HASH_ALGORITHM}:{hasher.hexdigest()}"


# Large arrays go to a pipelined writer in pieces of this size, so hashing one piece
# overlaps the writer thread's write of the one before.
WRITE_PIECE = 32 << 20


def pieces(array: np.ndarray):
    """The array's bytes (C order, no copy when already contiguous) as :data:`WRITE_PIECE` views."""
    flat = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    for start in range(0, len(flat), WRITE_PIECE):
        yield flat[start:start + WRITE_PIECE]


def hash_bytes(data) -> str:
    """Hash of a bytes-like object or of a NumPy array's bytes in C order."""
    if isinstance(data, np.ndarray | np.generic):
        data = np.ascontiguousarray(data)
    h = new_hasher()
    h.update(memoryview(data).cast("B"))
    return digest(h)


def hash_stream(stream, length: int | None = None) -> str:
    """Hash of what a binary stream yields (at most ``length`` bytes)."""
    h = new_hasher()
    remaining = length
    # One reused buffer: reading into it avoids allocating a new bytes object per chunk.
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    readinto = getattr(stream, "readinto", None)
    while remaining is None or remaining > 0:
        want = _CHUNK if remaining is None else min(_CHUNK, remaining)
        if readinto is not None:
            got = readinto(view[:want])
            chunk = view[:got] if got else b""
        else:
            chunk = stream.read(want)
        if not chunk:
            break
        h.update(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return digest(h)


_WRITEBACK_BYTES = 32 << 20


class HashingFileWriter(io.RawIOBase):
    """A write-only, front-to-back file that writes on a second thread and hashes what it writes.

    ``write`` hands the buffer to the writer thread and returns, so the caller's
    next piece of work (zipfile's CRC-32 of the next chunk, say) runs while the
    disk takes this one: the two costs overlap instead of adding up. Buffers must
    not change after they are written (kerasafe writes snapshot arrays and fresh
    bytes). It refuses to seek, so ``zipfile`` writes members front to back with
    data descriptors, and :attr:`hexdigest` is the hash of the whole file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "f")
        >>> with HashingFileWriter(path) as f:
        ...     _ = f.write(b"abc")
        >>> f.digest == hash_bytes(b"abc"), open(path, "rb").read()
        (True, b'abc')
    """

    def __init__(self, path, *, depth: int = 4):
        super().__init__()
        self._file = open(path, "wb", buffering=0)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)  # bounds what waits in memory
        self._hasher = new_hasher()
        self._position = 0
        self._written = self._flushed = 0  # writer thread: bytes written, bytes handed to write-back
        self._error: BaseException | None = None
        self.digest: str | None = None
        self._thread = threading.Thread(target=self._drain, name="kerasafe-file-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking items so the producer never blocks on a full queue
            try:
                view = memoryview(item).cast("B")
                while view:
                    done = self._file.write(view)
                    view, self._written = view[done:], self._written + done
                if self._written - self._flushed >= _WRITEBACK_BYTES:
                    start_writeback(self._file.fileno(), self._flushed, self._written - self._flushed)
                    self._flushed = self._written
            except BaseException as exc:  # raised on the caller's thread at the next write or close
                self._error = exc

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        if self._error is not None:
            raise self._error
        size = memoryview(data).nbytes
        self._hasher.update(data)  # here, in file order, so the writer thread only writes
        self._queue.put(data)
        self._position += size
        return size

    def close(self) -> None:
        if self.closed:
            return
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is None:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
            super().close()
        if self._error is not None:
            raise self._error
        self.digest = digest(self._hasher)


# --- checks on paths a user hands us ---------------------------------------------------------


def existing_file(path, expected: str) -> pathlib.Path:
    """``path`` as a Path, or a kerasafe error if it is missing, a directory or empty."""
    p = pathlib.Path(path)
    if not p.exists():
        raise errors.FileMissingError(p, expected, "no such file", "check the path")
    if p.is_dir():
        raise errors.WrongKindOfPathError(
            p, expected, "a directory", "pass the file inside it, or a model directory kerasafe wrote"
        )
    if p.stat().st_size == 0:
        raise errors.CorruptFileError(p, expected, "an empty file (0 bytes)", "save the model again")
    return p


def existing_path(path, expected: str) -> pathlib.Path:
    """Like :func:`existing_file`, but a directory is accepted too."""
    p = pathlib.Path(path)
    if p.is_dir():
        return p
    return existing_file(p, expected)


# --- durable, atomic writes ------------------------------------------------------------------


def fsync_file(path: os.PathLike | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: os.PathLike | str) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; nothing more we can do
        pass
    finally:
        os.close(fd)


def fsync_tree(root: pathlib.Path) -> None:
    """fsync every file and directory under ``root`` (used for directory formats)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def temporary_sibling(target: pathlib.Path) -> pathlib.Path:
    """A fresh hidden name beside ``target`` that says which process made it (for clean-up)."""
    return target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: pathlib.Path) -> None:
    """Delete leftovers of writes to ``target`` by processes that no longer run (killed saves)."""
    _remove_stale(target.parent if str(target.parent) else pathlib.Path("."), f".{target.name}{_TMP_MARK}")


def remove_stale_temporaries_in(directory: pathlib.Path) -> None:
    """Delete leftovers of killed writes to any name in ``directory``."""
    _remove_stale(pathlib.Path(directory), None)


def _remove_stale(parent: pathlib.Path, prefix: str | None) -> None:
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if prefix is not None and not entry.name.startswith(prefix):
            continue
        if _TMP_MARK not in entry.name or not entry.name.startswith("."):
            continue
        pid_text = entry.name.split(_TMP_MARK, 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()


def _prepare_target(target) -> pathlib.Path:
    target = pathlib.Path(target)
    parent = target.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    return target


@contextlib.contextmanager
def atomic_file(target) -> Iterator[pathlib.Path]:
    """Yield a temporary path for ``target``; on success it replaces ``target`` durably.

    The temporary file has ``target``'s own name, inside a private hidden directory
    beside it: writers that look at the suffix see the real one, and any helper files
    a writer makes (safetensors and Keras make their own) are removed with the
    directory, also after a crash (see :func:`remove_stale_temporaries`). If the body
    raises, ``target`` is untouched.
    """
    target = _prepare_target(target)
    if target.is_dir():
        raise errors.WrongKindOfPathError(
            target, "a file path to write", "an existing directory", "choose a file name, or remove the directory"
        )
    workdir = temporary_sibling(target)
    workdir.mkdir()
    tmp = workdir / target.name
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    fsync_dir(target.parent)


@functools.cache
def libc_function(name: str):
    """A libc function Python's os module does not bind (Linux), or None where there is none."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        return getattr(ctypes.CDLL(libc_name, use_errno=True), name)
    except (OSError, AttributeError):
        return None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of a file to disk now, without waiting.

    Otherwise written pages sit in the page cache until the final fsync, and the disk
    idles while the writer is busy computing checksums. Linux sync_file_range
    (SYNC_FILE_RANGE_WRITE) through ctypes, as os has no binding; elsewhere a no-op.
    """
    function = libc_function("sync_file_range")
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        function(fd, offset, length, 2)


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE).

    Python's os module has no binding for it, hence ctypes. Returns False where the
    call is unavailable, and the caller falls back to two renames.
    """
    renameat2 = libc_function("renameat2")
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


@contextlib.contextmanager
def atomic_directory(target) -> Iterator[pathlib.Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    An existing ``target`` directory is swapped out in one atomic step where the
    kernel allows it, and only deleted once the new one is in place.
    """
    target = _prepare_target(target)
    if target.exists() and not target.is_dir():
        raise errors.WrongKindOfPathError(
            target, "a directory path to write", "an existing file", "choose another name, or remove the file"
        )
    tmp = temporary_sibling(target)
    try:
        yield tmp
        move_directory_into_place(tmp, target)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_directory_into_place(tmp: pathlib.Path, target: pathlib.Path) -> None:
    """Make the finished directory ``tmp`` appear as ``target`` in one step, durably.

    An existing ``target`` is swapped out atomically where the kernel allows it, and only
    deleted once the new one is in place.
    """
    fsync_tree(tmp)
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # tmp now holds the old directory
    else:
        old = temporary_sibling(target)
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)
