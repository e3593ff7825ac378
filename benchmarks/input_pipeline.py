"""An epoch of `kerasafe train` streaming an image folder, against the same epoch on images already in memory.

    python benchmarks/input_pipeline.py [--images 20000] [--side 64] [--epochs 2] [--dir DIR]

Writes a folder of ``--images`` PNGs (two classes, ``--side`` pixels square), builds the
model `kerasafe train` builds for it (``--arch``, default auto), and times training epochs
(after a first epoch that compiles) on:

- the folder streamed: ``ks.fit`` on the folder's ``ImageFiles`` (decoded a batch at a time
  on a thread pool, a few batches ahead), as `kerasafe train` runs;
- the same images decoded into one array first (the anchor; decoding time not counted);
- Keras's own streaming, ``keras.utils.image_dataset_from_directory`` + ``model.fit``
  (when TensorFlow is installed);
- raw: decoding every file once on the same thread pool, no training (the I/O and decode floor).

Prints seconds per epoch and ratios to the in-memory epoch. Goal (issue 15): streamed
within 1.2x of in-memory.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import kerasafe as ks  # noqa: E402
from kerasafe.checkpoint.sources import take  # noqa: E402
from kerasafe.pipeline import models  # noqa: E402
from kerasafe.pipeline.data import load_dataset  # noqa: E402


def write_folder(root: pathlib.Path, count: int, side: int) -> None:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, side * side * 3).reshape(side, side, 3)
    for i in range(count):
        folder = root / ("bright" if i % 2 else "dark")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (base * (0.9 if i % 2 else 0.3) + rng.integers(0, 40, (side, side, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:06d}.png")


class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = [*getattr(self, "times", []), time.perf_counter() - self.start]


def timed_epochs(fit) -> float:
    """The fastest epoch after the first (which compiles)."""
    times = EpochTimes()
    fit(times)
    return min(times.times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--arch", default="auto")
    parser.add_argument("--dir", default=None, help="where to write the images (default: a temporary directory)")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-bench-", dir=args.dir))
    try:
        write_folder(root / "images", args.images, args.side)
        ds = load_dataset(root / "images", ratios=(1.0, 0.0, 0.0))
        arch = models.choose(ds) if args.arch == "auto" else args.arch

        def model():
            keras.utils.set_random_seed(0)
            m = models.build(arch, ds)
            m.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
            return m

        start = time.perf_counter()
        decoded = take(ds.x_train, slice(None))
        raw = time.perf_counter() - start
        results = {}
        results["streamed (ks.fit, kerasafe train)"] = timed_epochs(lambda cb: ks.fit(
            model(), ds.x_train, ds.y_train, checkpoint_dir=root / "ckpt-stream", epochs=args.epochs, batch_size=args.batch,
            seed=0, verbose=0, callbacks=[cb]))
        results["in memory (ks.fit)"] = timed_epochs(lambda cb: ks.fit(
            model(), decoded, ds.y_train, checkpoint_dir=root / "ckpt-memory", epochs=args.epochs, batch_size=args.batch,
            seed=0, verbose=0, callbacks=[cb]))
        results["in memory (model.fit)"] = timed_epochs(lambda cb: model().fit(
            decoded, ds.y_train, epochs=args.epochs, batch_size=args.batch, verbose=0, callbacks=[cb]))
        try:
            import tensorflow  # noqa: F401  (Keras's image_dataset_from_directory needs it)

            keras_ds = keras.utils.image_dataset_from_directory(root / "images", image_size=(args.side, args.side),
                                                                batch_size=args.batch, shuffle=True, seed=0, verbose=False)
            results["keras image_dataset_from_directory"] = timed_epochs(lambda cb: model().fit(
                keras_ds, epochs=args.epochs, verbose=0, callbacks=[cb]))
        except ImportError:
            print("(TensorFlow not installed: Keras's image_dataset_from_directory is not measured)")
        anchor = results["in memory (ks.fit)"]
        print(f"{args.images} PNGs of {args.side}x{args.side}, arch {arch}, batch {args.batch}, backend "
              f"{keras.backend.backend()}, {os.cpu_count()} CPUs; best epoch after the first")
        print(f"{'epoch':<40}{'seconds':>9}{'x in memory':>13}")
        for name, seconds in results.items():
            print(f"{name:<40}{seconds:>9.2f}{seconds / anchor:>13.2f}")
        print(f"{'raw: decode every file once (no training)':<40}{raw:>9.2f}{raw / anchor:>13.2f}")
        streamed = results["streamed (ks.fit, kerasafe train)"]
        print(f"goal: streamed epoch {streamed / anchor:.2f}x the in-memory epoch (<= 1.2x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
