"""The tutorials' calls, as they wrote them for tf.keras 2, work through kerasafe (../shared/seed-examples/README.md)."""

from __future__ import annotations

import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from conftest import savedmodel_writable


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(np.ones((8, 4), "float32"), np.zeros(8, "int64"), verbose=0)
    return m


# save_format as tf.keras 2 took it -> the format kerasafe writes, whatever the name says
SAVE_FORMATS = [("h5", "model", "h5"), ("h5", "model.hdf5", "h5"), ("h5", "model.keras", "h5"), ("keras", "model.keras", "keras"),
                ("tf", "model", "savedmodel"), ("tf", "model.pb", "savedmodel")]


@pytest.mark.parametrize("save_format,name,written", SAVE_FORMATS)
def test_model_save_with_save_format(model, tmp_path, save_format, name, written):
    if written == "savedmodel" and not savedmodel_writable():
        pytest.skip("writing a SavedModel needs TensorFlow (pip install 'kerasafe[tensorflow]')")
    path = ks.save(model, tmp_path / name, save_format=save_format)
    assert ks.inspect(path)["format"] == written
    x = np.linspace(0, 1, 8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(ks.load(path).predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_save_weights_with_save_format_h5(model, tmp_path):
    path = ks.save_weights(model, tmp_path / "weights", save_format="h5")
    assert ks.inspect(path)["format"] == "legacy-weights.h5"
    assert ks.load_weights(model, path) is model


@pytest.mark.parametrize("call", [
    lambda m, p: ks.save(m, p / "m.keras", save_format="pb"),
    lambda m, p: ks.save(m, p / "m.keras", save_format="h5", format="keras"),
    lambda m, p: ks.save_weights(m, p / "w.h5", save_format="tf"),
    lambda m, p: ks.save_weights(m, p / "w.h5", save_format="keras"),
])
def test_a_save_format_kerasafe_cannot_honour_is_one_named_error(model, tmp_path, call):
    with pytest.raises(errors.KerasafeError, match="save_format") as caught:
        call(model, tmp_path)
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
