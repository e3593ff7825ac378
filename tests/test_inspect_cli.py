"""inspect reads no framework; the CLI prints tables and JSON; convert goes between any two formats."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

import kerasafe as ks
from conftest import run_cli, run_python, savedmodel_writable
import zoo

FILES = ["m.keras", "m.h5", "m.weights.h5", "w.h5", "m.safetensors", "m.json", "m.yaml", "saved_model.model"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    model = zoo.trained("residual_cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in FILES:
            if name == "w.h5":
                ks.save_weights(model, d / name)
            else:
                ks.save(model, d / name, labels=["cat", "dog", "bird"], preprocessing={"size": [12, 12], "scale": 1 / 255})
        if savedmodel_writable():
            ks.save(model, d / "savedmodel", labels=["cat", "dog", "bird"])
    return d, model


def test_inspect_imports_no_framework(folder):
    d, _ = folder
    names = [n for n in FILES] + (["savedmodel"] if (d / "savedmodel").exists() else [])
    code = (
        "import sys, json, kerasafe as ks\n"
        f"names = {names!r}\n"
        f"out = [ks.inspect({str(d)!r} + '/' + n) for n in names]\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'jax', 'jaxlib', 'tensorflow', 'torch'))\n"
        "print(json.dumps({'bad': bad, 'formats': [o['format'] for o in out]}))\n"
    )
    result = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert result["bad"] == []
    assert result["formats"][:8] == ["keras", "h5", "weights.h5", "legacy-weights.h5", "safetensors", "json", "yaml", "keras"]


def test_inspect_fields(folder):
    d, model = folder
    info = ks.inspect(d / "m.keras")
    assert info["labels"] == ["cat", "dog", "bird"]
    assert info["preprocessing"]["size"] == [12, 12]
    assert info["total_params"] == model.count_params()
    assert info["optimizer"]["class"] == "SGD" and info["optimizer"]["iterations"] == 4
    assert info["backend"] == keras.backend.backend() and info["keras_version"]
    names = [l["name"] for l in info["layers"]]
    assert "conv1" in names and "probs" in names
    probs = next(l for l in info["layers"] if l["name"] == "probs")
    assert probs["output_shape"] == [None, 3] and probs["params"] == 15
    assert info["hashes"] == {**info["hashes"], "ok": True, "checked": True}
    assert info["dtypes"] and info["weights_bytes"] > 0


def test_inspect_plain_keras_file_without_manifest(tmp_path):
    model = zoo.trained("mlp")
    model.save(tmp_path / "plain.keras")
    info = ks.inspect(tmp_path / "plain.keras")
    assert info["total_params"] == model.count_params()
    assert [(l["name"], l["class"]) for l in info["layers"]] == [(l.name, type(l).__name__) for l in model.layers]
    assert [l["params"] for l in info["layers"]] == [l.count_params() for l in model.layers]
    assert info["hashes"]["recorded"] == 0


def test_cli_inspect_table_and_json(folder):
    d, model = folder
    proc = run_cli("inspect", d / "m.h5")
    assert proc.returncode == 0, proc.stderr
    for word in ("conv1", "BatchNormalization", "cat, dog, bird", f"{model.count_params():,}", "all"):
        assert word in proc.stdout, (word, proc.stdout)
    proc = run_cli("inspect", d / "m.safetensors", "--json")
    data = json.loads(proc.stdout)
    assert data["format"] == "safetensors" and data["labels"] == ["cat", "dog", "bird"]


def test_cli_verify(folder):
    d, _ = folder
    proc = run_cli("verify", d / "m.keras", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True


SOURCES = ["m.keras", "m.h5", "m.weights.h5", "m.safetensors", "saved_model.model"]
DESTS = ["out.keras", "out.h5", "out.weights.h5", "out.safetensors", "out.model", "out.json", "out.yaml"]


@pytest.mark.parametrize("src", SOURCES + ["savedmodel"])
def test_convert_between_any_two_formats(folder, src, tmp_path):
    d, model = folder
    if not (d / src).exists():
        pytest.skip("needs the tensorflow extra (and torch_xla on PyTorch)")
    x = zoo.inputs("residual_cnn", seed=11)
    for dst in DESTS + (["out_savedmodel"] if savedmodel_writable() else []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = ks.convert(d / src, tmp_path / dst)
            if dst.endswith((".json", ".yaml")):
                back = ks.load(out, weights=d / "m.keras")
            else:
                back = ks.load(out)
        np.testing.assert_array_equal(zoo.predict(back, x), zoo.predict(model, x))
        assert back.kerasafe.labels == ("cat", "dog", "bird"), (src, dst)


def test_convert_architecture_plus_weights_cli(folder, tmp_path):
    d, model = folder
    out = tmp_path / "joined.keras"
    proc = run_cli("convert", d / "m.json", "--weights", d / "w.h5", out)
    assert proc.returncode == 0, proc.stderr
    x = zoo.inputs("residual_cnn", seed=12)
    np.testing.assert_array_equal(zoo.predict(ks.load(out), x), zoo.predict(model, x))


def test_import_kerasafe_imports_no_framework():
    code = (
        "import sys, kerasafe as ks\n"
        "ks.save, ks.load, ks.inspect, ks.errors\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'jax', 'jaxlib', 'tensorflow', 'torch')))\n"
    )
    assert run_python(code).stdout.strip().splitlines()[-1] == "[]"


def test_savedmodel_without_tensorflow(tmp_path):
    """Writing needs the extra and says so; reading what kerasafe wrote does not need it."""
    if savedmodel_writable():
        model = zoo.trained("mlp")
        ks.save(model, tmp_path / "exported")
    code = (
        "import sys, warnings\n"
        "sys.modules['tensorflow'] = None  # as if the extra were not installed\n"
        "warnings.simplefilter('ignore')\n"
        "import kerasafe as ks, zoo\n"
        "from kerasafe import errors\n"
        f"d = {str(tmp_path)!r}\n"
        "try:\n"
        "    ks.save(zoo.trained('mlp'), d + '/mysavedmodel')\n"
        "except errors.MissingDependencyError as e:\n"
        "    print('ERROR', e)\n"
        "import os\n"
        "print('EXISTS', os.path.exists(d + '/mysavedmodel'))\n"
        "if os.path.exists(d + '/exported'):\n"
        "    print('LOADED', ks.load(d + '/exported').count_params())\n"
    )
    out = run_python(code, backend="jax").stdout
    assert "ERROR" in out and "kerasafe[tensorflow]" in out and "mysavedmodel" in out
    assert "EXISTS False" in out
    if (tmp_path / "exported").exists():
        assert f"LOADED {model.count_params()}" in out


def test_format_is_judged_by_content_not_name(folder, tmp_path):
    d, model = folder
    x = zoo.inputs("residual_cnn", seed=15)
    renames = {"m.keras": "a.h5", "m.h5": "b.keras", "m.weights.h5": "c.safetensors", "m.safetensors": "d.json", "m.yaml": "e.bin"}
    for src, dst in renames.items():
        (tmp_path / dst).write_bytes((d / src).read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if src == "m.yaml":
                loaded = ks.load(tmp_path / dst, weights=d / "m.keras")
            else:
                loaded = ks.load(tmp_path / dst)
        np.testing.assert_array_equal(zoo.predict(loaded, x), zoo.predict(model, x))
        assert ks.inspect(tmp_path / dst)["format"] == ks.inspect(d / src)["format"]


def test_large_files_leave_hashes_to_verify(folder, monkeypatch):
    from kerasafe import inspection

    d, _ = folder
    monkeypatch.setattr(inspection, "AUTO_VERIFY_BYTES", 1024)  # as if the file were gigabytes
    info = ks.inspect(d / "m.keras")
    assert info["hashes"]["checked"] is False and info["hashes"]["ok"] is None and info["hashes"]["recorded"] > 0
    assert ks.inspect(d / "m.keras", verify_hashes=True)["hashes"]["ok"] is True
    assert ks.verify(d / "m.keras")["ok"] is True


def test_saving_and_loading_on_jax_leave_tensorflow_unimported(tmp_path):
    """Keras's serializers import TensorFlow just to test types; kerasafe spares JAX users that."""
    code = (
        "import sys, warnings\nwarnings.simplefilter('ignore')\n"
        "import kerasafe as ks, zoo\n"
        f"d = {str(tmp_path)!r}\n"
        "m = zoo.trained('residual_cnn')\n"
        "for n in ['m.keras', 'm.h5', 'm.weights.h5', 'm.safetensors', 'm.json', 'm.yaml']:\n"
        "    ks.save(m, d + '/' + n)\n"
        "    ks.load(d + '/' + n, weights=(d + '/m.keras') if n.endswith(('json', 'yaml')) else None)\n"
        "ks.save_weights(m, d + '/w.h5'); ks.load_weights(m, d + '/w.h5')\n"
        "print('TF', 'tensorflow' in sys.modules)\n"
    )
    assert run_python(code, backend="jax").stdout.strip().splitlines()[-1] == "TF False"
