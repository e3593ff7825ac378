"""Each export format: write the artifact with the manifest where the format has room, and run it in its runtime.

Used by :mod:`.child` on the TensorFlow backend. ``out`` is the temporary path the
caller commits: a file for ONNX and LiteRT, a directory for a SavedModel and for
OpenVINO IR (``model.xml`` + ``model.bin``).

Example:
    >>> from kerasafe.export.targets import MANIFEST_KEYS
    >>> "labels" in MANIFEST_KEYS
    True
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import numpy as np

MANIFEST_KEYS = ("labels", "preprocessing", "metadata", "keras_version", "created")
# The name the manifest goes by in every format's metadata.
KEY = "kerasafe"
# OpenVINO IR inside the exported directory.
OPENVINO_XML = "model.xml"
# The name ending each format's file takes (SavedModel and OpenVINO IR are directories).
SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def _openvino():
    # OpenVINO's converter reports usage to Google Analytics unless a consent file says no; kerasafe sends
    # nothing anywhere. Without its telemetry package the converter uses its own no-op stub.
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def write(model, out: pathlib.Path, fmt: str, manifest: dict) -> str:
    """Export ``model`` to ``out``; return where the manifest went."""
    text = json.dumps({k: manifest.get(k) for k in MANIFEST_KEYS})
    if fmt == "onnx":
        model.export(str(out), format="onnx", verbose=False)
        import onnx

        proto = onnx.load(str(out))
        entry = proto.metadata_props.add()
        entry.key, entry.value = KEY, text
        onnx.save(proto, str(out))
        return f"ONNX metadata_props '{KEY}'"
    if fmt == "saved_model":
        model.export(str(out), format="tf_saved_model", verbose=False)
        extra = out / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / f"{KEY}.json").write_text(text, encoding="utf-8")
        return f"assets.extra/{KEY}.json"
    if fmt == "litert":
        # Keras wants a .tflite name; the target's name is the user's (and a temporary one here).
        with tempfile.TemporaryDirectory() as tmp:
            model.export(str(pathlib.Path(tmp) / "model.tflite"), format="litert", verbose=False)
            _litert_with_metadata(pathlib.Path(tmp) / "model.tflite", out, text)
        return f"LiteRT model metadata '{KEY}'"
    if fmt == "openvino":
        ov = _openvino()
        out.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            model.export(str(pathlib.Path(tmp) / OPENVINO_XML), format="openvino", verbose=False)
            ir = ov.Core().read_model(str(pathlib.Path(tmp) / OPENVINO_XML))
            ir.set_rt_info(text, [KEY])
            # save_model halves float weights to fp16 by default; the export keeps the model's own precision.
            ov.save_model(ir, str(out / OPENVINO_XML), compress_to_fp16=False)
        return f"OpenVINO rt_info '{KEY}' in {OPENVINO_XML}"
    raise ValueError(fmt)


def _litert_with_metadata(source: pathlib.Path, out: pathlib.Path, text: str) -> None:
    """Copy the LiteRT flatbuffer at ``source`` to ``out`` with the manifest as a named metadata buffer.

    A LiteRT model has a list of named metadata buffers (the converter puts its own there;
    tflite-support's "TFLITE_METADATA" is one more such entry). TensorFlow ships the schema's
    object API, so no extra package is needed.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(source.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = KEY.encode(), len(tree.buffers) - 1
    tree.metadata = [*(tree.metadata or []), entry]
    out.write_bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def read_manifest(path, fmt: str) -> dict | None:
    """The manifest an export carries (None where there is none): how a deployment reads labels back."""
    path = pathlib.Path(path)
    if fmt == "onnx":
        import onnx

        found = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get(KEY)
    elif fmt == "saved_model":
        file = path / "assets.extra" / f"{KEY}.json"
        found = file.read_text(encoding="utf-8") if file.exists() else None
    elif fmt == "litert":
        from tensorflow.lite.tools import flatbuffer_utils

        tree = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
        entries = {m.name.decode(): m.buffer for m in tree.metadata or []}
        found = bytes(tree.buffers[entries[KEY]].data).decode("utf-8") if KEY in entries else None
    elif fmt == "openvino":
        ir = _openvino().Core().read_model(str(path / OPENVINO_XML if path.is_dir() else path))
        found = ir.get_rt_info([KEY]).astype(str) if ir.has_rt_info([KEY]) else None
    else:
        raise ValueError(fmt)
    return json.loads(found) if found else None


def runner(out: pathlib.Path, fmt: str):
    """A function running the exported artifact in its own runtime on a batch."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if fmt == "saved_model":
        import tensorflow as tf

        artifact = tf.saved_model.load(str(out))
        return lambda x: np.asarray(artifact.serve(tf.constant(x)))
    if fmt == "litert":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(out))

        def run(x):
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, list(x.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

        return run
    if fmt == "openvino":
        # The check runs in float32: on CPUs with bfloat16 units OpenVINO's default is bfloat16, which
        # differs from Keras by ~1e-3 whatever the export (README, Export).
        compiled = _openvino().Core().compile_model(str(out / OPENVINO_XML), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda x: compiled(x)[0]
    raise ValueError(fmt)

