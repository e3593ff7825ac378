"""tf.keras 2 (the tf_keras package) opens the .h5 files kerasafe writes, with the same predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kerasafe as ks
import zoo

tf_keras = pytest.importorskip("tf_keras", reason="pip install tf-keras (the legacy extra) to test tf.keras 2 compatibility")


def _flat(out):
    if isinstance(out, dict):
        return np.concatenate([np.asarray(out[k]).reshape(len(out[k]), -1) for k in sorted(out)], axis=1)
    if isinstance(out, list):
        return np.concatenate([np.asarray(o).reshape(len(o), -1) for o in out], axis=1)
    return np.asarray(out)


@pytest.mark.parametrize("name", ["mlp", "residual_cnn", "multi_io"])
def test_tf_keras_opens_our_h5(name, tmp_path):
    model = zoo.trained(name)
    path = tmp_path / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "tf.keras 2 will not open" warning
        ks.save(model, path)
    old = tf_keras.models.load_model(path)
    x = zoo.inputs(name, seed=13)
    np.testing.assert_allclose(_flat(old.predict(x, verbose=0)), zoo.predict(model, x), atol=1e-5)
    assert old.optimizer is not None


def test_model_tf_keras_cannot_express_gets_a_warning(tmp_path):
    model = zoo.trained("nested")  # a nested model feeding another layer
    with pytest.warns(UserWarning, match="tf.keras 2 will not open"):
        ks.save(model, tmp_path / "m.h5")
    loaded = ks.load(tmp_path / "m.h5")
    x = zoo.inputs("nested", seed=14)
    np.testing.assert_array_equal(zoo.predict(loaded, x), zoo.predict(model, x))
