"""Child process for the per-backend resume tests: one training script, crashed and run again.

    python resume_child.py CHECKPOINT_DIR OUT.npz [CRASH_AFTER_BATCHES]

With CRASH_AFTER_BATCHES the process ends with os._exit (no clean-up, like a kill)
after that many batches of this run; otherwise it trains to the end and writes the
weights and the history to OUT.npz.
"""

import os
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
import keras  # noqa: E402

import kerasafe as ks  # noqa: E402
from kerasafe import _keras  # noqa: E402

directory, out = sys.argv[1], sys.argv[2]
crash_after = int(sys.argv[3]) if len(sys.argv) > 3 else None


class Crash(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == crash_after:
            os._exit(17)


_keras.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(400, 12)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3] > 0.5).astype("int64")
model = keras.Sequential([
    keras.Input((12,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.3),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
history = ks.fit(
    model, x, y, checkpoint_dir=directory, epochs=4, batch_size=16, seed=7, verbose=0, save_freq=6,
    validation_data=(x[:40], y[:40]), callbacks=[Crash()] if crash_after else [],
)
np.savez(out, *[np.asarray(w) for w in model.weights], **{k: np.asarray(v) for k, v in history.history.items()})
print("backend", keras.backend.backend(), flush=True)
