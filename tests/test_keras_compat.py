"""Plain Keras opens what kerasafe writes, and kerasafe opens what plain Keras writes."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import kerasafe as ks
import zoo


@pytest.fixture(scope="module", params=sorted(zoo.BUILDERS))
def trained(request):
    return request.param, zoo.trained(request.param)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.mark.parametrize("target", ["m.keras", "m.h5"])
def test_plain_keras_loads_ours(trained, target, tmp_path):
    name, model = trained
    x = zoo.inputs(name, seed=7)
    ks.save(model, tmp_path / target, labels=None if name == "multi_io" else ["a", "b", "c"])
    loaded = _quiet(keras.saving.load_model, tmp_path / target)
    np.testing.assert_array_equal(zoo.predict(loaded, x), zoo.predict(model, x))


def test_plain_keras_loads_our_weights(trained, tmp_path):
    name, model = trained
    x = zoo.inputs(name, seed=8)
    ks.save_weights(model, tmp_path / "w.weights.h5")
    ks.save_weights(model, tmp_path / "legacy.h5")
    for path in ("w.weights.h5", "legacy.h5"):
        fresh = zoo.BUILDERS[name]()
        fresh.load_weights(tmp_path / path)
        np.testing.assert_array_equal(zoo.predict(fresh, x), zoo.predict(model, x))


@pytest.mark.parametrize("target", ["plain.keras", "plain.h5"])
def test_we_load_plain_keras(trained, target, tmp_path):
    name, model = trained
    x = zoo.inputs(name, seed=9)
    _quiet(model.save, tmp_path / target)
    loaded = _quiet(ks.load, tmp_path / target)
    np.testing.assert_array_equal(zoo.predict(loaded, x), zoo.predict(model, x))
    assert loaded.kerasafe.labels is None and loaded.kerasafe.format == target.split(".")[1]
    info = ks.inspect(tmp_path / target)
    assert info["written_by_kerasafe"] is False and info["hashes"]["recorded"] == 0
    assert info["total_params"] == model.count_params()


def test_we_load_plain_keras_weights_and_json(trained, tmp_path):
    name, model = trained
    x = zoo.inputs(name, seed=10)
    model.save_weights(tmp_path / "plain.weights.h5")
    (tmp_path / "plain.json").write_text(model.to_json())
    loaded = _quiet(ks.load, tmp_path / "plain.json", weights=tmp_path / "plain.weights.h5")
    np.testing.assert_array_equal(zoo.predict(loaded, x), zoo.predict(model, x))


def test_plain_keras_reads_our_json(tmp_path):
    model = zoo.trained("mlp")
    ks.save(model, tmp_path / "arch.json", labels=["a", "b", "c"])
    rebuilt = keras.models.model_from_json((tmp_path / "arch.json").read_text())
    assert rebuilt.count_params() == model.count_params()


def test_saving_does_not_change_the_users_model(tmp_path):
    """Keras's HDF5 writer drops the optimizer from the live compile config; ours must not."""
    model = zoo.trained("mlp")
    before = model.get_compile_config()
    ks.save(model, tmp_path / "m.h5")
    assert model.get_compile_config() == before
    ks.save(model, tmp_path / "m.keras")
    assert type(_quiet(ks.load, tmp_path / "m.keras").optimizer).__name__ == "Adam"


def _h5_tree(source) -> dict:
    """Every group's attributes and every dataset's dtype and bytes in an HDF5 file."""
    import h5py

    out = {}
    with h5py.File(source, "r") as h5:
        def visit(name, obj):
            attrs = {k: str(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = (str(obj.dtype), obj.shape, attrs, obj[()].tobytes())
            else:
                out[name] = attrs
        h5.visititems(visit)
    return out


def _weights_member(path):
    import io
    import zipfile

    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # every member's CRC-32 checks out
        return io.BytesIO(zf.read("model.weights.h5")), sorted(n for n in zf.namelist() if n.startswith("assets/"))


def _lookup_bf16_model():
    lookup = keras.layers.StringLookup()
    lookup.adapt(["cat", "dog", "bird"])  # an adapted vocabulary is saved as an asset file
    inputs = keras.Input((1,), dtype="string")
    x = keras.layers.Embedding(5, 3)(lookup(inputs))
    # Both big enough to be streamed around HDF5 rather than written by it (STREAM_MIN_BYTES).
    x = keras.layers.Dense(2048, dtype="bfloat16")(keras.layers.Flatten()(x))
    outputs = keras.layers.Dense(2)(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)  # so Keras saves the optimizer's slots too
    return model


@pytest.mark.parametrize("name", [*sorted(zoo.BUILDERS), "lookup_bf16"])
def test_our_keras_weights_member_matches_keras_layout(name, tmp_path):
    """kerasafe writes model.weights.h5 from host copies itself; the content must be what Keras writes."""
    model = _lookup_bf16_model() if name == "lookup_bf16" else zoo.trained(name)
    _quiet(keras.saving.save_model, model, tmp_path / "plain.keras")
    ks.save(model, tmp_path / "ours.keras")
    (theirs, their_assets), (ours, our_assets) = _weights_member(tmp_path / "plain.keras"), _weights_member(tmp_path / "ours.keras")
    assert _h5_tree(ours) == _h5_tree(theirs)
    assert our_assets == their_assets
    if name == "lookup_bf16":
        assert our_assets, "StringLookup keeps its vocabulary as an asset"
        loaded = _quiet(keras.saving.load_model, tmp_path / "ours.keras")
        def vocabulary(m):
            return [str(w) for w in next(la for la in m.layers if isinstance(la, keras.layers.StringLookup)).get_vocabulary()]
        assert vocabulary(loaded) == vocabulary(model) and len(vocabulary(model)) == 4
        for a, b in zip(loaded.weights, model.weights):
            np.testing.assert_array_equal(np.asarray(a, "float32"), np.asarray(b, "float32"))
