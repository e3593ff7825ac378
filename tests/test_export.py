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

FORMATS = ["onnx", "saved_model", "litert", "openvino"]
OUT_NAMES = {"onnx": "m.onnx", "litert": "m.tflite", "saved_model": "m", "openvino": "m-openvino"}


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
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(inputs)  # named: the report names them
    x = keras.layers.GRU(6, name="gru")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), None


def _attention():
    inputs = keras.Input((5, 8))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    x = keras.layers.LayerNormalization()(x + inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), None


def _preprocessing():
    norm = keras.layers.Normalization(name="normalization")
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


# What the export has to rewrite for each format to run the model, as measured (Keras 3.15, TensorFlow 2.21,
# tf2onnx 1.17, OpenVINO 2026.4): without these rewrites these exports did not run, and the check named the layer.
# TensorFlow's LSTM/GRU loop is TensorList ops, which LiteRT's interpreter and OpenVINO's converter lack:
UNROLLED = {fmt: ["lstm (LSTM): unrolled over 5 time steps", "gru (GRU): unrolled over 5 time steps"] for fmt in ("litert", "openvino")}
# tf2onnx turned Normalization's captured mean/variance into graph inputs onnxruntime then asked for (embedded
# as constants for every format: harmless where the converter coped).
EMBEDDED = ["normalization (Normalization): mean embedded as a constant", "normalization (Normalization): variance embedded as a constant"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_zoo_model_exports_runs_and_agrees(zoo, tmp_path, fmt):
    """The zoo through one format in one TensorFlow process (tests/export_zoo_child.py: the export and check
    `kerasafe export` runs); each model must run in the format's runtime, agree with Keras, carry its manifest."""
    from conftest import TESTS, run_python
    from kerasafe.export.targets import SUFFIX, read_manifest

    done = run_python([str(TESTS / "export_zoo_child.py"), fmt, str(tmp_path), *(f"{n}={p}" for n, p in zoo.items())],
                      backend="tensorflow")
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(reports) == sorted(ZOO)
    for name, report in reports.items():
        assert report.get("ok") and report["max_abs"] <= 1e-4 and report["batches"] == [1, 4], (name, report)
        assert report["top1_agreement"] == 1.0, (name, report)
        wanted = (UNROLLED.get(fmt, []) if name == "lstm-gru" else []) + (EMBEDDED if name == "normalization" else [])
        assert report["rewrites"] == wanted, (name, report["rewrites"])
        # The labels and preprocessing travel in the file, in every format.
        out = tmp_path / (name + SUFFIX.get(fmt, ""))
        assert read_manifest(out, fmt)["labels"] == ["a", "b", "c"], name


def _recurrent_classes():
    """Every Keras layer that runs a recurrent loop (takes ``unroll``), and the two ways to wrap one."""
    import inspect

    found = [getattr(keras.layers, n) for n in dir(keras.layers) if inspect.isclass(getattr(keras.layers, n))]
    plain = [c for c in found if issubclass(c, keras.layers.Layer) and c is not keras.layers.RNN
             and "unroll" in inspect.signature(c.__init__).parameters]
    assert {c.__name__ for c in plain} >= {"SimpleRNN", "LSTM", "GRU"}
    return [lambda c=c: c(6, return_sequences=True) for c in plain] + [
        lambda: keras.layers.RNN(keras.layers.LSTMCell(6), return_sequences=True),
        lambda: keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)),
    ]


@pytest.mark.parametrize("fmt", ["litert", "openvino"])
def test_every_recurrent_layer_class_is_unrolled_where_the_runtime_needs_it(tmp_path, fmt):
    keras.utils.set_random_seed(2)
    x = inputs = keras.Input((5, 4))
    makers = _recurrent_classes()
    for make in makers:
        x = make()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling1D()(x)))
    path = ks.save(model, tmp_path / "rnn.keras", labels=["a", "b", "c"])
    done = run_cli("export", path, tmp_path / OUT_NAMES[fmt], "--to", fmt, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["max_abs"] <= 1e-4
    assert len(report["rewrites"]) == len(makers) and all("unrolled over 5 time steps" in r for r in report["rewrites"])


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


@pytest.mark.parametrize("fmt,hidden,extra", [("openvino", "openvino", "openvino"), ("onnx", "tf2onnx", "onnx"),
                                              ("litert", "tensorflow", "litert"), ("saved_model", "tensorflow", "tensorflow")])
def test_without_its_runtime_a_format_names_the_extra(tmp_path, zoo, fmt, hidden, extra):
    from conftest import run_python

    code = (f"import sys; sys.modules[{hidden!r}] = None\n"
            "from kerasafe import errors\nfrom kerasafe.export import export\n"
            f"try:\n    export({str(zoo['mlp'])!r}, {str(tmp_path / 'out')!r}, to={fmt!r})\n"
            "except errors.MissingDependencyError as exc:\n    print(exc)\n")
    printed = run_python(code).stdout
    assert f"pip install 'kerasafe[{extra}]'" in printed and hidden in printed, printed
    assert not (tmp_path / "out").exists()



def test_openvino_as_an_xml_and_bin_pair_never_replaces_files(tmp_path, zoo):
    """OUT ending in .xml: the pair is made beside it, .bin first; existing files are refused, not half replaced.
    A directory OUT is replaced whole."""
    from kerasafe.export.targets import read_manifest

    xml = tmp_path / "model.xml"
    assert run_cli("export", zoo["cnn-maxpool-batchnorm"], xml, "--to", "openvino").returncode == 0
    assert xml.with_suffix(".bin").stat().st_size > 0 and read_manifest(xml, "openvino")["labels"] == ["a", "b", "c"]
    before = {p.name: p.read_bytes() for p in (xml, xml.with_suffix(".bin"))}
    again = run_cli("export", zoo["mlp"], xml, "--to", "openvino")
    assert again.returncode != 0 and "model.xml" in again.stderr and "directory" in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in (xml, xml.with_suffix(".bin"))} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]  # no temporaries left
    folder = tmp_path / "ir"
    for name in ("mlp", "cnn-maxpool-batchnorm"):
        assert run_cli("export", zoo[name], folder, "--to", "openvino").returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml"]
