"""How long a checkpoint blocks training, and how fast it reaches the disk, in one run.

    python benchmarks/checkpoint_blocking.py [--mib 1024] [--repeats 3] [--dir DIR]

Builds a model of about ``--mib`` MiB (four square Dense layers, SGD without
momentum so the optimizer adds no slots and a checkpoint holds the model's bytes),
then calls each callback's ``on_epoch_end`` the way ``fit`` does and times how long
it keeps the training thread:

- kerasafe ``Checkpoint(async_write=True)``: the host copy only; the background
  write is timed separately (to its commit) for the throughput column;
- kerasafe ``Checkpoint(async_write=False)``;
- Keras ``BackupAndRestore`` and ``ModelCheckpoint`` (``.keras`` and ``.weights.h5``);
- raw: the same bytes written sequentially to one file with fsync (the disk's speed).

Prints seconds (best of ``--repeats``), each blocked time as a ratio of kerasafe's
synchronous save, and write throughput as a ratio of the raw write. Goals (issue 4):
async blocked time <= 10% of a synchronous save; throughput >= 80% of raw.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import shutil
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasafe as ks  # noqa: E402


def build_model(mib: int):
    width = int(math.sqrt(mib * 2**20 / 4 / 4))
    inputs = keras.Input((width,))
    x = inputs
    for _ in range(4):
        x = keras.layers.Dense(width, use_bias=False)(x)
    model = keras.Model(inputs, x)
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    for w in model.weights:  # random bytes, so nothing on the way can shortcut zeros
        w.assign(np.random.default_rng(0).standard_normal(w.shape, dtype="float32"))
    return model


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_write(arrays, path: pathlib.Path) -> float:
    def write():
        with open(path, "wb") as f:
            for a in arrays:
                f.write(memoryview(a).cast("B"))
            f.flush()
            os.fsync(f.fileno())
    seconds = _timed(write)
    path.unlink()
    return seconds


def callback_times(make, model, directory: pathlib.Path, repeats: int, logs: dict) -> tuple[float, float]:
    """(blocked, to-disk) seconds, best of ``repeats``, for one callback's epoch-end save."""
    blocked, total = [], []
    for epoch in range(repeats):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        cb = make(directory)
        cb.set_model(model)
        cb.set_params({"epochs": repeats, "steps": 1, "verbose": 0})
        cb.on_train_begin()
        start = time.perf_counter()
        cb.on_epoch_end(epoch, dict(logs))
        blocked.append(time.perf_counter() - start)
        writer = getattr(cb, "_writer", None)
        if writer is not None:
            writer.wait()  # the background write, up to its commit
            cb.close()
        total.append(time.perf_counter() - start)
    return min(blocked), min(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-bench-", dir=args.dir))
    try:
        model = build_model(args.mib)
        arrays = [np.asarray(w) for w in model.weights]
        nbytes = sum(a.nbytes for a in arrays)
        logs = {"loss": 1.0, "val_loss": 1.0}
        candidates = {
            "kerasafe Checkpoint (async)": lambda d: ks.Checkpoint(d, async_write=True),
            "kerasafe Checkpoint (sync)": lambda d: ks.Checkpoint(d, async_write=False),
            "keras BackupAndRestore": lambda d: keras.callbacks.BackupAndRestore(str(d / "backup")),
            "keras ModelCheckpoint .keras": lambda d: keras.callbacks.ModelCheckpoint(str(d / "m.keras")),
            "keras ModelCheckpoint .weights.h5": lambda d: keras.callbacks.ModelCheckpoint(
                str(d / "m.weights.h5"), save_weights_only=True),
        }
        results = {name: callback_times(make, model, root / "run", args.repeats, logs) for name, make in candidates.items()}
        raw = min(raw_write(arrays, root / "raw.bin") for _ in range(args.repeats))
        sync = results["kerasafe Checkpoint (sync)"][0]
        print(f"model: {nbytes / 2**20:.0f} MiB in {len(arrays)} weights; backend {keras.backend.backend()}; "
              f"best of {args.repeats}; writing to {root}")
        print(f"{'checkpoint':<36}{'blocked s':>10}{'x sync':>8}{'to disk s':>11}{'GiB/s':>7}{'x raw':>7}")
        for name, (blocked, total) in results.items():
            print(f"{name:<36}{blocked:>10.3f}{blocked / sync:>8.3f}{total:>11.3f}{nbytes / total / 2**30:>7.2f}{raw / total:>7.2f}")
        print(f"{'raw write + fsync':<36}{raw:>10.3f}{raw / sync:>8.3f}{raw:>11.3f}{nbytes / raw / 2**30:>7.2f}{1.0:>7.2f}")
        ours = results["kerasafe Checkpoint (async)"]
        print(f"goals: async blocked {ours[0] / sync:.1%} of a synchronous save (<= 10%); "
              f"throughput {raw / ours[1]:.0%} of raw (>= 80%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
