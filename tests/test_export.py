"""`kerasafe export`: the test suite's model zoo through every format, each export run in its own runtime and checked."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import kerasafe as ks
from conftest import run_cli
from kerasafe import errors
from kerasafe.pipeline.data import image_preprocessing

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.backend  # the export runs on the TensorFlow backend, in a child process

FORMATS = ["onnx", "saved_model", "litert"]


def _mlp():
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2),
                             keras.layers.Dense(3, activation="softmax")]), None


def _cnn():
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    return model, image_preprocessing((12, 12))


def _recurrent():
    inputs = keras.Input((5, 4))
    x = keras.layers.LSTM(8, return_sequences=True)(inputs)
    x = keras.layers.GRU(6)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), None


def _attention():
    inputs = keras.Input((5, 8))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    x = keras.layers.LayerNormalization()(x + inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), None


def _preprocessing():
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(3.0, 2.0, size=(64, 6)).astype("float32"))
    return keras.Sequential([keras.Input((6,)), norm, keras.layers.Dense(3, activation="softmax")]), None


ZOO = {"mlp": _mlp, "cnn-maxpool-batchnorm": _cnn, "lstm-gru": _recurrent, "attention": _attention, "normalization": _preprocessing}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    paths = {}
    for name, make in ZOO.items():
        keras.utils.set_random_seed(1)
        model, preprocessing = make()
        paths[name] = ks.save(model, root / f"{name}.keras", labels=["a", "b", "c"], preprocessing=preprocessing)
    return paths


# What the check finds, as measured (Keras 3.15, TensorFlow 2.21, tf2onnx 1.17): these exports do not run in
# their runtime, and the error must name the layer; every other pair must run and agree.
KNOWN_BREAKS = {
    # TensorFlow's LSTM/GRU loop becomes TensorList ops, which LiteRT's interpreter lacks (Flex delegate).
    ("lstm-gru", "litert"): "lstm (LSTM)",
    # tf2onnx turns Normalization's captured mean/variance into graph inputs onnxruntime then asks for.
    ("normalization", "onnx"): "normalization (Normalization)",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_exports_runs_and_agrees(zoo, tmp_path, name, fmt):
    out = tmp_path / {"onnx": "m.onnx", "litert": "m.tflite", "saved_model": "m"}[fmt]
    done = run_cli("export", zoo[name], out, "--to", fmt, "--json")
    if (name, fmt) in KNOWN_BREAKS:
        assert done.returncode != 0 and not out.exists()
        assert f"the first layer that breaks it: {KNOWN_BREAKS[name, fmt]}" in done.stderr and "Traceback" not in done.stderr
        return
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["max_abs"] <= 1e-4 and report["batches"] == [1, 4] and report["top1_agreement"] == 1.0
    assert out.exists()
    if fmt == "onnx":  # the labels and preprocessing travel in the file
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(meta["kerasafe"])["labels"] == ["a", "b", "c"]
    if fmt == "saved_model":
        assert json.loads((out / "assets.extra" / "kerasafe.json").read_text())["labels"] == ["a", "b", "c"]


def test_an_export_that_does_not_run_names_the_layer_and_writes_nothing(tmp_path):
    """CategoryEncoding becomes a TensorFlow op LiteRT's interpreter lacks: the check catches it."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.CategoryEncoding(num_tokens=10, output_mode="count"),
                              keras.layers.Dense(3, activation="softmax")])
    path = ks.save(model, tmp_path / "counts.keras")
    out = tmp_path / "counts.tflite"
    with pytest.raises(errors.ExportCheckError, match="category_encoding") as caught:
        from kerasafe.export import export

        export(path, out, to="litert")
    assert "\n" not in str(caught.value) and str(out) in str(caught.value) and "kerasafe-tmp" not in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob(".counts*"))
    done = run_cli("export", path, out, "--to", "litert")
    assert done.returncode != 0 and "category_encoding" in done.stderr and "Traceback" not in done.stderr
    # The same model to ONNX runs and agrees.
    assert run_cli("export", path, tmp_path / "counts.onnx", "--to", "onnx").returncode == 0


def test_bad_export_requests_are_one_line(tmp_path, zoo):
    bad = run_cli("export", tmp_path / "missing.keras", tmp_path / "m.onnx", "--to", "onnx")
    assert bad.returncode != 0 and "missing.keras" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_cli("export", zoo["mlp"], tmp_path / "m.x", "--to", "coreml")
    assert unknown.returncode == 2 and "coreml" in unknown.stderr and "Traceback" not in unknown.stderr
    openvino = run_cli("export", zoo["mlp"], tmp_path / "m.xml", "--to", "openvino")
    assert openvino.returncode != 0 and "openvino" in openvino.stderr and "Traceback" not in openvino.stderr
