"""``kerasafe export``: a model file to ONNX, LiteRT, a TensorFlow SavedModel or OpenVINO IR, proven by running it.

The export runs in a child process on the TensorFlow backend (:mod:`.child`), whatever
backend this process uses, and is checked there by default: the exported file is run
in its own runtime (onnxruntime, the LiteRT interpreter, TensorFlow, OpenVINO) on
batches of 1 and 4 and compared with Keras's predictions (max abs/rel difference, top-1
agreement). An export that does not run or differs by more than 1e-4 is an error naming
the first layer that breaks it, and nothing is left at the target: it is written under a
temporary name and put in place only once checked.

OpenVINO IR is two files. ``OUT`` naming a directory gets ``model.xml`` and ``model.bin``
in it, committed in one step (replacing a previous export whole); ``OUT`` ending in
``.xml`` gets ``OUT`` and the ``.bin`` beside it, the ``.bin`` first, and is refused
where either exists (two files cannot be replaced in one step).

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
import shutil
import subprocess
import sys

from .. import errors, storage
from .targets import OPENVINO_XML

# What each format needs installed, and the extra that brings it.
NEEDS = {
    "onnx": (("tensorflow", "onnx", "onnxruntime", "tf2onnx"), "onnx"),
    "litert": (("tensorflow",), "litert"),
    "saved_model": (("tensorflow",), "tensorflow"),
    "openvino": (("tensorflow", "openvino"), "openvino"),
}


def export(model_path, out, *, to: str, check: bool = True, trust: bool = False, timeout: float = 1800) -> dict:
    """Export ``model_path`` to ``out`` in format ``to``; return the check's report (raise if it fails)."""
    if to not in NEEDS:
        raise errors.KerasafeError(out, f"a format among {sorted(NEEDS)}", repr(to), "pass --to onnx, litert, saved_model or openvino")
    missing = [m for m in NEEDS[to][0] if not _installed(m)]
    if missing:
        raise errors.MissingDependencyError(out, f"{', '.join(NEEDS[to][0])} to export {to}", f"{missing[0]} is not installed",
                                            f"pip install 'kerasafe[{NEEDS[to][1]}]'")
    storage.existing_path(model_path, "a model file to export")
    target = pathlib.Path(out)
    if to == "openvino" and target.suffix == ".xml":
        return _openvino_pair(model_path, target, check, trust, timeout)
    commit = storage.atomic_directory if to in ("saved_model", "openvino") else storage.atomic_file
    with commit(target) as tmp:
        report = _run_child(model_path, target, tmp, to, check, trust, timeout)
    report["path"] = str(target)
    return report


def _installed(module: str) -> bool:
    if module in sys.modules and sys.modules[module] is None:  # import blocked (Python's way to hide a package)
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _openvino_pair(model_path, xml: pathlib.Path, check: bool, trust: bool, timeout: float) -> dict:
    """OpenVINO IR as ``xml`` and the ``.bin`` beside it: never over existing files, the ``.bin`` put in place first."""
    binary = xml.with_suffix(".bin")
    for path in (xml, binary):  # refused before the export's minutes, and again as each file is made
        if os.path.lexists(path):
            raise _pair_exists(path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    storage.remove_stale_temporaries(xml)
    workdir = storage.temporary_sibling(xml)
    workdir.mkdir()
    try:
        report = _run_child(model_path, xml, workdir / "ir", "openvino", check, trust, timeout)
        made = []
        for source, path in ((workdir / "ir" / pathlib.Path(OPENVINO_XML).with_suffix(".bin"), binary), (workdir / "ir" / OPENVINO_XML, xml)):
            storage.fsync_file(source)
            try:
                os.link(source, path)  # fails where a file exists: nothing of the user's is replaced
            except FileExistsError:
                for done in made:
                    done.unlink()
                raise _pair_exists(path) from None
            made.append(path)
        storage.fsync_dir(xml.parent)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["path"] = str(xml)
    return report


def _pair_exists(path) -> errors.KerasafeError:
    return errors.UnsupportedOperationError(
        path, "new names for an OpenVINO IR pair (.xml and .bin)", "a file there already",
        "export to a directory name (replaced whole, in one step), or remove the old pair first")


def _run_child(model_path, target: pathlib.Path, tmp: pathlib.Path, to: str, check: bool, trust: bool, timeout: float) -> dict:
    """Export in the TensorFlow-backend child into ``tmp``; the report, or the error naming ``target``."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
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
    return report
