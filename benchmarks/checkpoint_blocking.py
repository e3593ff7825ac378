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
    os.sync()
    def write():
        with open(path, "wb") as f:
            for a in arrays:
                f.write(memoryview(a).cast("B"))
            f.flush()
            os.fsync(f.fileno())
    seconds = _timed(write)
    path.unlink()
    return seconds


class Candidate:
    """One callback, set up once as ``fit`` would, saving at each simulated epoch end."""

    def __init__(self, make, model, directory: pathlib.Path):
        directory.mkdir(parents=True)
        self.cb = make(directory)
        self.cb.set_model(model)
        self.cb.set_params({"epochs": 1000, "steps": 1, "verbose": 0})
        self.cb.on_train_begin()
        self.epoch = 0
        self.blocked: list[float] = []
        self.total: list[float] = []

    def save(self, logs: dict) -> None:
        # Keras's callbacks do not fsync: flush what the previous candidate left dirty so its
        # write-back does not land inside this one's timing.
        os.sync()
        start = time.perf_counter()
        self.cb.on_epoch_end(self.epoch, dict(logs))
        self.blocked.append(time.perf_counter() - start)
        writer = getattr(self.cb, "_writer", None)
        if writer is not None:
            writer.wait()  # the background write, up to its commit
        self.total.append(time.perf_counter() - start)
        self.epoch += 1

    def close(self) -> None:
        if hasattr(self.cb, "close"):
            self.cb.close()


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
        makers = {
            "kerasafe Checkpoint (async)": lambda d: ks.Checkpoint(d, async_write=True, keep_last=100),
            "kerasafe Checkpoint (sync)": lambda d: ks.Checkpoint(d, async_write=False, keep_last=100),
            "keras BackupAndRestore": lambda d: keras.callbacks.BackupAndRestore(str(d / "backup")),
            "keras ModelCheckpoint .keras": lambda d: keras.callbacks.ModelCheckpoint(str(d / "m.keras")),
            "keras ModelCheckpoint .weights.h5": lambda d: keras.callbacks.ModelCheckpoint(
                str(d / "m.weights.h5"), save_weights_only=True),
        }
        candidates = {name: Candidate(make, model, root / str(i)) for i, (name, make) in enumerate(makers.items())}
        raw_times = []
        # Round robin, one save of each per round: the disk's speed drifts during a long
        # run (page cache, write-back), and each candidate then sees the same drift.
        # The first round warms up (first-call costs, first allocation of kerasafe's host copy).
        for _ in range(args.repeats + 1):
            for candidate in candidates.values():
                candidate.save(logs)
            raw_times.append(raw_write(arrays, root / "raw.bin"))
        for candidate in candidates.values():
            candidate.close()
        raw = min(raw_times[1:])
        best = {name: (min(c.blocked[1:]), min(c.total[1:])) for name, c in candidates.items()}
        sync = best["kerasafe Checkpoint (sync)"][0]
        keras_save = best["keras ModelCheckpoint .keras"][0]
        print(f"model: {nbytes / 2**20:.0f} MiB in {len(arrays)} weights; backend {keras.backend.backend()}; "
              f"best of {args.repeats} after one warm-up round; writing to {root}")
        print(f"{'checkpoint':<36}{'blocked s':>10}{'x ours sync':>12}{'x keras .keras':>15}{'written s':>10}{'GiB/s':>7}{'x raw':>7}")
        for name, (blocked, total) in best.items():
            # For the async checkpoint the write happens after training went on: its throughput
            # is the background write's, from the end of the host copy to the commit.
            written = total - blocked if "async" in name else total
            print(f"{name:<36}{blocked:>10.3f}{blocked / sync:>12.3f}{blocked / keras_save:>15.3f}"
                  f"{written:>10.3f}{nbytes / written / 2**30:>7.2f}{raw / written:>7.2f}")
        print(f"{'raw write + fsync':<36}{raw:>10.3f}{raw / sync:>12.3f}{raw / keras_save:>15.3f}"
              f"{raw:>10.3f}{nbytes / raw / 2**30:>7.2f}{1.0:>7.2f}")
        blocked, total = best["kerasafe Checkpoint (async)"]
        print(f"goals: async blocked {blocked / sync:.1%} of kerasafe's synchronous save, {blocked / keras_save:.1%} of "
              f"Keras's (<= 10%); background write {raw / (total - blocked):.0%} of raw throughput (>= 80%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
