"""The export itself, in a process of its own on the TensorFlow backend (``python -m kerasafe.export.child``).

Keras exports ONNX, LiteRT, SavedModel and OpenVINO IR from the TensorFlow backend (on
JAX its ONNX path refuses models never called and writes files onnxruntime refuses;
LiteRT needs TensorFlow's converter), so whatever backend the user runs, the export runs
here: load the file (safe mode unless trusted), rewrite what the format cannot run into
what it can (:mod:`.rewrite`), export to ``OUT`` with the manifest in the file's metadata
(:mod:`.targets`), then check it: run the artifact in its own runtime on a batch of 1 and
of 4 and compare with Keras's predictions of the original model.
Prints one JSON line: the report, or ``{"error": ...}``.

    python -m kerasafe.export.child MODEL OUT FORMAT CHECK(0|1) SAFE(0|1)
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import warnings

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

from kerasafe.export import rewrite, targets  # noqa: E402

TOLERANCE = 1e-4


def sample_inputs(model, n: int, preprocessing: dict | None) -> np.ndarray:
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(n)
    dtype = str(model.inputs[0].dtype)
    if "int" in dtype:
        return rng.integers(0, 10, (n, *shape)).astype(dtype)
    if preprocessing and preprocessing.get("kind") == "image":
        return rng.integers(0, 256, (n, *shape)).astype("float32")  # pixels as the model takes them
    return rng.normal(size=(n, *shape)).astype("float32")


def compare(model, out: pathlib.Path, fmt: str, preprocessing) -> dict:
    run = targets.runner(out, fmt)
    report = {"batches": [], "max_abs": 0.0, "max_rel": 0.0, "top1_agreement": 1.0}
    agree, total = 0, 0
    for n in (1, 4):
        x = sample_inputs(model, n, preprocessing)
        expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
        got = np.asarray(run(x), dtype=np.float64).reshape(expected.shape)
        diff = np.abs(got - expected)
        report["max_abs"] = max(report["max_abs"], float(diff.max()))
        report["max_rel"] = max(report["max_rel"], float((diff / np.maximum(np.abs(expected), 1e-6)).max()))
        if expected.ndim == 2 and expected.shape[1] > 1:
            agree += int((got.argmax(1) == expected.argmax(1)).sum())
            total += n
        report["batches"].append(n)
    report["top1_agreement"] = agree / total if total else None
    report["ok"] = report["max_abs"] <= TOLERANCE
    return report


def first_breaking_layer(model, fmt: str, preprocessing) -> str | None:
    """Export the model cut after each layer in turn; the first cut that fails or disagrees names the layer."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            cut = keras.Model(model.inputs, layer.output)
            cut.predict(sample_inputs(model, 1, preprocessing), verbose=0)
            with tempfile.TemporaryDirectory() as tmp:
                path = pathlib.Path(tmp) / ("cut.onnx" if fmt == "onnx" else "cut.tflite" if fmt == "litert" else "cut")
                targets.write(cut, path, fmt, {})
                if not compare(cut, path, fmt, preprocessing)["ok"]:
                    return f"{layer.name} ({type(layer).__name__})"
        except Exception:  # noqa: BLE001 - the first layer whose export or run fails is the answer
            return f"{layer.name} ({type(layer).__name__})"
    return None


def run(model_path, out: pathlib.Path, fmt: str, check: bool = True, safe: bool = True) -> dict:
    """Export the model file at ``model_path`` to ``out`` and check it; the report (``{"error": ...}`` if refused)."""
    import kerasafe as ks
    from kerasafe import errors

    try:
        model = ks.load(model_path, compile=False, safe_mode=safe)
    except errors.KerasafeError as exc:
        return {"error": str(exc)}
    manifest = model.kerasafe.as_dict()
    preprocessing = manifest.get("preprocessing")
    model.predict(sample_inputs(model, 1, preprocessing), verbose=0)  # Keras exports only a model that has run
    report = {"format": fmt}
    exported = model
    try:
        exported, report["rewrites"] = rewrite.exportable(model, fmt)
        if exported is not model:  # a rewritten copy must have run too
            exported.predict(sample_inputs(model, 1, preprocessing), verbose=0)
        report["metadata"] = targets.write(exported, out, fmt, manifest)
    except Exception as exc:  # noqa: BLE001 - reported in one line with the layer that breaks it
        report.update(ok=False, error=f"the export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        report["first_breaking_layer"] = first_breaking_layer(exported, fmt, preprocessing)
        return report
    if check:
        try:
            report.update(compare(model, out, fmt, preprocessing))  # against the original, not the rewrite
        except Exception as exc:  # noqa: BLE001 - an export that does not run is a failure, never a success
            report.update(ok=False, error=f"the exported file does not run in its runtime ({type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0][:200]})")
        if not report["ok"]:
            report["first_breaking_layer"] = first_breaking_layer(exported, fmt, preprocessing)
    return report


def main() -> None:
    model_path, out, fmt, check, safe = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5] == "1"
    print(json.dumps(run(model_path, out, fmt, check, safe)))


if __name__ == "__main__":
    main()
