"""How checkpoints sit in a directory: atomic commit, commit marker, listing, lock, clean-up.

Layout::

    DIR/.lock                      held (flock) by the one process writing DIR
    DIR/ckpt-00000012/             a committed checkpoint (step 12)
        model.keras                the model with its optimizer state (hashed members), and in its
                                   manifest the progress: epoch, batch, history, callback and random state
        (model.weights.h5          instead, with Checkpoint(save_weights_only=True): weights and optimizer
                                   state, the architecture and the progress in its manifest)
        COMMIT                     written last: step and the hash of every other file
    DIR/.ckpt-00000013.kerasafe-tmp-PID-XXXX/   a write in progress (or killed: removed later)

A checkpoint counts only once its directory has been renamed into place with a
``COMMIT`` marker inside; everything is fsynced before the rename.

Example:
    >>> import tempfile, pathlib
    >>> from kerasafe.checkpoint import store
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = store.commit(d, 5, {"state.json": b"{}"})
    >>> [c.step for c in store.committed(d)]
    [5]
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import re
import shutil
import warnings

from .. import errors, storage

MARKER = "COMMIT"
_NAME = re.compile(r"^ckpt-(\d{8})$")


@dataclasses.dataclass(frozen=True)
class Committed:
    step: int
    path: pathlib.Path
    marker: dict


def name_for(step: int) -> str:
    return f"ckpt-{step:08d}"


def commit(directory, step: int, files: dict[str, bytes | pathlib.Path], *, extra: dict | None = None,
           hashes: dict[str, str] | None = None) -> pathlib.Path:
    """Write ``files`` as checkpoint ``step`` atomically; return its directory.

    Values are bytes to write, or paths of finished files to move in. The marker
    records the hash of each file (taken from ``hashes`` where the writer already
    hashed the bytes on their way out, else read back) and ``extra`` (e.g. the
    monitored value).
    """
    known = dict(hashes or {})
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name_for(step)
    with storage.atomic_directory(target) as tmp:
        tmp.mkdir()
        recorded = {}
        for name, content in files.items():
            dest = tmp / name
            if isinstance(content, bytes | bytearray):
                dest.write_bytes(content)
            else:
                os.replace(content, dest)
            if name in known:
                recorded[name] = known[name]
            else:
                with open(dest, "rb") as f:
                    recorded[name] = storage.hash_stream(f)
        marker = {"step": step, "files": recorded, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), **(extra or {})}
        (tmp / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return target


def committed(directory) -> list[Committed]:
    """Committed checkpoints in ``directory``, oldest step first (uncommitted ones never appear)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    out = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        marker_path = entry / MARKER
        if not (match and entry.is_dir() and marker_path.is_file()):
            continue
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append(Committed(int(match.group(1)), entry, marker))
    return sorted(out, key=lambda c: c.step)


def batches_done(found: list[Committed]) -> int:
    """Batches trained under the checkpoints of a directory (``committed``'s list): the newest one's count."""
    return found[-1].marker.get("global_batch", 0) if found else 0


# The file a checkpoint holds: a whole model, or (Checkpoint(save_weights_only=True)) its weights.
MODEL_FILES = ("model.keras", "model.weights.h5")


def model_file(checkpoint: Committed) -> pathlib.Path:
    """The model or weights file of a committed checkpoint (the one its marker lists); a sharded
    checkpoint is its directory."""
    if checkpoint.marker.get("sharded"):
        return checkpoint.path
    files = checkpoint.marker.get("files", {})
    return checkpoint.path / next((name for name in MODEL_FILES if name in files), MODEL_FILES[0])


def read_manifest(checkpoint: Committed) -> dict:
    """The kerasafe manifest of a checkpoint's model (labels, metadata, progress), read without Keras."""
    from ..formats import _hdf5
    from ..formats.keras_zip import open_archive, read_manifest as read_member

    path = model_file(checkpoint)
    if checkpoint.marker.get("sharded"):
        from ..formats import sharded

        layout = sharded.read_layout(path)
        return {k: v for k, v in layout.items() if k not in ("format", "architecture", "layout")}
    if path.suffix == ".h5":
        with _hdf5.open_h5(path, expected="a checkpoint's weights file") as f:
            return _hdf5.read_manifest(f, path) or {}
    with open_archive(path) as zf:
        return read_member(zf, path) or {}


def read_state(checkpoint: Committed) -> dict:
    """The progress a checkpoint recorded (epoch, batch, history, random state), read without Keras."""
    return read_manifest(checkpoint)["checkpoint"]


def intact(checkpoint: Committed) -> bool:
    """True when every file still has the hash its marker recorded."""
    for name, expected in checkpoint.marker.get("files", {}).items():
        path = checkpoint.path / name
        try:
            with open(path, "rb") as f:
                if storage.hash_stream(f) != expected:
                    return False
        except OSError:
            return False
    return True


def delete(checkpoint: Committed) -> None:
    """Remove a committed checkpoint: the marker first, so a crash midway leaves it uncommitted."""
    (checkpoint.path / MARKER).unlink(missing_ok=True)
    storage.fsync_dir(checkpoint.path)
    shutil.rmtree(checkpoint.path, ignore_errors=True)


def clean(directory) -> None:
    """Remove what killed writers left: temporaries of dead processes, marker-less checkpoints and
    the partial directories of sharded checkpoints never committed (called before any process writes)."""
    from .sharded_commit import is_partial

    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return
    storage.remove_stale_temporaries_in(directory)
    for entry in directory.iterdir():
        if _NAME.match(entry.name) and entry.is_dir() and not (entry / MARKER).exists() or is_partial(entry):
            shutil.rmtree(entry, ignore_errors=True)


class DirectoryLock:
    """An exclusive lock on a checkpoint directory, so two runs never interleave checkpoints."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self._fd = None

    def acquire(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise errors.CheckpointLockedError(
                self.directory, "a checkpoint directory no other run is writing", f"it locked by process {holder}",
                "wait for that run to finish, or give this run its own directory",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def candidates(found: list[Committed], which, name) -> list[Committed]:
    """The checkpoints ``which`` ("latest", "best" or a step) can mean, best first; ``name`` for errors."""
    if isinstance(which, int):
        chosen = [c for c in found if c.step == which]
        if not chosen:
            raise errors.FileMissingError(name, f"checkpoint step {which}", f"steps {[c.step for c in found]}", "pass one of those")
        return chosen
    if which == "best":
        scored = [c for c in found if isinstance(c.marker.get("value"), int | float)]
        if not scored:
            raise errors.KerasafeError(name, "checkpoints that recorded a monitored value", "none", "use which='latest'")
        sign = -1.0 if scored[-1].marker.get("mode") == "max" else 1.0
        return sorted(scored, key=lambda c: (sign * c.marker["value"], -c.step))
    if which == "latest":
        return list(reversed(found))
    raise errors.KerasafeError(name, "which='latest', 'best' or a step number", repr(which), "pass one of those")


def newest_intact(directory, which="latest") -> Committed:
    """The checkpoint ``which`` names ("latest", "best" or a step), falling back past damaged ones."""
    found = committed(directory)
    if not found:
        raise errors.FileMissingError(directory, "a directory holding committed checkpoints", "none", "train with ks.Checkpoint(directory) first")
    for candidate in candidates(found, which, directory):
        if intact(candidate):
            return candidate
        if isinstance(which, int):
            raise errors.HashMismatchError(candidate.path, "files matching their recorded hashes", "a damaged file", "restore another step")
        warnings.warn(f"{candidate.path}: damaged (hash mismatch); using the previous checkpoint", stacklevel=2)
    raise errors.HashMismatchError(directory, "at least one intact checkpoint", "only damaged ones", "restore the directory from a backup")
