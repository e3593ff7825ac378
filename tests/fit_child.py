"""Child process for the resume tests: one training script, run again after each kill until it finishes.

    python fit_child.py CHECKPOINT_DIR OUT.npz SAVE_FREQ
"""

import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
import keras  # noqa: E402

import kerasafe as ks  # noqa: E402
from kerasafe import _keras  # noqa: E402

directory, out, save_freq = sys.argv[1], sys.argv[2], sys.argv[3]
_keras.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(1600, 16)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3] > 0.5).astype("int64")
model = keras.Sequential([
    keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.3),
    keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.3), keras.layers.Dense(3, activation="softmax"),
])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
print("ready", flush=True)
history = ks.fit(
    model, x, y, checkpoint_dir=directory, epochs=40, batch_size=16, seed=7, verbose=0,
    save_freq="epoch" if save_freq == "epoch" else int(save_freq), keep_last=2, validation_data=(x[:40], y[:40]),
)
np.savez(out, *[np.asarray(w) for w in model.weights], **{k: np.asarray(v) for k, v in history.history.items()})
print("done", flush=True)
