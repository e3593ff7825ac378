"""fsspec URLs (``s3://``, ``gs://``, ``az://``, ``memory://``, ``file://``) wherever kerasafe takes a model file.

A read streams the object to a private temporary directory in small pieces
(:func:`get`: never the whole object in memory) and hands the formats
that local path, which they read as they read any file (their hashes checked on
the way in). A write goes to a local temporary file first, through the same
atomic local commit as every save, and is then uploaded (:func:`put`, in bounded
parts) to the final key in one step that cannot half-happen: an object store makes an object visible only when
its single PUT or its multipart upload *completes*, and the previous object
stays readable until then. So an interrupted save leaves the previous object, and
no visible partial one. (tmp+rename would not do: on object stores a rename is a
copy and a delete.)

Credentials and endpoints come the way each fsspec backend reads them
(environment, config files); ``storage_options`` passes what must be passed.

Example:
    >>> import keras, kerasafe as ks
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> ks.save(m, "memory://models/m.keras")
    'memory://models/m.keras'
    >>> ks.load("memory://models/m.keras").count_params()
    8
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from . import errors, storage

# The extra that brings each scheme's fsspec implementation (pyproject.toml).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


# How much of an object is in memory while it moves. s3fs's defaults move a large object in 50 MiB parts,
# 10 at a time, each part held whole (and on upload held twice, botocore's request holding it too): all of a
# 192 MiB model in memory each way, twice over on upload (measured by tests/test_remote.py's memory test).
# Uploads: 4 parts of 8 MiB at a time (AWS's suggested part size; S3's minimum is 5 MiB), about 64 MiB
# in flight, as fast as s3fs's defaults on the loopback benchmark. Downloads: one streamed GET read in
# 64 KiB pieces (s3fs resumes it with a ranged GET after a dropped connection); parallel ranged GETs of
# 8 MiB were 9x slower on moto's server (it copies the object for each range) and no faster at 32 MiB.
# A ``max_concurrency`` the user passes in ``storage_options`` is theirs to choose and is kept.
PART_BYTES = 8 * 2**20
PARTS_AT_ONCE = 4


def _bounded(fs, *, upload: bool) -> dict:
    """The transfer arguments that bound the memory a transfer on ``fs`` holds (s3fs's; other stores keep theirs)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" not in protocols or "max_concurrency" in getattr(fs, "storage_options", {}):
        return {}
    return {"chunksize": PART_BYTES, "max_concurrency": PARTS_AT_ONCE} if upload else {"max_concurrency": 1}


def put(fs, local, key: str) -> None:
    """Upload the local file ``local`` as the object ``key`` in bounded parts (visible only once complete)."""
    fs.put_file(str(local), key, **_bounded(fs, upload=True))


def get(fs, url: str, local, *, recursive: bool = False) -> None:
    """Download the object ``url`` (``recursive``: every object under the prefix) to ``local``, streamed in
    bounded pieces; the files of a prefix one after another, so that only one is in flight."""
    if recursive:
        fs.get(url.rstrip("/") + "/", str(local), recursive=True, batch_size=1, **_bounded(fs, upload=False))
    else:
        fs.get_file(url, str(local), **_bounded(fs, upload=False))


def is_url(path) -> bool:
    """Whether ``path`` is an fsspec URL (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].isidentifier()


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def local_path(path):
    """``file://`` URLs as plain paths; everything else unchanged."""
    if is_url(path) and scheme(path) in ("file", "local"):
        return path.split("://", 1)[1]
    return path


def filesystem(url: str, storage_options: dict | None = None):
    """The fsspec filesystem for ``url``; a MissingDependencyError names the extra to install."""
    extra = EXTRAS.get(scheme(url))
    try:
        import fsspec

        return fsspec.filesystem(scheme(url), **(storage_options or {}))
    except ImportError as exc:
        raise errors.MissingDependencyError(
            url, f"fsspec with the {scheme(url)}:// implementation", f"it is not installed ({exc})",
            f"pip install 'kerasafe[{extra}]'" if extra else "pip install fsspec",
        ) from None
    except ValueError as exc:  # fsspec's "Protocol not known"
        raise errors.KerasafeError(url, "a URL scheme fsspec knows (s3, gs, az, memory, file, ...)", str(exc),
                                   "check the URL's scheme") from None


def _store_error(url: str, action: str, exc: Exception) -> errors.KerasafeError:
    if isinstance(exc, FileNotFoundError):
        return errors.FileMissingError(url, f"an object to {action}", "no such object or bucket", "check the URL")
    if isinstance(exc, PermissionError):
        return errors.KerasafeError(url, f"permission to {action}", f"access denied ({exc})",
                                    "check the credentials (environment, config file or storage_options)")
    return errors.KerasafeError(url, f"the object store to {action}", f"{type(exc).__name__}: {exc}",
                                "check the URL, the endpoint and the credentials; nothing was changed there")


def _scratch(url: str) -> pathlib.Path:
    """A private temporary directory, named by :mod:`kerasafe.storage`'s convention for temporaries so that
    those of processes killed mid-transfer are removed here next time; the path of ``url``'s copy in it."""
    target = pathlib.Path(tempfile.gettempdir()) / "kerasafe-remote"
    storage.remove_stale_temporaries(target)
    scratch = storage.temporary_sibling(target)
    scratch.mkdir(mode=0o700)
    return scratch / (url.rstrip("/").rsplit("/", 1)[-1] or "object")


@contextlib.contextmanager
def downloaded(url: str, storage_options: dict | None = None) -> Iterator[pathlib.Path]:
    """A local copy of the object (or prefix, for a SavedModel directory) at ``url``, removed afterwards.

    Errors the formats raise name ``url``, not the temporary copy.
    """
    fs = filesystem(url, storage_options)
    local = _scratch(url)
    try:
        try:
            get(fs, url, local, recursive=fs.isdir(url))
        except Exception as exc:
            raise _store_error(url, "read", exc) from exc
        try:
            yield local
        except errors.KerasafeError as exc:
            raise exc.naming(local, url) from None
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)


@contextlib.contextmanager
def uploaded(url: str, storage_options: dict | None = None) -> Iterator[pathlib.Path]:
    """A local path to write; on leaving without an error its content becomes the object at ``url`` in one step.

    A single file is one PUT (or one multipart upload, completed last); the previous
    object is replaced only when that completes. A directory (SavedModel) is several
    objects: see :func:`put_directory`.
    """
    fs = filesystem(url, storage_options)
    local = _scratch(url)
    try:
        try:
            yield local
        except errors.KerasafeError as exc:
            raise exc.naming(local, url) from None
        if local.is_dir():
            put_directory(local, url, storage_options)
        else:
            put_file(local, url, storage_options)
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)


def put_file(local, url: str, storage_options: dict | None = None) -> None:
    """Upload the finished local file ``local`` as the object ``url``: visible only once whole
    (one PUT or one multipart upload, completed last); stale uploads to that key aborted first."""
    fs = filesystem(url, storage_options)
    try:
        abort_stale_uploads(fs, url)
        put(fs, local, url)
    except Exception as exc:
        raise _store_error(url, "write", exc) from exc


def abort_stale_uploads(fs, url: str, *, under: bool = False) -> int:
    """Abort the unfinished multipart uploads to ``url`` (or, ``under=True``, to any key below it); return how many.

    A save killed mid-upload leaves its multipart upload open: invisible, but S3 keeps (and bills)
    its parts until it is aborted or a lifecycle rule removes it. The next save to the same key
    aborts it. (A save to the same key running at this moment in another process would be
    aborted too and fail with an error; the object stays whole either way.) Stores without
    multipart uploads have nothing to abort.
    """
    lister = getattr(fs, "list_multipart_uploads", None)
    if lister is None:
        return 0
    bucket, _, key = fs._strip_protocol(url).partition("/")
    prefix = key.rstrip("/") + "/"
    aborted = 0
    for upload in lister(bucket):
        found = upload.get("Key", "")
        if found == key or under and found.startswith(prefix):
            fs.abort_mpu(bucket, found, upload["UploadId"])
            aborted += 1
    return aborted


# Uploaded first and deleted last while a directory is uploaded: a prefix holding it is a killed upload.
UPLOADING = ".kerasafe-uploading"
# The file that makes a directory a SavedModel (for TensorFlow and for kerasafe): uploaded last.
SAVEDMODEL_LAST = "saved_model.pb"


def check_directory_target(url: str, storage_options: dict | None = None) -> bool:
    """Refuse a prefix that holds anything but a killed upload of ours; True when it holds such leftovers."""
    fs = filesystem(url, storage_options)
    prefix = url.rstrip("/")
    try:
        fs.invalidate_cache(prefix)
        present = {k.rsplit("/", 1)[-1] for k in fs.find(prefix)} if fs.exists(prefix) else set()
    except Exception as exc:
        raise _store_error(url, "look at the prefix", exc) from exc
    if SAVEDMODEL_LAST in present or (present and UPLOADING not in present):
        raise errors.UnsupportedOperationError(
            url, "a new (empty) prefix for a SavedModel", "objects there already" + (" (a SavedModel)" if SAVEDMODEL_LAST in present else ""),
            "save to a new prefix (a SavedModel of many objects cannot be replaced in one step), or delete what is there first")
    return bool(present)


def put_directory(local: pathlib.Path, url: str, storage_options: dict | None = None) -> None:
    """Upload a finished SavedModel directory as the objects under ``url``, ``saved_model.pb`` last.

    Many objects cannot appear in one step, but a SavedModel is one only once its
    ``saved_model.pb`` is there (TensorFlow and kerasafe both look for it), so it is
    uploaded after everything else: a killed upload leaves no readable SavedModel. A
    prefix holding a SavedModel is never replaced (that cannot be done in one step
    either): save to a new prefix. A prefix left by a killed upload (it holds
    :data:`UPLOADING`) is cleared first; any other non-empty prefix is refused.
    """
    fs = filesystem(url, storage_options)
    prefix = url.rstrip("/")
    try:
        if check_directory_target(url, storage_options):
            fs.rm(prefix, recursive=True)  # what a killed upload of ours left
        fs.pipe_file(f"{prefix}/{UPLOADING}", b"a kerasafe upload in progress (or killed: removed by the next save here)")
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != SAVEDMODEL_LAST)
        for path in [*files, local / SAVEDMODEL_LAST]:
            key = f"{prefix}/{path.relative_to(local).as_posix()}"
            abort_stale_uploads(fs, key)
            put(fs, path, key)
        fs.rm_file(f"{prefix}/{UPLOADING}")
    except errors.KerasafeError:
        raise
    except Exception as exc:
        raise _store_error(url, "write", exc) from exc


def refuse_url(path, what: str) -> None:
    """A one-line error for a URL where only a local directory works yet (not a local folder named ``s3:``)."""
    if is_url(local_path(path)):
        raise errors.UnsupportedOperationError(
            path, f"a local directory for {what}", "a URL (checkpoint directories on object stores are not supported yet)",
            "use a local directory, and ks.save/ks.convert the model to the URL when done",
        )


def reads_urls(function):
    """Let ``function(path, ...)`` take a URL: it runs on a downloaded copy; a ``"path"`` in its dict result names the URL."""
    @functools.wraps(function)
    def wrapper(path, *args, storage_options=None, **kwargs):
        path = local_path(path)
        if not is_url(path):
            return function(path, *args, **kwargs)
        with downloaded(path, storage_options) as local:
            result = function(local, *args, **kwargs)
        if isinstance(result, dict) and result.get("path") == str(local):
            result = {**result, "path": path}
        return result

    return wrapper
