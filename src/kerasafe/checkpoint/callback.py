"""``ks.Checkpoint``: a Keras callback whose checkpoints survive a crash, and ``ks.restore``.

Example:
    >>> import keras, numpy as np, tempfile, kerasafe as ks
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); m.compile("adam", "mse")
    >>> d = tempfile.mkdtemp()
    >>> _ = m.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[ks.Checkpoint(d, keep_last=2)])
    >>> restored = ks.restore(d)
    >>> restored.kerasafe.manifest["checkpoint"]["epoch"], int(restored.optimizer.iterations)
    (3, 3)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
import tempfile

from .. import _keras, api, distributed, errors, storage
from .. import manifest as manifest_mod
from ..formats import keras_zip, sharded
from . import places, sharded_commit, store
from .policy import Retention, parse_save_freq, resolve_mode
from .writer import BackgroundWriter


@functools.cache
def _callback_class():
    # Built on first use: subclassing keras.callbacks.Callback at import time would import Keras.
    return type("Checkpoint", (_CheckpointMixin, _keras.keras().callbacks.Callback), {"__doc__": Checkpoint.__doc__})


class _CheckpointMixin:
    def _setup(self, directory, save_freq, keep_last, keep_best, monitor, mode, async_write, save_weights_only, filename,
               storage_options=None):
        # Where checkpoints are kept (a local directory or an object-store URL), and the local
        # directory they are written in: the same directory, or for a URL a staging one, made
        # when training begins, from which each commit is uploaded.
        self.place = places.at(directory, storage_options)
        self.directory = None if self.place.is_remote else pathlib.Path(directory)
        self.batches = parse_save_freq(save_freq)
        self.monitor = monitor
        self.mode = resolve_mode(mode, monitor)
        self.retention = Retention(keep_last=keep_last, keep_best=keep_best, mode=self.mode)
        self.async_write = async_write
        self._writer = BackgroundWriter(self.place.name)
        self._written = None  # the last snapshot, once written: its arrays are refilled next time
        self.save_weights_only = save_weights_only
        self.filename = filename
        self._lock = None if self.place.is_remote else store.DirectoryLock(self.directory)
        self._history: dict[str, list[float]] = {}
        self._epoch = 0
        self._global_batch = None  # batches trained under this callback: read from the directory at the first fit
        self._batch_offset = 0  # batches of the current epoch done before a restart (ks.fit)
        self._due_at_epoch_end = False
        self.extra_state = None  # ks.fit: (epoch, batch) -> (random, callback and data state, files such as the data's state)
        self.on_resume = None  # ks.fit: puts saved callback state back once training has begun

    @property
    def history(self) -> dict[str, list[float]]:
        return self._history

    def resume_from(self, history: dict, batches_done: int) -> None:
        self._history = {k: list(v) for k, v in history.items()}
        self._batch_offset = batches_done

    def on_train_begin(self, logs=None):
        # Under a distribution every process runs this callback; process 0 alone owns the
        # directory (lock, clean-up, commit, retention), the others write their shards into it.
        if self.place.is_remote:
            if self.directory is None:
                storage.remove_stale_temporaries(pathlib.Path(tempfile.gettempdir()) / "kerasafe-staging")  # killed runs'
                self.directory = storage.temporary_sibling(pathlib.Path(tempfile.gettempdir()) / "kerasafe-staging")
                self.directory.mkdir(mode=0o700)
        if distributed.is_primary():
            if self._lock is not None:
                self._lock.acquire()
            self.place.clean()
        if self._global_batch is None:  # a later fit call (ks.fit makes several) keeps counting
            self._global_batch = store.batches_done(self.place.committed())

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Finish the write in flight (raising its error, if any) and release the directory.

        Keras calls this through ``on_train_end``; call it yourself when ``fit`` raised.
        """
        try:
            self._writer.wait()
        finally:
            if self._lock is not None:
                self._lock.release()
            if self.place.is_remote and self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)  # everything in it was uploaded
                self.directory = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.on_resume is not None:  # after every callback's on_train_begin has reset it
            self.on_resume()
            self.on_resume = None

    def on_train_batch_end(self, batch, logs=None):
        self._global_batch += 1
        if self.batches and self._global_batch % self.batches == 0:
            if batch + 1 == self.params.get("steps"):
                # The epoch's last batch: save after the epoch ends instead, so the
                # checkpoint holds its validation and history and resumes at a boundary.
                self._due_at_epoch_end = True
            else:
                self._save(step=self._global_batch, epoch=self._epoch, batch=batch + 1 + self._batch_offset, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._batch_offset = 0
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        if self.batches is None:
            self._save(step=epoch + 1, epoch=epoch + 1, batch=None, logs=logs)
        elif self._due_at_epoch_end:
            self._due_at_epoch_end = False
            self._save(step=self._global_batch, epoch=epoch + 1, batch=None, logs=logs)

    def _save(self, *, step: int, epoch: int, batch: int | None, logs) -> None:
        # At most one write in flight: wait for the previous one first (and raise its error).
        self._writer.wait()
        model = self.model  # on JAX this property puts the training state back into the variables
        logs = {k: float(v) for k, v in (logs or {}).items()}
        value = logs.get(self.monitor)
        state = {"step": step, "epoch": epoch, "batch": batch, "global_batch": self._global_batch,
                 "history": self._history, "monitor": self.monitor, "value": value, "mode": self.mode}
        files = {}
        if self.extra_state is not None:
            state["extra"], files = self.extra_state(epoch, batch)
        manifest = manifest_mod.build(model)
        manifest["checkpoint"] = json.loads(json.dumps(state))  # a copy: history keeps growing
        marker = {"epoch": epoch, "batch": batch, "global_batch": self._global_batch,
                  "monitor": self.monitor, "value": value, "mode": self.mode}
        # The only part training waits for: weights and optimizer variables copied to host memory
        # (under a distribution: the shards this process writes, each distinct shard in one process).
        if distributed.is_distributed(model):
            reuse = self._written if isinstance(self._written, sharded.Part) else None
            snap = sharded.snapshot(model, manifest, reuse=reuse)
            job = functools.partial(self._write_sharded, snap, step, marker, files)
        else:
            reuse = self._written if isinstance(self._written, keras_zip.Snapshot) else None
            snap = keras_zip.snapshot(model, manifest, include_optimizer=True, reuse=reuse)
            job = functools.partial(self._write, snap, step, marker, files)
        self._written = None
        if self.async_write:
            self._writer.submit(job, f"checkpoint {step}")
        else:
            self._writer.run_now(job, f"checkpoint {step}")
        if self.filename:
            self._export(epoch, logs)

    def _write(self, snap, step: int, marker: dict, files: dict[str, bytes]) -> None:
        """Write and commit one checkpoint, then apply retention (on the background thread when async)."""
        # Weights only: the weights and optimizer state (and the architecture in the manifest), not a .keras archive.
        name, write = ("model.weights.h5", keras_zip.write_weights_snapshot) if self.save_weights_only else ("model.keras", keras_zip.write_snapshot)
        tmp = storage.temporary_sibling(self.directory / name)
        try:
            digest = write(snap, tmp)
            committed = store.commit(self.directory, step, {name: tmp, **files}, extra=marker, hashes={name: digest})
        finally:
            tmp.unlink(missing_ok=True)
        self._written = snap  # read only after the writer is waited for, so never while in use
        self._publish(committed, step)

    def _write_sharded(self, part, step: int, marker: dict, files: dict[str, bytes]) -> None:
        """Write this process's shards; process 0 also waits for the others, commits and applies retention."""
        if self.place.is_remote:  # each process uploads its part; process 0 commits on the store
            committed = sharded_commit.write_to_store(self.place, self.directory, step, part, files, marker,
                                                      processes=distributed.process_count())
        else:
            committed = sharded_commit.write(self.directory, step, part, files, marker, processes=distributed.process_count())
        self._written = part
        if committed:
            self._publish(None if committed is True else committed, step)

    def _publish(self, committed: pathlib.Path | None, step: int) -> None:
        """Make a locally committed checkpoint (None: one already on the store) visible where checkpoints
        are kept, then apply retention."""
        if self.place.is_remote and committed is not None:
            self.place.publish(committed, step)
            shutil.rmtree(committed, ignore_errors=True)
        # Deletion only after the new checkpoint is committed.
        found = self.place.committed()
        doomed = set(self.retention.to_delete([(c.step, c.marker.get("value")) for c in found]))
        for checkpoint in found:
            if checkpoint.step in doomed:
                self.place.delete(checkpoint)

    def _export(self, epoch: int, logs: dict) -> None:
        """The tutorials' ModelCheckpoint files (``filename`` pattern), written atomically."""
        if distributed.process_count() > 1:
            raise errors.UnsupportedOperationError(
                self.place.name, "one process to export filename= files", f"{distributed.process_count()} processes (each would write the same file)",
                "drop filename= under several processes; convert a checkpoint afterwards: kerasafe convert CKPT_DIR model.keras")
        name = self.filename.format(epoch=epoch, **logs)
        target = f"{self.place.name}/{name}" if self.place.is_remote else self.directory / name
        if self.save_weights_only:
            api.save_weights(self.model, target)
        else:
            api.save(self.model, target)


def Checkpoint(directory, *, save_freq="epoch", keep_last=3, keep_best=0, monitor="val_loss", mode="auto",
               async_write=True, save_weights_only=False, filename=None, storage_options=None):
    """A Keras callback that commits a checkpoint atomically every epoch (or every ``save_freq`` batches).

    Each checkpoint is model + optimizer state + progress (epoch, batch, history,
    monitored value) in one ``.keras`` file, or with ``save_weights_only=True`` a
    ``.weights.h5`` file of the weights and optimizer state (the architecture and the
    progress in its manifest: ``ks.restore`` and ``ks.fit`` resume from either), committed under a marker so a crash never leaves a half-written
    one; ``keep_last``/``keep_best`` decide what stays (deletion only after the new
    commit); a lock refuses a second run writing the same directory. ``filename``
    (``"w-{epoch:02d}-{val_loss:.2f}.weights.h5"``) also exports files as Keras's
    ModelCheckpoint does, weights only with ``save_weights_only=True``.
    With ``async_write=True`` training waits only while the weights and optimizer
    variables are copied to host memory; a background thread writes and commits the
    files, one write at a time, and a failure there is raised at the next checkpoint
    or at the end of training (``filename`` exports are written before training goes
    on). Put it last in ``callbacks`` so each checkpoint holds what the other
    callbacks did that epoch. ``directory`` may be an fsspec URL (``s3://bucket/run``,
    ``storage_options`` for the store): each checkpoint is committed in a local staging
    directory and uploaded by the writer thread, its ``COMMIT`` object last
    (:mod:`kerasafe.checkpoint.places`); there is no lock on a store.

    Example:
        >>> import kerasafe as ks, tempfile
        >>> cb = ks.Checkpoint(tempfile.mkdtemp(), save_freq=10, keep_best=1, monitor="loss")
        >>> cb.batches, cb.mode
        (10, 'min')
    """
    callback = _callback_class()()
    callback._setup(directory, save_freq, keep_last, keep_best, monitor, mode, async_write, save_weights_only, filename,
                    storage_options)
    return callback


def restore(directory, *, which="latest", storage_options=None):
    """The model of a checkpoint, compiled, with its optimizer state: ``"latest"``, ``"best"`` or a step.

    A checkpoint whose files do not match their hashes is skipped with a warning
    and the previous one is used. Progress is in ``model.kerasafe.manifest["checkpoint"]``;
    ``model.kerasafe.epoch`` (epochs done) is what a plain ``model.fit`` run continues from:
    ``model.fit(x, y, epochs=20, initial_epoch=model.kerasafe.epoch, callbacks=[ks.Checkpoint(d)])``.
    ``directory`` may be an fsspec URL (the checkpoint is downloaded to a temporary copy).

    Example:
        >>> import kerasafe as ks
        >>> ks.restore("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        kerasafe.errors.FileMissingError: /nonexistent: expected a directory holding committed checkpoints, ...
    """
    place = places.at(directory, storage_options)
    with place.fetched(which) as chosen:
        model = api.load(store.model_file(chosen), compile=True)
        if place.is_remote:  # name the checkpoint on the store, not the downloaded copy
            inside = store.model_file(chosen).relative_to(chosen.path).as_posix()  # "." for a sharded checkpoint
            where = f"{place.name}/{store.name_for(chosen.step)}" + ("" if inside == "." else f"/{inside}")
            model = manifest_mod.attach(model, dataclasses.replace(model.kerasafe, path=where))
        return model
