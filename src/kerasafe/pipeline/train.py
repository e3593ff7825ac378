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

import numpy as np

from .. import _keras, api
from . import reports
from .data import Dataset, load_dataset
from .models import build


@dataclasses.dataclass
class TrainResult:
    out_dir: pathlib.Path
    model_path: pathlib.Path
    dataset: Dataset
    history: dict[str, list[float]]
    test_accuracy: float | None
    model: object


def _callbacks(keras, out_dir: pathlib.Path, ds: Dataset, epochs: int, quiet: bool, metadata: dict):
    class EpochCheckpoint(keras.callbacks.Callback):
        """A checkpoint of every epoch, written atomically with the labels and preprocessing."""

        def on_epoch_end(self, epoch, logs=None):
            api.save(
                self.model, out_dir / "checkpoints" / f"epoch-{epoch + 1:03d}.keras",
                labels=ds.labels, preprocessing=ds.preprocessing, metadata={**metadata, "epoch": epoch + 1},
            )

    callbacks = [EpochCheckpoint()]
    if not quiet:
        callbacks.append(_progress_callback(keras, epochs))
    return callbacks


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


def train(dataset, out_dir, *, arch="auto", image_size=None, color="rgb", channel_order="rgb", interpolation="bilinear",
          epochs=10, batch_size=32, lr=1e-3, augment=False, seed=0, label_column=None, split=(0.7, 0.15, 0.15),
          quiet=False) -> TrainResult:
    """Train on ``dataset`` and write model.keras, history.csv, plot.png, report.txt and checkpoints/ to ``out_dir``."""
    keras = _keras.keras()
    _keras.set_random_seed(seed)
    out = pathlib.Path(out_dir)
    ds = load_dataset(dataset, image_size=image_size, color=color, channel_order=channel_order,
                      interpolation=interpolation, label_column=label_column, seed=seed, ratios=split)
    model = build(arch, ds, augment=augment)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    metadata = {"dataset": str(dataset), "arch": model.name, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "augment": augment, "seed": seed}
    validation = (ds.x_val, ds.y_val) if len(ds.x_val) else None
    fit = model.fit(ds.x_train, ds.y_train, validation_data=validation, epochs=epochs, batch_size=batch_size,
                    verbose=0, callbacks=_callbacks(keras, out, ds, epochs, quiet, metadata))
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    model_path = api.save(model, out / "model.keras", labels=ds.labels, preprocessing=ds.preprocessing, metadata=metadata)
    reports.write_history(out / "history.csv", history)
    reports.write_plot(out / "plot.png", history, f"{model.name} on {pathlib.Path(str(dataset)).name}")
    accuracy = None
    if len(ds.x_test):
        predicted = np.argmax(model.predict(ds.x_test, batch_size=256, verbose=0), axis=1)
        accuracy = float(np.mean(predicted == ds.y_test))
        text = reports.classification_text(ds.y_test, predicted, ds.labels)
        reports.write_text(out / "report.txt", f"test split of {dataset}: {len(ds.y_test)} samples, accuracy {accuracy:.4f}\n\n{text}")
    return TrainResult(out, model_path, ds, history, accuracy, model)
