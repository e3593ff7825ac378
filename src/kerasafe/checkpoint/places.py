"""Where a run's checkpoints live: a local directory, or a prefix on an object store (an fsspec URL).

Both answer the same questions (which checkpoints are committed, fetch one to read,
publish one just written, delete one, clean up after killed writers), so the callback,
``ks.restore`` and ``ks.fit`` do not care which.

On an object store there is no rename, so the commit is the order of the uploads: every
file of a checkpoint first (each one PUT or one multipart upload, visible only when
complete), its ``COMMIT`` marker last. A prefix without a marker is a killed upload:
invisible, and removed (with the multipart uploads a killed process left open under the
URL) when the next run starts. Deletion removes ``COMMIT`` first. Checkpoints are written
to a local staging directory through the usual local commit and uploaded by the writer
thread, so training never waits for the network; under several processes each uploads its
own part and process 0 the ``COMMIT`` once every part is there
(:func:`kerasafe.checkpoint.sharded_commit.write_to_store`). There is no lock on a store:
give each run its own URL.

Example:
    >>> from kerasafe.checkpoint import places
    >>> place = places.at("memory://runs/a")
    >>> place.committed()
    []
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import tempfile
import warnings

from .. import errors, remote, storage
from . import store


def at(directory, storage_options: dict | None = None):
    """The place for ``directory``: :class:`RemoteCheckpoints` for a URL, else :class:`LocalCheckpoints`."""
    directory = remote.local_path(directory) if isinstance(directory, str) else directory
    if remote.is_url(directory):
        return RemoteCheckpoints(directory, storage_options)
    return LocalCheckpoints(directory)


class LocalCheckpoints:
    is_remote = False

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.name = str(directory)

    def committed(self) -> list[store.Committed]:
        return store.committed(self.directory)

    def delete(self, checkpoint: store.Committed) -> None:
        store.delete(checkpoint)

    def clean(self) -> None:
        store.clean(self.directory)

    def publish(self, local: pathlib.Path, step: int) -> None:
        """Nothing to do: the local commit already made it visible here."""

    @contextlib.contextmanager
    def fetched(self, which="latest"):
        """The checkpoint ``which`` names, as a local :class:`store.Committed` (here: itself)."""
        yield store.newest_intact(self.directory, which)


class RemoteCheckpoints:
    is_remote = True

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url.rstrip("/")
        self.name = self.url
        self.fs = remote.filesystem(self.url, storage_options)

    def _key(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def _call(self, action: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except errors.KerasafeError:
            raise
        except Exception as exc:
            raise remote._store_error(self.url, action, exc) from exc

    def _names(self) -> list[str]:
        # Other processes write here: a listing fsspec cached earlier may be stale.
        self.fs.invalidate_cache(self.url)
        try:
            entries = self.fs.ls(self.url, detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise remote._store_error(self.url, "list checkpoints", exc) from exc
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def committed(self) -> list[store.Committed]:
        out = []
        for name in self._names():
            match = store._NAME.match(name)
            if not match:
                continue
            try:
                marker = json.loads(self.fs.cat_file(self._key(name, store.MARKER)))
            except FileNotFoundError:
                continue  # no marker: not committed
            except (ValueError, OSError):
                continue
            out.append(store.Committed(int(match.group(1)), self._key(name), marker))  # path: the URL of its prefix
        return sorted(out, key=lambda c: c.step)

    def _remove(self, prefix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{prefix}/{store.MARKER}")  # invisible first
        with contextlib.suppress(FileNotFoundError):
            self._call("delete a checkpoint", self.fs.rm, prefix, recursive=True)

    def delete(self, checkpoint: store.Committed) -> None:
        self._remove(str(checkpoint.path))

    def clean(self) -> None:
        committed = {store.name_for(c.step) for c in self.committed()}
        for name in self._names():
            if store._NAME.match(name) and name not in committed:
                self._remove(self._key(name))
        self._call("abort unfinished uploads", remote.abort_stale_uploads, self.fs, self.url, under=True)

    def prefix(self, step: int) -> str:
        return self._key(store.name_for(step))

    def put(self, local: pathlib.Path, key: str) -> None:
        """Upload one finished file as the object ``key`` (visible only whole)."""
        self._call("upload a checkpoint", remote.put, self.fs, local, key)

    def exists(self, key: str) -> bool:
        self.fs.invalidate_cache(key.rsplit("/", 1)[0])  # written by another process
        return bool(self._call("look for a checkpoint's part", self.fs.exists, key))

    def read(self, key: str) -> bytes:
        return self._call("read a checkpoint's part", self.fs.cat_file, key)

    def publish(self, local: pathlib.Path, step: int) -> None:
        """Upload a locally committed checkpoint: its files, then its COMMIT marker."""
        prefix = self.prefix(step)
        if self._call("look for a checkpoint", self.fs.exists, prefix):
            self._remove(prefix)  # an uncommitted leftover, or a step written again: invisible before it changes
        files = sorted(p for p in pathlib.Path(local).iterdir() if p.name != store.MARKER)
        for path in files:
            self.put(path, f"{prefix}/{path.name}")
        self.put(pathlib.Path(local) / store.MARKER, f"{prefix}/{store.MARKER}")

    @contextlib.contextmanager
    def fetched(self, which="latest"):
        """Download the checkpoint ``which`` names (falling back past damaged ones for "latest"/"best")
        and yield it as a local :class:`store.Committed`; the copy is removed afterwards."""
        found = self.committed()
        if not found:
            raise errors.FileMissingError(self.url, "a prefix holding committed checkpoints", "none",
                                          "train with ks.Checkpoint(url) first")
        scratch = pathlib.Path(tempfile.gettempdir()) / "kerasafe-remote"
        storage.remove_stale_temporaries(scratch)
        local_root = storage.temporary_sibling(scratch)
        local_root.mkdir(mode=0o700)
        try:
            for candidate in store.candidates(found, which, self.url):
                local = local_root / store.name_for(candidate.step)
                self._call("download a checkpoint", remote.get, self.fs, str(candidate.path), local, recursive=True)
                copy = store.Committed(candidate.step, local, candidate.marker)
                if store.intact(copy):
                    try:
                        yield copy
                    except errors.KerasafeError as exc:  # name the checkpoint on the store, not the copy
                        raise exc.naming(local, str(candidate.path)) from None
                    return
                if isinstance(which, int):
                    raise errors.HashMismatchError(candidate.path, "files matching their recorded hashes", "a damaged file",
                                                   "restore another step")
                warnings.warn(f"{candidate.path}: damaged (hash mismatch); using the previous checkpoint", stacklevel=3)
                shutil.rmtree(local, ignore_errors=True)
            raise errors.HashMismatchError(self.url, "at least one intact checkpoint", "only damaged ones",
                                           "restore the checkpoints from a backup")
        finally:
            shutil.rmtree(local_root, ignore_errors=True)

