"""A model loaded with compile=True continues training exactly where the saved one would have."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kerasafe as ks
import zoo
from conftest import savedmodel_writable


def _fit(model, name, epochs=1):
    history = model.fit(zoo.inputs(name, n=32, seed=2), zoo.targets(name, n=32, seed=2), batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return history.history["loss"]


@pytest.mark.parametrize("name", ["custom", "nested"])  # Adam and RMSprop; no Dropout, so steps are deterministic
@pytest.mark.parametrize("target", ["m.keras", "m.h5", "m.weights.h5", "savedmodel_dir"])
def test_resumed_training_matches_uninterrupted(name, target, tmp_path):
    if target == "savedmodel_dir" and not savedmodel_writable():
        pytest.skip("needs the tensorflow extra (and torch_xla on PyTorch)")
    model = zoo.trained(name, steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ks.save(model, tmp_path / target)
        resumed = ks.load(tmp_path / target, compile=True)
    loss_resumed = _fit(resumed, name)
    loss_original = _fit(model, name)
    assert loss_resumed == loss_original
    for a, b in zip(resumed.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_first_loss_after_reload_has_no_spike(tmp_path):
    """Tutorial 004: reload and train more; the loss goes on from where it was."""
    model = zoo.trained("mlp", steps=5)
    before = _fit(model, "mlp")[-1]
    ks.save(model, tmp_path / "m.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = ks.load(tmp_path / "m.h5")
    assert int(np.asarray(resumed.optimizer.iterations)) == int(np.asarray(model.optimizer.iterations))
    after = _fit(resumed, "mlp")[-1]
    assert after <= before * 1.1, (before, after)
