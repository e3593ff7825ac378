"""ks.fit takes model.fit's arguments with Keras's meaning, and resumes exactly with them.

Each argument is checked against plain ``model.fit`` on the same arrays (``shuffle=False``
on both sides, so the batches are the same): the history and the weights must agree.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from test_checkpoint import _Crash  # raises after N batches, like a crash between checkpoints


def _data(n=70, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.8).astype("int64")
    return x, y


def _model(seed=0, dropout_seed=None):
    """A small classifier with Dropout. ``dropout_seed``: for runs compared with ``model.fit``. Unseeded, on
    PyTorch, Dropout draws from torch's global generator, which Keras's torch trainer also draws from
    (a DataLoader seed per pass) and ks.fit, feeding its own batches, does not: the masks would differ."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2, seed=dropout_seed),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    return model


def _same(ours, theirs, a, b):
    assert sorted(ours.history) == sorted(theirs.history)
    for key in theirs.history:
        np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=0, atol=1e-6, err_msg=key)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=0, atol=1e-6)


x, y = _data()
ARGUMENTS = {
    "validation_split": dict(validation_split=0.2),
    "validation_split=None": dict(validation_split=None, validation_data=(x[:10], y[:10])),
    "class_weight": dict(class_weight={0: 1.0, 1: 3.0, 2: 0.5}),
    "sample_weight": dict(sample_weight=np.linspace(0.1, 2.0, len(x)).astype("float32")),
    "steps_per_epoch (passes cut into epochs)": dict(steps_per_epoch=3),
    "steps_per_epoch (more than one pass)": dict(steps_per_epoch=20),
    "initial_epoch": dict(initial_epoch=2),
    "validation_freq + validation_batch_size": dict(validation_data=(x[:20], y[:20]), validation_freq=2, validation_batch_size=7),
    "validation_split + class_weight + steps_per_epoch": dict(validation_split=0.2, class_weight={0: 2.0}, steps_per_epoch=2),
    "no batch_size, steps_per_epoch": dict(steps_per_epoch=4, batch_size=None),
}


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_each_argument_means_what_it_means_to_keras(tmp_path, name):
    kwargs = {"batch_size": 16, **ARGUMENTS[name]}
    keras_model = _model(dropout_seed=7)
    with pytest.warns(UserWarning) if kwargs.get("steps_per_epoch") == 20 else _nothing():
        theirs = keras_model.fit(x, y, epochs=5, shuffle=False, verbose=0, **kwargs)
    ours_model = _model(dropout_seed=7)
    ours = ks.fit(ours_model, x, y, checkpoint_dir=tmp_path, epochs=5, shuffle=False, verbose=0, **kwargs)
    _same(ours, theirs, ours_model, keras_model)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


RESUMED = {**ARGUMENTS, "save_weights_only (checkpoints are .weights.h5 files)": {"save_weights_only": True}}


@pytest.mark.parametrize("name", ["validation_split + class_weight + steps_per_epoch", "initial_epoch",
                                  "save_weights_only (checkpoints are .weights.h5 files)"])
def test_interrupted_and_run_again_ends_as_a_straight_run(tmp_path, name):
    kwargs = {"batch_size": 16, "save_freq": 2, **RESUMED[name]}
    straight_model = _model()
    straight = ks.fit(straight_model, x, y, checkpoint_dir=tmp_path / "straight", epochs=6, seed=5, verbose=0, **kwargs)
    for after in (5, 4):  # dies mid-epoch, then again in the run that resumed
        with pytest.raises(KeyboardInterrupt):
            ks.fit(_model(), x, y, checkpoint_dir=tmp_path / "resumed", epochs=6, seed=5, verbose=0,
                   callbacks=[_Crash(after)], **kwargs)
    resumed_model = _model()
    resumed = ks.fit(resumed_model, x, y, checkpoint_dir=tmp_path / "resumed", epochs=6, seed=5, verbose=0, **kwargs)
    written = {p.name for p in (tmp_path / "resumed").glob("ckpt-*/model.*")}
    assert written == ({"model.weights.h5"} if kwargs.get("save_weights_only") else {"model.keras"})
    for key in straight.history:
        np.testing.assert_array_equal(resumed.history[key], straight.history[key], err_msg=key)
    for a, b in zip(resumed_model.weights, straight_model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_two_runs_with_keras_global_seed_and_no_seed_are_bitwise_equal(tmp_path):
    """`keras.utils.set_random_seed(1)` at the top of a script, no seed= to ks.fit: the runs agree to the bit."""
    runs = []
    for run in ("first", "second"):
        model = _model(seed=1)
        history = ks.fit(model, x, y, checkpoint_dir=tmp_path / run, epochs=3, batch_size=16, verbose=0)
        runs.append((model, history))
    (a, ha), (b, hb) = runs
    assert ha.history == hb.history
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    from kerasafe.checkpoint import store

    kept = store.read_state(store.newest_intact(tmp_path / "first"))["extra"]["seed"]
    assert kept == 1  # derived from Keras's global seed, and kept for a resumed run


def test_without_any_seed_one_is_drawn_and_kept(tmp_path):
    from kerasafe import _keras
    from kerasafe.checkpoint import store
    from keras.src.backend.common import global_state

    model = _model()
    global_state.set_global_attribute("global_random_seed", None)  # as in a script that never set one
    assert _keras.global_random_seed() is None
    ks.fit(model, x, y, checkpoint_dir=tmp_path, epochs=1, batch_size=16, verbose=0)
    assert isinstance(store.read_state(store.newest_intact(tmp_path))["extra"]["seed"], int)


@pytest.mark.parametrize("kwargs,words", [
    (dict(class_weight={0: 2.0}, sample_weight=np.ones(len(x))), "class_weight"),
    (dict(validation_split=0.999), "validation_split"),
])
def test_arguments_keras_refuses_get_one_named_error(tmp_path, kwargs, words):
    with pytest.raises(errors.KerasafeError, match=words) as caught:
        ks.fit(_model(), x, y, checkpoint_dir=tmp_path / "run", epochs=1, verbose=0, **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
