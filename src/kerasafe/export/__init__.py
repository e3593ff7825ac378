"""``kerasafe export``: a model file to ONNX, LiteRT or a TensorFlow SavedModel, proven by running it.

The export runs in a child process on the TensorFlow backend (:mod:`.child`), whatever
backend this process uses, and is checked there by default: the exported file is run
in its own runtime (onnxruntime, the LiteRT interpreter, TensorFlow) on batches of 1
and 4 and compared with Keras's predictions (max abs/rel difference, top-1 agreement).
An export that does not run or differs by more than 1e-4 is an error naming the first
layer that breaks it, and nothing is left at the target: it is written under a
temporary name and put in place only once checked.

Example:
    >>> from kerasafe.export import export
    >>> report = export("run/model.keras", "model.onnx", to="onnx")  # doctest: +SKIP
    >>> report["ok"], report["max_abs"] < 1e-4  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from .. import errors, storage

# What each format needs installed, and the extra that brings it.
NEEDS = {
    "onnx": (("tensorflow", "onnx", "onnxruntime", "tf2onnx"), "onnx"),
    "litert": (("tensorflow",), "tensorflow"),
    "saved_model": (("tensorflow",), "tensorflow"),
    "openvino": (("tensorflow", "openvino"), "openvino"),
}
SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def export(model_path, out, *, to: str, check: bool = True, trust: bool = False, timeout: float = 1800) -> dict:
    """Export ``model_path`` to ``out`` in format ``to``; return the check's report (raise if it fails)."""
    if to not in NEEDS:
        raise errors.KerasafeError(out, f"a format among {sorted(NEEDS)}", repr(to), "pass --to onnx, litert, saved_model or openvino")
    if to == "openvino":
        raise errors.UnsupportedOperationError(out, "a format kerasafe exports and checks", "openvino (not done yet)",
                                               "export to onnx; OpenVINO reads ONNX files")
    missing = [m for m in NEEDS[to][0] if importlib.util.find_spec(m) is None]
    if missing:
        raise errors.MissingDependencyError(out, f"{', '.join(NEEDS[to][0])} to export {to}", f"{missing[0]} is not installed",
                                            f"pip install 'kerasafe[{NEEDS[to][1]}]'")
    storage.existing_path(model_path, "a model file to export")
    target = pathlib.Path(out)
    commit = storage.atomic_directory if to == "saved_model" else storage.atomic_file
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    with commit(target) as tmp:
        done = subprocess.run([sys.executable, "-m", "kerasafe.export.child", str(model_path), str(tmp), to,
                               "1" if check else "0", "0" if trust else "1"],
                              capture_output=True, text=True, env=env, timeout=timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise errors.KerasafeError(model_path, f"an export to {to}", f"the exporting process failed ({tail})",
                                       "run it again; if it persists, report the model")
        report = json.loads(lines[-1].replace(str(tmp), str(target)))  # errors name the target, not our temporary
        if "error" in report and "format" not in report:  # the file itself was refused (safe mode, damage)
            raise errors.KerasafeError(model_path, "a model file to export", report["error"], "see the message")
        if not report.get("ok", not check):
            layer = report.get("first_breaking_layer")
            found = report.get("error") or f"outputs {report.get('max_abs', 0):.3g} away from Keras's (max abs)"
            advice = (f"the first layer that breaks it: {layer}; " if layer else "") + \
                     "try another format, or rewrite that layer; nothing was written"
            raise errors.ExportCheckError(target, f"a {to} export that runs in its runtime and agrees with Keras within 1e-4",
                                          found, advice)
    report["path"] = str(target)
    return report
