"""The direct-offset read path of .keras files: exact, checked against the file's length, hashed."""

from __future__ import annotations

import json
import os
import sys
import pathlib
import zipfile

import h5py
import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from kerasafe.formats import _direct

TESTS = pathlib.Path(__file__).parent


def _model():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    model.fit(np.ones((8, 6)), np.ones((8, 3)), verbose=0)
    return model


def _dataset_span(path, name="layers/dense/vars/0"):
    """Absolute file offset and size of a dataset inside the archive's weights member."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.h5")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        with zf.open(info) as member, h5py.File(member) as h5:
            ds = h5[name]
            return start + ds.id.get_offset(), ds.size * ds.dtype.itemsize


def _scribble(path, offset: int, size: int) -> None:
    """Change four bytes in the middle of the ``size`` bytes at ``offset`` (a weight's data, not a header)."""
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        f.write(b"\x00\x01\x02\x03")


@pytest.mark.parametrize("writer", ["kerasafe", "keras"])
def test_direct_read_gives_every_variable_bitwise(tmp_path, writer):
    model = _model()
    path = tmp_path / "m.keras"
    ks.save(model, path) if writer == "kerasafe" else keras.saving.save_model(model, path)
    loaded = ks.load(path)
    for a, b in zip(model.weights + model.optimizer.variables, loaded.weights + loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("writer", ["kerasafe", "keras"])
def test_damaged_weight_bytes_are_caught_by_the_hash_on_the_way(tmp_path, writer):
    """Bytes inside a kernel (not the HDF5 headers): kerasafe's xxh3, or for a Keras file the zip's CRC-32."""
    path = tmp_path / "m.keras"
    ks.save(_model(), path) if writer == "kerasafe" else keras.saving.save_model(_model(), path)
    offset, size = _dataset_span(path)
    _scribble(path, offset, size)
    with pytest.raises(errors.CorruptFileError, match="m.keras.*match what was written.*different hash"):
        ks.load(path)


def test_a_dataset_past_the_end_of_its_window_is_refused_before_reading(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("vars/0", data=np.zeros((256, 256), "float32"))
    size = os.path.getsize(path)
    with open(path, "rb") as raw, _direct.FileWindow(raw.fileno(), 0, size - 1000) as window, h5py.File(path) as h5:
        with pytest.raises(errors.CorruptFileError, match=r"past the end"):
            _direct.layout(h5, window.length, path)


def test_a_header_declaring_more_than_the_file_holds_is_refused(tmp_path):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("vars/0", shape=(2**20, 2**20), dtype="float32")  # declared, never written
    size = os.path.getsize(path)
    with open(path, "rb") as raw, _direct.FileWindow(raw.fileno(), 0, size) as window, h5py.File(path) as h5:
        with pytest.raises(errors.CorruptFileError, match="declaring"):
            _direct.layout(h5, window.length, path)


def test_a_compressed_member_still_loads_through_keras(tmp_path):
    model = _model()
    path = tmp_path / "m.keras"
    ks.save(model, path)
    packed = tmp_path / "packed.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    np.testing.assert_array_equal(np.asarray(ks.load(packed).weights[0]), np.asarray(model.weights[0]))


def test_an_archive_with_assets_loads_them(tmp_path):
    layer = keras.layers.StringLookup()
    layer.adapt(np.array([["a"], ["b"], ["c"], ["b"]]))  # an adapted vocabulary is saved as an asset
    model = keras.Sequential([keras.Input((1,), dtype="string"), layer])
    ks.save(model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert any(n.startswith("assets/") for n in zf.namelist())
    loaded = ks.load(tmp_path / "m.keras")
    assert loaded.layers[-1].get_vocabulary() == layer.get_vocabulary()


# --- .safetensors: written front to back by kerasafe, read at offsets ---------------------------

def test_kerasafe_safetensors_file_is_what_the_safetensors_library_reads(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    model = _model()
    ks.save(model, tmp_path / "m.safetensors")
    tensors = load_file(str(tmp_path / "m.safetensors"))
    assert len(tensors) == len(model.weights)
    for w in model.weights:
        np.testing.assert_array_equal(tensors[w.path], np.asarray(w))
        assert tensors[w.path].shape == tuple(w.shape)  # scalars stay scalars
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        assert "kerasafe" in f.metadata()


def _forge_header(path, change):
    import json

    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    change(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])


@pytest.mark.parametrize("damage", ["offsets past the end", "size not matching the shape", "header longer than the file"])
def test_a_safetensors_header_is_checked_against_the_file_before_reading(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    ks.save(_model(), path)
    if damage == "header longer than the file":
        data = bytearray(path.read_bytes())
        data[:8] = (len(data) * 4).to_bytes(8, "little")
        path.write_bytes(bytes(data))
    else:
        def change(header):
            entry = header[next(k for k in header if k.endswith("kernel"))]
            if damage == "offsets past the end":
                entry["data_offsets"] = [entry["data_offsets"][0], entry["data_offsets"][0] + 2**40]
                entry["shape"] = [2**38]
            else:
                entry["shape"] = [entry["shape"][0] + 1, entry["shape"][1]]
        _forge_header(path, change)
    with pytest.raises(errors.CorruptFileError, match="m.safetensors"):
        ks.load(path)


def test_damaged_safetensors_bytes_are_caught(tmp_path):
    path = tmp_path / "m.safetensors"
    ks.save(_model(), path)
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(errors.CorruptFileError, match="hash does not match"):
        ks.load(path)


# --- memory: a load holds the model once ------------------------------------------------------------

def _big_model(mib: int = 64):
    width = int((mib * 2**20 / 4 / 4) ** 0.5)
    model = keras.Sequential([keras.Input((width,))] + [keras.layers.Dense(width, use_bias=False, name=f"d{i}") for i in range(4)])
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.standard_normal(w.shape, dtype="float32"))
    return model


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux's VmHWM reset")
@pytest.mark.parametrize("backend, suffix, mib", [("jax", ".keras", 64), ("jax", ".safetensors", 64), ("jax", ".weights.h5", 64),
                                                  ("jax", ".h5", 64), ("torch", ".keras", 160)])
def test_loading_needs_no_memory_beyond_the_model(tmp_path, backend, suffix, mib):
    """Issue 6: at most 10% of the model's bytes above it. Variables are not initialized before the file
    fills them, and each array read from the file becomes the variable's memory (no copy). Not on
    TensorFlow, whose optimizers need every variable allocated (README, Speed). PyTorch with weights
    over 32 MiB: glibc gives those their own mapping, so a copy Keras makes of each shows."""
    from conftest import run_python

    path = tmp_path / f"m{suffix}"
    ks.save(_big_model(mib), path)
    out = run_python([str(TESTS / "load_memory_child.py"), str(path)], backend=backend)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["above"] <= 0.10 * result["model"], result


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux's VmHWM reset")
@pytest.mark.parametrize("suffix", [".keras", ".safetensors", ".weights.h5", ".h5"])
def test_loading_weights_into_a_model_gives_back_the_arrays_it_replaces(tmp_path, suffix):
    """Issue 6, load_weights into a model that has weights: each replaced array is freed, and glibc
    kept them (about the whole model above it, measured) until kerasafe trimmed the heap as it reads.
    64 weights of 1 MiB, so one weight in flight is well inside the 10%."""
    from conftest import run_python

    model = keras.Sequential([keras.Input((512,))] + [keras.layers.Dense(512, use_bias=False, name=f"d{i}") for i in range(64)])
    path = tmp_path / f"m{suffix}"
    ks.save(model, path)
    out = run_python([str(TESTS / "load_memory_child.py"), str(path), "into"], backend="jax")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["above"] <= 0.10 * result["model"], result


_COUNT_INITIALIZER_CALLS = """
import json, sys, keras, numpy as np, kerasafe as ks
calls = []

@keras.saving.register_keras_serializable("kerasafe_test")
class Counting(keras.initializers.Initializer):
    def __call__(self, shape, dtype=None):
        calls.append(list(shape))
        return keras.ops.zeros(shape, dtype=dtype)

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, kernel_initializer=Counting())])
model.compile("adam", "mse")
x, y = np.ones((4, 8), "float32"), np.zeros((4, 8), "float32")
model.fit(x, y, epochs=1, verbose=0)
result = {}
for suffix in (".keras", ".safetensors", ".weights.h5", ".h5"):
    path = sys.argv[1] + "/m" + suffix
    ks.save(model, path)
    calls.clear()
    loaded = ks.load(path)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(loaded.weights, model.weights))
    if loaded.optimizer is not None:  # the optimizer was built on the variables before the file filled them
        loaded.fit(x, y, epochs=1, verbose=0)
    result[suffix] = {"calls": list(calls), "same": same}


@keras.saving.register_keras_serializable("kerasafe_test")
class PartlySaved(keras.layers.Layer):  # saves one of its two variables: the other must be initialized
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")
        self.c = self.add_weight(shape=(), initializer=keras.initializers.Constant(3.0), trainable=False)

    def call(self, x):
        return x * self.w + self.c

    def save_own_variables(self, store):
        store["0"] = keras.ops.convert_to_numpy(self.w)

    def load_own_variables(self, store):
        self.w.assign(store["0"])


partly = keras.Sequential([keras.Input((3,)), PartlySaved()])
ks.save(partly, sys.argv[1] + "/partly.keras")
result["unsaved"] = float(keras.ops.convert_to_numpy(ks.load(sys.argv[1] + "/partly.keras").layers[0].c))
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_a_loaded_models_variables_are_not_initialized_first(tmp_path, backend):
    """No initializer runs for a variable the file fills, on any backend (on TensorFlow the variable
    gets a handle without a value, so the optimizer can be built on it and then trains); one the
    file does not fill is initialized."""
    from conftest import run_python

    out = run_python(["-c", _COUNT_INITIALIZER_CALLS, str(tmp_path)], backend=backend)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result.pop("unsaved") == 3.0  # a variable the file does not fill gets its initializer's value
    assert result == {suffix: {"calls": [], "same": True} for suffix in (".keras", ".safetensors", ".weights.h5", ".h5")}


_LOAD_UNDER_A_STRATEGY = """
import sys, keras, numpy as np, tensorflow as tf, kerasafe as ks
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
model.compile("adam", "mse")
x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
model.fit(x, y, epochs=1, verbose=0)
ks.save(model, sys.argv[1])
with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
    loaded = ks.load(sys.argv[1])
print(type(loaded.weights[0].value).__name__, all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(model.weights, loaded.weights)))
loaded.fit(x, y, epochs=1, verbose=0)
"""


def test_a_load_inside_a_tensorflow_distribution_strategy_makes_its_variables(tmp_path):
    """Under a tf.distribute strategy variables must be created through it (MirroredVariable): there the
    load leaves variable creation to Keras (a handle without a value made there is refused by TensorFlow)."""
    import importlib.util

    from conftest import run_python

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the tensorflow extra")
    out = run_python(["-c", _LOAD_UNDER_A_STRATEGY, str(tmp_path / "m.keras")], backend="tensorflow")
    assert out.stdout.strip().splitlines()[-1] == "MirroredVariable True", out.stdout


# --- .weights.h5 and load_weights: read at offsets, each array checked ---------------------------------

def test_weights_h5_written_by_keras_loads_bitwise_through_the_direct_path(tmp_path):
    model = _model()
    model.save_weights(tmp_path / "k.weights.h5")
    fresh = keras.models.clone_model(model)
    fresh.compile("adam", "mse")
    ks.load_weights(fresh, tmp_path / "k.weights.h5")
    for a, b in zip(model.weights + model.optimizer.variables, fresh.weights + fresh.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _damage_dataset(path, name):
    with h5py.File(path) as h5:
        offset, size = h5[name].id.get_offset(), h5[name].size * h5[name].dtype.itemsize
    _scribble(path, offset, size)


def test_damaged_weights_h5_bytes_are_caught_by_the_per_array_hash(tmp_path):
    model = _model()
    path = ks.save_weights(model, tmp_path / "m.weights.h5")
    _damage_dataset(path, "layers/dense/vars/0")
    with pytest.raises(errors.CorruptFileError, match=r"m.weights.h5.*'layers/dense/vars/0'.*different hash"):
        ks.load_weights(keras.models.clone_model(model), path)


def test_load_weights_from_a_keras_archive_checks_the_bytes(tmp_path):
    model = _model()
    path = tmp_path / "m.keras"
    ks.save(model, path)
    fresh = keras.models.clone_model(model)
    ks.load_weights(fresh, path)
    np.testing.assert_array_equal(np.asarray(fresh.weights[0]), np.asarray(model.weights[0]))
    ks.load_weights(fresh, path, by_name=True)  # through h5py, on a window of the same bytes
    offset, size = _dataset_span(path)
    _scribble(path, offset, size)
    with pytest.raises(errors.CorruptFileError, match="m.keras.*different hash"):
        ks.load_weights(keras.models.clone_model(model), path)


# --- legacy .h5: Keras's layout, streamed; kerasafe's own files read at offsets ----------------------------

def _h5_tree(path):
    """{name: (attribute names, shape, values)} of every group and dataset, kerasafe's manifest left out."""
    tree = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            attrs = tuple(sorted(k for k in obj.attrs if k != "kerasafe"))
            tree[name] = (attrs, obj.shape, obj[()].tolist()) if isinstance(obj, h5py.Dataset) else (attrs,)
        f.visititems(visit)
        tree["/"] = (tuple(sorted(k for k in f.attrs if k != "kerasafe")),)
    return tree


@pytest.mark.parametrize("kind", ["model", "weights"])
def test_streamed_h5_has_kerases_layout_and_values(tmp_path, kind):
    model = _model()
    if kind == "model":
        ks.save(model, tmp_path / "ours.h5")
        keras.saving.save_model(model, tmp_path / "keras.h5")
    else:
        ks.save_weights(model, tmp_path / "ours.h5")
        model.save_weights(tmp_path / "keras.weights.h5")  # Keras 3 writes only its own layout; the legacy one:
        with h5py.File(tmp_path / "keras.h5", "w") as f:
            keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group(f, model)
    assert _h5_tree(tmp_path / "ours.h5") == _h5_tree(tmp_path / "keras.h5")
    if kind == "model":
        plain = keras.saving.load_model(tmp_path / "ours.h5")
        for a, b in zip(model.weights + model.optimizer.variables, plain.weights + plain.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", ["model", "weights"])
def test_damaged_bytes_in_a_kerasafe_h5_are_caught_on_load(tmp_path, kind):
    model = _model()
    path = tmp_path / "m.h5"
    (ks.save if kind == "model" else ks.save_weights)(model, path)
    loaded = ks.load(path) if kind == "model" else ks.load_weights(keras.models.clone_model(model), path)
    np.testing.assert_array_equal(np.asarray(loaded.weights[0]), np.asarray(model.weights[0]))
    prefix = "model_weights/" if kind == "model" else ""
    _damage_dataset(path, f"{prefix}{model.layers[0].name}/{model.layers[0].kernel.path}")
    with pytest.raises(errors.CorruptFileError, match=r"m.h5.*different hash"):
        ks.load(path) if kind == "model" else ks.load_weights(keras.models.clone_model(model), path)


# --- the per-layer cost of Keras's state walk ----------------------------------------------------------

def test_a_state_walk_does_not_build_a_throwaway_layer_per_layer(tmp_path):
    """Keras 3.15 caches its attribute skip sets under one name and looks them up under another, so its
    walk built a reference Layer() for every layer it visited (1.7 s of a 2,000-layer load). kerasafe
    stores them where Keras looks: a save and a load_weights of 60 layers build a handful, not 60+.
    Counted with a profile hook (observes calls; changes nothing)."""
    model = keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(4) for _ in range(60)])
    path = ks.save(model, tmp_path / "m.keras")
    init = keras.layers.Layer.__init__.__code__
    counts = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is init:
            counts[-1] += 1

    for op in (lambda: ks.save(model, path), lambda: ks.load_weights(model, path)):
        counts.append(0)
        sys.setprofile(profile)
        try:
            op()
        finally:
            sys.setprofile(None)
    assert max(counts) < 10, counts
