"""The main job on the embedded default data (scikit-learn's digits; nothing is downloaded).

Trains a small classifier with ``kerasafe train``'s pipeline, writes held-out
digits as PNG files, predicts them in the way ``kerasafe predict`` does (decoding
from the model file's manifest alone) with a 4x4 montage, then saves the model in
every format kerasafe writes and checks each loads back with bitwise-equal
predictions. Prints where everything went.

Example (about 20 s):
    >>> from kerasafe.demo import run
    >>> run("/tmp/kerasafe-demo", quiet=True)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import pathlib
import time
import warnings

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import errors

FORMATS = ("model.keras", "model.h5", "model.weights.h5", "model.safetensors", "saved_model.model", "savedmodel", "architecture.json")


def _write_digits(folder: pathlib.Path, ds, count: int = 16) -> list[pathlib.Path]:
    from PIL import Image

    from . import storage

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(count, len(ds.x_test))):
        path = folder / f"digit-{i:02d}-true-{ds.labels[ds.y_test[i]]}.png"
        with storage.atomic_file(path) as tmp:
            Image.fromarray(ds.x_test[i][:, :, 0].astype(np.uint8), "L").save(tmp, format="PNG")
        paths.append(path)
    return paths


def _formats_table(model, out: pathlib.Path, x) -> tuple[Table, int]:
    from . import api, inspection

    reference = model.predict(x, verbose=0)
    table = Table(title="the same model in every format")
    for col in ("file", "format", "bytes", "hashes", "labels", "predictions"):
        table.add_column(col)
    failures = 0
    for name in FORMATS:
        path = out / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                api.save(model, path)
            except errors.MissingDependencyError as exc:  # a SavedModel needs TensorFlow (and torch_xla on PyTorch)
                table.add_row(name, "savedmodel", "-", "-", "-", escape(f"skipped: {exc.advice}"))
                continue
            if name.endswith(".json"):
                loaded = api.load(path, weights=out / "model.keras")
            else:
                loaded = api.load(path)
        info = inspection.inspect(path)
        same = np.array_equal(loaded.predict(x, verbose=0), reference)
        failures += (not same) + (info["hashes"]["ok"] is False)
        table.add_row(
            name, info["format"], f"{info['file_bytes']:,}", {True: "ok", False: "MISMATCH", None: "-"}[info["hashes"]["ok"]],
            "yes" if loaded.kerasafe.labels == model.kerasafe.labels else "no", "bitwise equal" if same else "DIFFERENT",
        )
    return table, failures


def run(out_dir, *, quiet: bool = False, epochs: int = 8) -> int:
    from . import api
    from .pipeline.predict import predict
    from .pipeline.train import train

    console = Console(quiet=quiet, highlight=False)
    out = pathlib.Path(out_dir)
    started = time.perf_counter()
    console.print(f"training on scikit-learn's digits for {epochs} epochs -> {out / 'run'}")
    # resume=True: running the demo again continues (or, when done, reuses) its own run.
    result = train("digits", out / "run", epochs=epochs, batch_size=32, lr=3e-3, quiet=quiet, resume=True)
    console.print(f"test accuracy {result.test_accuracy:.3f} (report: {out / 'run' / 'report.txt'})")

    images = _write_digits(out / "new-digits", result.dataset)
    montage = out / "montage.png"
    results, failures = predict(result.model_path, [out / "new-digits"], montage=montage)
    table = Table(title=f"predicted {len(results)} held-out digits from PNG files")
    for col in ("file", "label", "score"):
        table.add_column(col)
    for r in results:
        table.add_row(pathlib.Path(r["input"]).name, r["label"], f"{r['score']:.3f}")
    console.print(table)
    right = sum(pathlib.Path(r["input"]).stem.endswith(f"true-{r['label']}") for r in results)
    console.print(f"{right}/{len(images)} correct")

    model = api.load(result.model_path)
    formats, format_failures = _formats_table(model, out / "formats", result.dataset.x_test[:64])
    console.print(formats)
    console.print(f"done in {time.perf_counter() - started:.1f} s. Everything is in {out.resolve()}:")
    for what, where in (("model", result.model_path), ("training plot", out / "run" / "plot.png"),
                        ("history", out / "run" / "history.csv"), ("checkpoints", out / "run" / "checkpoints"),
                        ("new digits", out / "new-digits"), ("montage", montage), ("every format", out / "formats")):
        console.print(f"  {what:<14} {where}")
    console.print(f"next: kerasafe inspect {result.model_path}   |   kerasafe predict {result.model_path} {out / 'new-digits'}")
    return 1 if failures or format_failures else 0
