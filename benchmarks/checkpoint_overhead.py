"""What checkpointing every epoch adds to a whole training run, side by side with Keras's ModelCheckpoint.

    python benchmarks/checkpoint_overhead.py [--mib 256] [--epochs 4] [--steps 60] [--rounds 3] [--dir DIR]

Trains one model of about ``--mib`` MiB (square Dense layers, SGD) for ``--epochs``
epochs of ``--steps`` batches, with

- no checkpoint (the anchor),
- ``ks.Checkpoint`` every epoch (async: training waits for the host copy only),
- Keras's ``ModelCheckpoint("m.keras")`` every epoch,
- and the same bytes written raw with fsync once per epoch from the training thread.

Runs are interleaved, ``--rounds`` times each (the best kept), so each sees the same disk
and CPU drift. Epochs of 60 batches (~14 s here) by default: with 30, runs of the same
script swung by 1-4 s on 2 cores, more than what is being measured. Prints each run's total seconds, what it adds over no checkpoint (as a
fraction of that run, and as a fraction of what Keras's ModelCheckpoint adds). Goals
(issue 15): ks.Checkpoint within 3% of no checkpoint, and at most a third of what
ModelCheckpoint(".keras") adds.
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

import kerasafe as ks  # noqa: E402
from checkpoint_blocking import build_model  # noqa: E402  (the same 256 MiB of square Dense layers)


class RawEveryEpoch(keras.callbacks.Callback):
    """The model's bytes written to one file with fsync at each epoch end: what the disk itself costs."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "wb") as f:
            for w in self.model.weights:
                f.write(memoryview(np.ascontiguousarray(np.asarray(w))).cast("B"))
            f.flush()
            os.fsync(f.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-bench-", dir=args.dir))
    try:
        model = build_model(args.mib)
        # Learning rate 0: the same work per step, and the random weights cannot blow up to inf.
        model.compile(keras.optimizers.SGD(0.0), "mse")
        width = model.inputs[0].shape[-1]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((args.steps * args.batch, width), dtype="float32")
        initial = [np.asarray(w) for w in model.weights]
        model.fit(x[: args.batch], x[: args.batch], epochs=1, verbose=0)  # compile once, outside every timing
        runs = {
            "no checkpoint": lambda d: [],
            "ks.Checkpoint (async)": lambda d: [ks.Checkpoint(d, keep_last=2)],
            "keras ModelCheckpoint .keras": lambda d: [keras.callbacks.ModelCheckpoint(str(d / "m.keras"))],
            "raw bytes + fsync": lambda d: [RawEveryEpoch(d / "raw.bin")],
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.rounds):
            for i, (name, make) in enumerate(runs.items()):
                for w, value in zip(model.weights, initial):
                    w.assign(value)
                folder = root / f"{r}-{i}"
                folder.mkdir()
                os.sync()
                start = time.perf_counter()
                model.fit(x, x, batch_size=args.batch, epochs=args.epochs, verbose=0, shuffle=False, callbacks=make(folder))
                times[name].append(time.perf_counter() - start)  # fit returns after the last write is committed
                shutil.rmtree(folder, ignore_errors=True)
        best = {name: min(t) for name, t in times.items()}
        anchor = best["no checkpoint"]
        keras_adds = best["keras ModelCheckpoint .keras"] - anchor
        mib = sum(np.asarray(w).nbytes for w in model.weights) / 2**20
        print(f"model {mib:.0f} MiB; {args.epochs} epochs of {args.steps} batches, a checkpoint each epoch; "
              f"backend {keras.backend.backend()}; best of {args.rounds} interleaved rounds; writing to {root}")
        print(f"{'run':<32}{'total s':>9}{'adds s':>9}{'x no ckpt':>11}{'x keras adds':>14}")
        for name, seconds in best.items():
            adds = seconds - anchor
            print(f"{name:<32}{seconds:>9.2f}{adds:>9.2f}{seconds / anchor:>11.3f}{adds / keras_adds if keras_adds > 0 else float('nan'):>14.2f}")
        ours = best["ks.Checkpoint (async)"] - anchor
        print(f"goals: ks.Checkpoint adds {ours / anchor:.1%} to the run (<= 3%) and {ours / keras_adds:.0%} of what "
              f"ModelCheckpoint('.keras') adds (<= 33%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
