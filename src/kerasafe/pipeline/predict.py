"""``kerasafe predict`` and ``kerasafe evaluate``: inputs decoded from the model file's manifest alone.

Example (after ``kerasafe train digits --out run``):
    >>> from kerasafe.pipeline.predict import predict
    >>> results, failures = predict("run/model.keras", ["new-digits/"])  # doctest: +SKIP
    >>> results[0]["label"], round(results[0]["score"], 3)  # doctest: +SKIP
    ('7', 0.998)
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

from .. import api, errors, manifest
from . import reports, streaming
from .data import IMAGE_SUFFIXES, decode_image, image_preprocessing, load_dataset, read_table

BATCH = 256  # files decoded and predicted together: thousands of images, a handful of predict calls
MONTAGE_TILES = 16  # a 4x4 grid


def _model_and_preprocessing(model_path, *, safe_mode: bool = True):
    model = api.load(model_path, compile=False, safe_mode=safe_mode)
    info = model.kerasafe
    labels = list(info.labels) if info.labels else None
    preprocessing = info.as_dict()["preprocessing"]
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if preprocessing is None and shape is not None and len(shape) == 3:
        # A model from elsewhere: size and color from its input; pixels given as 0-255.
        preprocessing = image_preprocessing(shape[:2], color_mode="grayscale" if shape[2] == 1 else "rgb")
        warnings.warn(f"{model_path}: no preprocessing recorded; decoding images to {shape} from the model's input", stacklevel=3)
    if preprocessing is None:
        raise errors.KerasafeError(model_path, "a model with preprocessing recorded (saved by kerasafe)", "none", "save it with ks.save(..., preprocessing=...)")
    # The file's own record is input like any other: a value predict cannot use is named, not tripped over.
    advice = "save the model again with ks.save(..., preprocessing=...) holding kerasafe's keys"
    if not isinstance(preprocessing, dict) or preprocessing.get("kind") not in manifest.PREPROCESSING_NEEDS:
        found = repr(preprocessing.get("kind")) if isinstance(preprocessing, dict) else type(preprocessing).__name__
        raise errors.KerasafeError(model_path, "preprocessing of kind 'image' or 'table'", found, advice)
    manifest.check_preprocessing(preprocessing, model_path, advice)
    if preprocessing["kind"] == "image" and shape is not None and shape[-1] not in (1, 3):
        raise errors.KerasafeError(
            model_path, "a model that takes 1 (grayscale) or 3 (rgb) channels", f"an input of {shape[-1]} channels",
            "kerasafe decodes image files to grayscale or RGB only",
        )
    return model, labels, preprocessing


def _gather(inputs, kind: str) -> list[pathlib.Path]:
    suffixes = {".csv", ".txt"} if kind == "table" else IMAGE_SUFFIXES
    files = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes))
        else:
            files.append(path)
    return files


def _rows(probabilities: np.ndarray, names: list[str], top_k: int) -> list[dict]:
    out = []
    for probs in probabilities:
        order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
        out.append({"label": names[order[0]], "score": float(probs[order[0]]), "index": int(order[0]),
                    "top": [[names[i], float(probs[i])] for i in order]})
    return out


def decoded_batches(files, preprocessing: dict, failures: list, size: int = BATCH):
    """Yield ``(paths, pixels)`` for up to ``size`` readable files at a time: one predict call each.

    Files that cannot be read are appended to ``failures`` as ``(path, message)``.
    """
    for start in range(0, len(files), size):
        kept, pixels = [], []
        for path in files[start:start + size]:
            try:
                pixels.append(decode_image(path, preprocessing))
                kept.append(path)
            except (errors.KerasafeError, OSError) as exc:
                failures.append((str(path), str(exc)))
        if pixels:
            yield kept, np.stack(pixels)


def predict(model_path, inputs, *, top_k: int = 1, montage=None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict every input; return ``(results, failures)`` where failures are ``(input, message)``.

    Results are ``{"input", "label", "score", "top"}``; a model without labels names
    classes by index. With ``montage``, the first 16 image inputs are drawn as a 4x4 grid (a warning
    says so when there are more); a table model refuses ``montage``.
    """
    model, labels, preprocessing = _model_and_preprocessing(model_path)
    n_out = int(model.outputs[0].shape[-1])
    if labels is None:
        warnings.warn(
            f"{model_path}: the model carries no labels, so classes are shown by index; "
            "save it with ks.save(model, path, labels=[...]) to name them",
            stacklevel=2,
        )
    names = labels or [str(i) for i in range(n_out)]
    if montage is not None and preprocessing["kind"] != "image":
        raise errors.UnsupportedOperationError(model_path, "an image model for --montage (a grid of the input images)",
                                               f"a model of {preprocessing['kind']} rows", "leave out --montage")
    files = _gather(inputs, preprocessing["kind"])
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    if preprocessing["kind"] == "table":
        for path in files:
            try:
                rows = read_table(path, preprocessing)
            except (errors.KerasafeError, OSError) as exc:
                failures.append((str(path), str(exc)))
                continue
            for line, row in enumerate(_rows(model.predict(rows, batch_size=BATCH, verbose=0), names, top_k), start=1):
                results.append({"input": f"{path}:{line}", **row})
        return results, failures
    for kept, pixels in decoded_batches(files, preprocessing, failures):
        probabilities = model.predict(pixels, batch_size=BATCH, verbose=0)
        results.extend({"input": str(p), **row} for p, row in zip(kept, _rows(probabilities, names, top_k)))
    if montage is not None and results:
        if len(results) > MONTAGE_TILES:
            warnings.warn(f"{montage}: the montage shows the first {MONTAGE_TILES} of {len(results)} predictions", stacklevel=2)
        tiles = [(pathlib.Path(r["input"]), f"{r['label']} {r['score']:.2f}", r["index"]) for r in results[:MONTAGE_TILES]]
        reports.write_montage(pathlib.Path(montage), tiles, len(names))
    return results, failures


def evaluate(model_path, dataset, *, label_column=None) -> dict:
    """Accuracy, per-class report and confusion matrix of a saved model on a data set.

    A folder with ``testing/`` is evaluated on that split, ``digits`` on its held-out
    split, anything else (class folders, a CSV) on all of it.
    """
    model, labels, preprocessing = _model_and_preprocessing(model_path)
    if str(dataset) == "digits":
        ds = load_dataset("digits")  # its held-out split, the same one training used
    elif preprocessing["kind"] == "image":
        ds = load_dataset(dataset, image_size=preprocessing["size"], color=preprocessing["color_mode"],
                          channel_order=preprocessing.get("channel_order", "rgb"),
                          interpolation=preprocessing.get("interpolation", "bilinear"), ratios=(0.0, 0.0, 1.0))
    else:
        ds = load_dataset(dataset, label_column=preprocessing.get("label_column"), ratios=(0.0, 0.0, 1.0))
    names = labels or [str(i) for i in range(int(model.outputs[0].shape[-1]))]
    unknown = [label for label in ds.labels if label not in names]
    if unknown:
        raise errors.KerasafeError(dataset, f"classes the model knows ({', '.join(names)})", f"class '{unknown[0]}'", "evaluate on data of the same classes")
    y_true = np.asarray([names.index(ds.labels[i]) for i in ds.y_test])
    x = ds.x_test
    if preprocessing["kind"] == "table" and list(preprocessing["columns"]) != list(ds.preprocessing["columns"]):
        raise errors.KerasafeError(dataset, f"columns {preprocessing['columns']}", f"columns {ds.preprocessing['columns']}", "use the training columns")
    y_pred = np.argmax(model.predict(streaming.readable(x, BATCH), batch_size=BATCH, verbose=0), axis=1)
    return {
        "dataset": str(dataset),
        "samples": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else None,
        "report": reports.classification_text(y_true, y_pred, names),
    }
