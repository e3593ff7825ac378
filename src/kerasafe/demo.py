"""The main job on the embedded default data (scikit-learn's digits; nothing is downloaded).

Trains a small classifier, saves it in every format kerasafe writes, inspects
each file without Keras, loads each back and checks that predictions are
bitwise equal to the model in memory. The train/predict pipeline will grow
this into ``kerasafe train digits``.

Example (takes ~20 s):
    >>> from kerasafe.demo import run
    >>> run("/tmp/kerasafe-demo", quiet=True)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import importlib.util
import pathlib
import time
import warnings

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

TARGETS = (
    ("model.keras", "save"),
    ("model.h5", "save"),
    ("model.weights.h5", "save"),
    ("model.safetensors", "save"),
    ("saved_model.model", "save"),
    ("savedmodel", "save"),
    ("architecture.json", "json+weights"),
    ("architecture.yaml", "yaml+weights"),
)


def _data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.reshape(len(digits.images), -1) / 16.0).astype("float32")
    y = digits.target.astype("int64")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order[:1500]], y[order[:1500]], x[order[1500:]], y[order[1500:]]


def run(out_dir, *, quiet: bool = False, epochs: int = 5) -> int:
    from . import _keras, api, inspection

    console = Console(quiet=quiet, highlight=False)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras = _keras.keras()
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = _data()

    model = keras.Sequential(
        [keras.Input((64,), name="pixels"), keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.1), keras.layers.Dense(10, activation="softmax")],
        name="digits_mlp",
    )
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    with console.status("training on digits"):
        model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    acc = float(model.evaluate(x_test, y_test, verbose=0)[1])
    console.print(f"trained {model.name} on digits ({len(x_train)} images, {epochs} epochs): test accuracy {acc:.3f}")
    reference = model.predict(x_test, verbose=0)

    labels = [str(i) for i in range(10)]
    preprocessing = {"kind": "image", "color_mode": "grayscale", "size": [8, 8], "scale": 1 / 16, "flatten": True}
    table = Table(title=f"every format, in {out}")
    for col in ("file", "format", "bytes", "hashes", "labels", "predictions"):
        table.add_column(col)
    failures = 0
    for name, how in TARGETS:
        path = out / name
        if name == "savedmodel" and importlib.util.find_spec("tensorflow") is None:
            table.add_row(name, "savedmodel", "-", "-", "-", escape("skipped: pip install 'kerasafe[tensorflow]'"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "save":
                api.save(model, path, labels=labels, preprocessing=preprocessing)
                loaded = api.load(path)
            else:
                api.save(model, path, labels=labels, preprocessing=preprocessing)
                weights = api.save_weights(model, out / "weights.h5")
                loaded = api.load(path, weights=weights)
        info = inspection.inspect(path)
        same = np.array_equal(loaded.predict(x_test, verbose=0), reference)
        failures += (not same) + (info["hashes"]["ok"] is False)
        table.add_row(
            name, info["format"], f"{info['file_bytes']:,}", {True: "ok", False: "MISMATCH", None: "-"}[info["hashes"]["ok"]],
            "yes" if list(loaded.kerasafe.labels or []) == labels else "no", "bitwise equal" if same else "DIFFERENT",
        )
    console.print(table)
    sample = loaded.predict(x_test[:8], verbose=0).argmax(axis=1)
    console.print(f"predicted {list(map(int, sample))} for digits {list(map(int, y_test[:8]))}")
    console.print(f"done in {time.perf_counter() - started:.1f} s; files in {out.resolve()}")
    console.print(f"try: kerasafe inspect {out / 'model.keras'}")
    return 1 if failures else 0
