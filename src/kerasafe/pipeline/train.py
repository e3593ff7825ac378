"""``kerasafe train``: data set -> model with its preprocessing and labels inside -> run folder.

Example (a few seconds):
    >>> import tempfile
    >>> from kerasafe.pipeline.train import train
    >>> result = train("digits", tempfile.mkdtemp(), epochs=1, quiet=True)  # doctest: +SKIP
    >>> sorted(p.name for p in result.out_dir.iterdir())  # doctest: +SKIP
    ['checkpoints', 'history.csv', 'model.keras', 'plot.png', 'report.txt']
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tempfile

import numpy as np

from .. import _keras, api, errors, remote
from .. import manifest as manifest_mod
from ..checkpoint import places, store
from . import reports, streaming
from .data import Dataset, load_dataset
from .models import build


@dataclasses.dataclass
class TrainResult:
    out_dir: pathlib.Path | str  # a URL when the run folder is on an object store
    model_path: pathlib.Path | str
    dataset: Dataset
    history: dict[str, list[float]]
    test_accuracy: float | None
    model: object
    written: tuple[str, ...] = ()  # what the run folder holds: names among OUTPUTS


# What a run folder holds after training.
OUTPUTS = ("model.keras", "history.csv", "plot.png", "report.txt", "checkpoints")


def _progress_callback(keras, epochs: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class RichProgress(keras.callbacks.Callback):
        """One bar per epoch with the running loss and accuracy."""

        def on_train_begin(self, logs=None):
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
            )
            self.progress.start()

        def on_epoch_begin(self, epoch, logs=None):
            self.task = self.progress.add_task("", total=self.params.get("steps"), epoch=epoch + 1, metrics="")

        def on_train_batch_end(self, batch, logs=None):
            self.progress.update(self.task, completed=batch + 1, metrics=_metrics_text(logs))

        def on_epoch_end(self, epoch, logs=None):
            self.progress.update(self.task, metrics=_metrics_text(logs))

        def on_train_end(self, logs=None):
            self.progress.stop()

    return RichProgress()


def _metrics_text(logs) -> str:
    logs = logs or {}
    return "  ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))


# Settings a resumed run must share with the run it continues (epochs may grow).
RESUME_MUST_MATCH = ("dataset", "arch", "batch_size", "lr", "augment", "seed")


def _check_resumable(checkpoints, metadata: dict, resume: bool) -> None:
    place = places.at(checkpoints)
    found = place.committed()
    if not found:
        return
    folder = str(checkpoints).rsplit("/", 1)[0]
    if not resume:
        raise errors.KerasafeError(
            folder, "a new run folder", f"the checkpoints of an earlier run ({len(found)} in {checkpoints})",
            "pass --resume to continue that run, or choose another --out",
        )
    with place.fetched() as newest:
        saved = store.read_manifest(newest).get("metadata") or {}
    changed = [f"{k} {saved.get(k)!r} -> {metadata[k]!r}" for k in RESUME_MUST_MATCH if saved.get(k) != metadata[k]]
    if changed:
        raise errors.KerasafeError(
            folder, "the settings of the run being resumed", "different " + ", ".join(changed),
            "resume with the same settings (only --epochs may change), or choose another --out",
        )


def train(dataset, out_dir, *, arch="auto", image_size=None, color="rgb", channel_order="rgb", interpolation="bilinear",
          epochs=10, batch_size=32, lr=1e-3, augment=False, seed=0, label_column=None, split=(0.7, 0.15, 0.15),
          quiet=False, resume=False) -> TrainResult:
    """Train on ``dataset`` and write model.keras, history.csv, plot.png, report.txt and checkpoints/ to ``out_dir``.

    Training goes through ``ks.fit``: every epoch is checkpointed in ``out_dir/checkpoints``
    and, with ``resume=True``, a run that stopped (crash, kill, or fewer epochs) continues
    from its newest checkpoint and ends as an uninterrupted run would have. An error
    before the first checkpoint leaves no run folder behind (one that existed stays).
    """
    settings = dict(arch=arch, image_size=image_size, color=color, channel_order=channel_order, interpolation=interpolation,
                    epochs=epochs, batch_size=batch_size, lr=lr, augment=augment, seed=seed, label_column=label_column,
                    split=split, quiet=quiet, resume=resume)
    out_dir = remote.local_path(out_dir) if isinstance(out_dir, str) else out_dir
    if remote.is_url(out_dir):
        return _train_to_store(dataset, out_dir.rstrip("/"), settings)
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise errors.WrongKindOfPathError(out, "a folder for the run (--out)", "a file", "choose another --out; the file is left as it is")
    made = not out.exists()
    try:
        return _train(dataset, out, out / "checkpoints", **settings)
    except BaseException:
        # A run folder this call made and no checkpoint was committed to is only debris; one with a
        # checkpoint is what --resume continues from, so it stays.
        if made and out.is_dir() and not store.committed(out / "checkpoints"):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train_to_store(dataset, url: str, settings: dict) -> TrainResult:
    """A run folder on an object store: checkpoints go there as they commit; the other files are
    made in a local staging folder and uploaded at the end, each as one object visible only whole."""
    with tempfile.TemporaryDirectory(prefix="kerasafe-run-") as staging:
        local = pathlib.Path(staging)
        result = _train(dataset, local, f"{url}/checkpoints", **settings)
        for name in result.written:
            if name != "checkpoints":
                remote.put_file(local / name, f"{url}/{name}")
    return dataclasses.replace(result, out_dir=url, model_path=f"{url}/model.keras")


def _train(dataset, out: pathlib.Path, checkpoints, *, arch, image_size, color, channel_order, interpolation, epochs, batch_size,
           lr, augment, seed, label_column, split, quiet, resume) -> TrainResult:
    from ..checkpoint.resume import fit as checkpointed_fit

    keras = _keras.keras()
    _keras.set_random_seed(seed)
    ds = load_dataset(dataset, image_size=image_size, color=color, channel_order=channel_order,
                      interpolation=interpolation, label_column=label_column, seed=seed, ratios=split)
    model = build(arch, ds, augment=augment)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    metadata = {"dataset": str(dataset), "arch": model.name, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "augment": augment, "seed": seed}
    _check_resumable(checkpoints, metadata, resume)
    # Checkpoints carry the labels and preprocessing too, so any of them can be used to predict.
    manifest_mod.attach(model, manifest_mod.ModelInfo.from_manifest(
        {"labels": ds.labels, "preprocessing": ds.preprocessing, "metadata": metadata}, path="", format="keras"))
    validation = (ds.x_val, ds.y_val) if len(ds.x_val) else None
    fit = checkpointed_fit(
        model, ds.x_train, ds.y_train, checkpoint_dir=checkpoints, epochs=epochs, batch_size=batch_size, seed=seed,
        validation_data=validation, keep_last=3, keep_best=1, monitor="val_loss" if validation else "loss",
        verbose=0, callbacks=[] if quiet else [_progress_callback(keras, epochs)],
    )
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    model_path = api.save(model, out / "model.keras", labels=ds.labels, preprocessing=ds.preprocessing, metadata=metadata)
    reports.write_history(out / "history.csv", history)
    reports.write_plot(out / "plot.png", history, f"{model.name} on {pathlib.Path(str(dataset)).name}")
    accuracy = None
    if len(ds.x_test):
        predicted = np.argmax(model.predict(streaming.readable(ds.x_test, 256), batch_size=256, verbose=0), axis=1)
        accuracy = float(np.mean(predicted == ds.y_test))
        text = reports.classification_text(ds.y_test, predicted, ds.labels)
        reports.write_text(out / "report.txt", f"test split of {dataset}: {len(ds.y_test)} samples, accuracy {accuracy:.4f}\n\n{text}")
    written = tuple(name for name in OUTPUTS if name == "checkpoints" or (out / name).exists())
    return TrainResult(out, model_path, ds, history, accuracy, model, written)
