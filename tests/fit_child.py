"""Child process for the resume tests: one training script, run again after each kill until it finishes.

    python fit_child.py CHECKPOINT_DIR OUT.npz SAVE_FREQ [SOURCE]

SOURCE (default ``arrays``) is what the script trains on: the same samples as arrays
(``arrays_split_weights``: with validation_split and class_weight), a PyDataset read by 2
worker threads, a tf.data pipeline, a grain pipeline, a DataLoader or a generator function.
"""

import math
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
import keras  # noqa: E402

import kerasafe as ks  # noqa: E402
from kerasafe import _keras  # noqa: E402

directory, out, save_freq = sys.argv[1], sys.argv[2], sys.argv[3]
source = sys.argv[4] if len(sys.argv) > 4 else "arrays"
_keras.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(1600, 16)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3] > 0.5).astype("int64")
model = keras.Sequential([
    keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.3),
    keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.3), keras.layers.Dense(3, activation="softmax"),
])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])


class Batches(keras.utils.PyDataset):
    def __len__(self):
        return math.ceil(len(x) / 16)

    def __getitem__(self, i):
        return x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]


def generator():
    for i in range(0, len(x), 16):
        yield x[i:i + 16] + 0.1, y[i:i + 16]


def data():
    """(x, y, arguments) for ks.fit."""
    if source == "arrays":
        return x, y, dict(epochs=40, shuffle=True)
    if source == "arrays_split_weights":
        return x, y, dict(epochs=12, validation_split=0.1, class_weight={0: 1.0, 1: 2.0, 2: 0.5})
    if source == "pydataset":
        return Batches(workers=2), None, dict(epochs=12)
    if source == "tfdata":
        import tensorflow as tf

        keras.utils.set_random_seed(0)  # what a reproducible script does; it seeds tf.data too
        pipeline = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(400).map(lambda a, b: (a * 2.0, b)).batch(16)
        return pipeline, None, dict(epochs=12)
    if source == "grain":
        import grain

        pairs = grain.MapDataset.source(list(zip(x, y))).shuffle(seed=4).map(lambda p: (p[0] * 2.0, p[1]))
        return pairs.batch(16, batch_fn=lambda b: tuple(np.stack(v) for v in zip(*b))), None, dict(epochs=12)
    if source == "dataloader":
        import torch

        torch.manual_seed(0)
        samples = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return torch.utils.data.DataLoader(samples, batch_size=16, shuffle=True), None, dict(epochs=12)
    if source == "generator":
        return generator, None, dict(epochs=12, steps_per_epoch=40)
    raise SystemExit(f"unknown source {source}")


inputs, targets, arguments = data()
if "validation_split" not in arguments:
    arguments["validation_data"] = (x[:40], y[:40])
print("ready", flush=True)
history = ks.fit(
    model, inputs, targets, checkpoint_dir=directory, batch_size=16 if targets is not None else None, seed=7, verbose=0,
    save_freq="epoch" if save_freq == "epoch" else int(save_freq), keep_last=2, **arguments,
)
np.savez(out, *[np.asarray(w) for w in model.weights], **{k: np.asarray(v) for k, v in history.history.items()})
print("done", flush=True)
