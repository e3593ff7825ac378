"""Every kind of bad input gets a kerasafe error naming the file, and the CLI prints one line."""

from __future__ import annotations

import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from conftest import run_cli
import zoo


@pytest.fixture(scope="module")
def mlp():
    return zoo.trained("mlp")


@pytest.fixture
def saved(mlp, tmp_path):
    path = tmp_path / "m.keras"
    ks.save(mlp, path)
    return path


def _raises(exc_type, path, fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc_type) as info:
            fn(*args, **kwargs)
    assert str(path) in str(info.value), str(info.value)
    assert "expected" in str(info.value) and "found" in str(info.value)
    return info.value


def _cli_one_line(path, *cmd):
    proc = run_cli(*cmd)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_keras(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    _raises(errors.CorruptFileError, saved, ks.load, saved)
    _raises(errors.CorruptFileError, saved, ks.inspect, saved)
    _cli_one_line(saved, "inspect", saved)


def test_damaged_weights_member_is_caught(saved):
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("model.weights.h5")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra)
        size = info.compress_size
    data = bytearray(saved.read_bytes())
    for i in range(offset + size // 2, offset + size // 2 + 64):
        data[i] ^= 0xFF
    saved.write_bytes(bytes(data))
    _raises(errors.CorruptFileError, saved, ks.load, saved)
    report = ks.verify(saved)
    assert report["ok"] is False and report["members"]["model.weights.h5"] == "mismatch"
    assert ks.inspect(saved)["hashes"]["ok"] is False
    proc = run_cli("verify", saved)
    assert proc.returncode != 0 and "model.weights.h5" in proc.stderr


def test_zip_missing_members(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
    _raises(errors.CorruptFileError, path, ks.load, path)
    _cli_one_line(path, "inspect", path)


def test_zip_member_outside_target(saved, tmp_path):
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("../escaped.txt", "boom")
        dst.writestr("assets/../../escaped2.txt", "boom")
    _raises(errors.UnsafeContentError, evil, ks.load, evil)
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert not (tmp_path.parent / "escaped2.txt").exists()


def test_hdf5_without_expected_groups(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.arange(3)
    _raises(errors.CorruptFileError, path, ks.load, path)
    _raises(errors.CorruptFileError, path, ks.inspect, path)
    _cli_one_line(path, "inspect", path)


def test_hdf5_model_without_weights_group(mlp, tmp_path):
    path = tmp_path / "m.h5"
    ks.save(mlp, path)
    with h5py.File(path, "r+") as f:
        del f["model_weights"]
    _raises(errors.CorruptFileError, path, ks.load, path)


def test_hdf5_external_link_refused(mlp, tmp_path):
    path = tmp_path / "m.h5"
    ks.save(mlp, path)
    with h5py.File(tmp_path / "other.h5", "w") as o:
        o["data"] = np.zeros(3)
    with h5py.File(path, "r+") as f:
        f["model_weights/outside"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
    _raises(errors.UnsafeContentError, path, ks.load, path)


@pytest.mark.parametrize("target", ["w.h5", "w.weights.h5", "w.safetensors", "m.keras", "m.h5"])
def test_weights_that_do_not_fit(mlp, target, tmp_path):
    path = tmp_path / target
    if target.startswith("w."):
        ks.save_weights(mlp, path)
    else:
        ks.save(mlp, path)
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    _raises(errors.WeightsMismatchError, path, ks.load_weights, other, path)


def test_unknown_suffix_unrecognisable_content(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01 not a model at all" * 10)
    _raises(errors.UnrecognizedFormatError, path, ks.load, path)
    _cli_one_line(path, "inspect", path)


def test_missing_weights_file(mlp, tmp_path):
    ks.save(mlp, tmp_path / "arch.json")
    missing = tmp_path / "nope.h5"
    _raises(errors.FileMissingError, missing, ks.load, tmp_path / "arch.json", weights=missing)
    _cli_one_line(missing, "convert", tmp_path / "arch.json", tmp_path / "out.keras", "--weights", missing)


def test_missing_file(tmp_path):
    _raises(errors.FileMissingError, tmp_path / "nope.keras", ks.load, tmp_path / "nope.keras")
    _cli_one_line(tmp_path / "nope.keras", "inspect", tmp_path / "nope.keras")


def test_directory_where_a_file_is_expected(mlp, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    _raises(errors.UnrecognizedFormatError, folder, ks.load, folder)
    _raises(errors.UnrecognizedFormatError, folder, ks.load_weights, mlp, folder)
    taken = tmp_path / "m.keras"
    taken.mkdir()
    _raises(errors.WrongKindOfPathError, taken, ks.save, mlp, taken)
    _cli_one_line(folder, "inspect", folder)


def test_empty_file(tmp_path):
    for name in ("empty.keras", "empty.h5", "empty.json"):
        path = tmp_path / name
        path.write_bytes(b"")
        _raises(errors.CorruptFileError, path, ks.load, path)
    _cli_one_line(tmp_path / "empty.keras", "inspect", tmp_path / "empty.keras")


@pytest.mark.parametrize("target", ["m.h5", "m.safetensors", "m.weights.h5"])
def test_truncated_other_formats(mlp, target, tmp_path):
    path = tmp_path / target
    ks.save(mlp, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(errors.CorruptFileError, path, ks.load, path)


def test_weights_only_file_without_architecture(mlp, tmp_path):
    path = tmp_path / "plain.weights.h5"
    mlp.save_weights(path)
    err = _raises(errors.UnsupportedOperationError, path, ks.load, path)
    assert "ks.load('arch.json', weights=" in str(err)


def test_architecture_as_weights(mlp, tmp_path):
    ks.save(mlp, tmp_path / "arch.yaml")
    _raises(errors.UnsupportedOperationError, tmp_path / "arch.yaml", ks.load_weights, mlp, tmp_path / "arch.yaml")


def test_yaml_python_object_tag_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f"class_name: Sequential\nconfig: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    _raises(errors.UnsafeContentError, path, ks.load, path)
    _raises(errors.UnsafeContentError, path, ks.inspect, path)
    with pytest.raises(errors.UnsafeContentError):
        ks.from_yaml(path.read_text())
    assert not marker.exists()
    _cli_one_line(path, "inspect", path)


def test_yaml_python_tuple_becomes_list():
    from kerasafe.formats.architecture import parse_yaml

    assert parse_yaml("shape: !!python/tuple [null, 8]\n") == {"shape": [None, 8]}


def test_bad_labels_argument(mlp, tmp_path):
    with pytest.raises(errors.KerasafeError):
        ks.save(mlp, tmp_path / "m.keras", labels=["only", "two"])
    with pytest.raises(errors.KerasafeError):
        ks.save(mlp, tmp_path / "m.keras", metadata={"x": object()})
    assert not (tmp_path / "m.keras").exists()


def test_failed_save_leaves_old_file_intact(mlp, tmp_path):
    path = tmp_path / "m.keras"
    ks.save(mlp, path, labels=["a", "b", "c"])
    before = path.read_bytes()

    class Unsaveable(keras.layers.Layer):
        def get_config(self):
            raise RuntimeError("cannot serialize me")

    broken = keras.Sequential([keras.Input((3,)), Unsaveable()])
    for target in (path, tmp_path / "m.h5", tmp_path / "m.safetensors"):
        with pytest.raises(RuntimeError, match="cannot serialize me"):
            ks.save(broken, target)
    assert path.read_bytes() == before
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "m.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]
    assert ks.load(path).kerasafe.labels == ("a", "b", "c")


@pytest.mark.parametrize("target", ["lam.keras", "lam.h5"])
def test_lambda_bytecode_refused_in_safe_mode(tmp_path, target):
    marker = tmp_path / "ran"
    marker_path = str(marker)

    def touch_and_pass(x):
        open(marker_path, "w").close()
        return x

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: touch_and_pass(x) * 2.0)])
    path = tmp_path / target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ks.save(model, path)
    marker.unlink(missing_ok=True)
    err = _raises(errors.UnsafeContentError, path, ks.load, path)
    assert "safe_mode=False" in str(err)
    assert not marker.exists()


def test_a_failed_save_names_the_path_asked_for_not_its_temporary(tmp_path):
    """Saves write to a temporary sibling first; an error from inside the format must still name the
    file the user asked for, and leave nothing behind."""
    pytest.importorskip("tensorflow")
    if keras.backend.backend() != "jax":
        pytest.skip("the model below fails Keras's export on JAX (dynamic reshape through jax2tf)")
    model = keras.Sequential([keras.Input((None,)), keras.layers.Reshape((-1, 2))])
    target = tmp_path / "served"
    with pytest.raises(errors.UnsupportedOperationError) as info:
        ks.save(model, target)
    assert info.value.path == str(target), str(info.value)
    assert str(info.value).startswith(f"{target}: expected a model Keras can export")
    assert list(tmp_path.iterdir()) == []


def test_a_savedmodel_from_pytorch_without_torch_xla_says_what_is_missing(tmp_path):
    """Keras exports a SavedModel from the PyTorch backend through torch_xla; without it Keras fails
    deep inside torch.export with a message about dynamic shapes. kerasafe names what is missing."""
    import importlib.util

    from conftest import run_python

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the torch and tensorflow extras")
    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed: the export can work")
    code = (
        "import sys, keras, kerasafe as ks\n"
        "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
        "try:\n    ks.save(m, sys.argv[1])\n"
        "except ks.errors.MissingDependencyError as e:\n    print(e)\n"
    )
    out = run_python(["-c", code, str(tmp_path / "served")], backend="torch")
    assert out.stdout.strip().splitlines()[-1].startswith(f"{tmp_path / 'served'}: expected torch_xla"), out.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_graph_only_savedmodel_runs_nothing_in_safe_mode(tmp_path):
    """A SavedModel with no Keras model whose resource initializer writes a file: loading it would run that
    write inside TensorFlow, so safe mode refuses it (nothing is written); safe_mode=False is the caller's trust."""
    pytest.importorskip("tensorflow")
    from fuzzing.mutators import graph_writing_a_file

    marker = tmp_path / "marker"
    graph_writing_a_file(tmp_path / "hostile", marker)
    assert not marker.exists()
    for call in (lambda: ks.load(tmp_path / "hostile"), lambda: ks.load(tmp_path / "hostile", compile=False)):
        with pytest.raises(errors.UnsafeContentError, match="safe_mode=False") as caught:
            call()
        assert str(tmp_path / "hostile") in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()  # nothing in the file ran
    proc = run_cli("predict", tmp_path / "hostile", tmp_path / "x.csv")
    assert proc.returncode != 0 and "safe_mode=False" in proc.stderr and not marker.exists()
    model = ks.load(tmp_path / "hostile", safe_mode=False)  # trusted by the caller: it runs, as asked
    assert marker.read_text() == "ran" and np.asarray(model.predict(np.ones((2, 3), "float32"))).tolist() == [[2.0] * 3] * 2
