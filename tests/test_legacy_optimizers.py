"""Optimizer state of old files: tf.keras 2's legacy optimizers and LossScaleOptimizers in every form, standalone Keras 2's by position.

Fixtures are written by the real tf_keras 2.21 (tests/fixtures/legacy/make_corpus.py optimizers)
and by Keras 2.0.6 (tests/fixtures/legacy/found/carnd_model.h5, a real project's file).
"""

from __future__ import annotations

import json
import pathlib
import warnings

import h5py
import numpy as np
import pytest

import kerasafe as ks
from conftest import TESTS
from kerasafe.legacy import optimizers as optimizer_translation

CORPUS = TESTS / "fixtures" / "legacy" / "tf_keras_2"
FOUND = TESTS / "fixtures" / "legacy" / "found"  # copies of files from ../shared (see its README)

LEGACY_OPTIMIZERS = ["Adam", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam"]


def _saved_optimizer_arrays(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        group = f["optimizer_weights"]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        return {n: group[n][()] for n in names}


def _load_legacy_optimizer_form(base: pathlib.Path, form: str):
    """The model of ``base`` (a legacy_opt_* or loss_scale_* file set) loaded from ``form``, compiled as saved."""
    if form != "json+ckpt":
        return ks.load(base.with_name(f"{base.name}.{form}"))
    # a user resuming from model.save_weights("name"): the architecture, compiled again, then the checkpoint
    import keras

    checkpoint = base.with_name(f"{base.name}.ckpt") / base.name
    model = ks.load(base.with_name(f"{base.name}.json"), weights=checkpoint)
    model.compile(keras.optimizers.deserialize(keras.optimizers.serialize(ks.load(base.with_name(f"{base.name}.h5")).optimizer)), "mse")
    return ks.load_weights(model, checkpoint)


@pytest.mark.parametrize("form", ["h5", "savedmodel", "json+ckpt"])
@pytest.mark.parametrize("name", LEGACY_OPTIMIZERS)
def test_tf_keras_legacy_optimizer_slots_land_in_keras3_slots(name, form):
    """tf.keras 2's legacy optimizers (every TF 2.0-2.10 model) name HDF5 slots "<Opt>/<layer>/<var>/<slot>:0"
    (rms, mg, accum_grad, ...) and keep TensorFlow checkpoint slots beside their variable (".OPTIMIZER_SLOT")."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing dropped
        model = _load_legacy_optimizer_form(CORPUS / f"legacy_opt_{name}", form)
    assert type(model.optimizer).__name__ == name
    slots = {"SGD": 1, "Adagrad": 1, "Adadelta": 2, "Adamax": 2, "Nadam": 2, "Adam": 3, "RMSprop": 3}[name]
    _assert_optimizer_as_saved(model, CORPUS / f"legacy_opt_{name}.h5", model.optimizer, slots)


LOSS_SCALE = ["v3_dynamic", "v3_fixed", "legacy_dynamic", "legacy_fixed"]


@pytest.mark.parametrize("form", ["h5", "savedmodel", "json+ckpt"])
@pytest.mark.parametrize("kind", LOSS_SCALE)
def test_tf_keras_loss_scale_optimizers_come_back_with_their_state(kind, form):
    """A mixed_float16 model under each of tf.keras 2's LossScaleOptimizers (around a 2.11+ or a legacy
    optimizer, dynamic or fixed) comes back compiled: a dynamic one as Keras 3's LossScaleOptimizer with
    its scale where the file kept it, a fixed one as the inner optimizer with that loss_scale_factor;
    every slot of the inner optimizer as saved; and it trains on."""
    base = CORPUS / f"loss_scale_{kind}"
    ref = np.load(base.with_name(f"{base.name}.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing dropped
        model = _load_legacy_optimizer_form(base, form)
    np.testing.assert_allclose(model.predict(ref["x"], verbose=0), ref["y"], rtol=1e-5, atol=1e-5)
    optimizer = model.optimizer
    if kind.endswith("dynamic"):
        assert type(optimizer).__name__ == "LossScaleOptimizer"
        assert (optimizer.initial_scale, optimizer.dynamic_growth_steps) == (2.0**20, 4)
        # tf.keras's .h5 has no loss scale (tf.keras starts it again too); its checkpoints do
        scale, steps = (optimizer.initial_scale, 0) if form == "h5" else (float(ref["loss_scale"]), int(ref["good_steps"]))
        assert (float(optimizer.dynamic_scale), int(optimizer.step_counter)) == (scale, steps)
        assert (scale, steps) != (2.0**20, 0) or form == "h5"  # the file's scale is not the initial one
        inner = optimizer.inner_optimizer
    else:
        assert type(optimizer).__name__ == "Adam" and optimizer.loss_scale_factor == 128.0
        inner = optimizer
    _assert_optimizer_as_saved(model, base.with_name(f"{base.name}.h5"), inner, 2)  # Adam's momentum and velocity
    before = [np.array(v) for v in model.trainable_variables]
    model.fit(ref["x"], ref["x"].sum(axis=1), epochs=2, batch_size=1, verbose=0)  # (a dynamic scale skips overflowing steps)
    assert 16 < int(inner.iterations) <= 32 and any(not np.array_equal(b, np.array(v)) for b, v in zip(before, model.trainable_variables))


def _assert_optimizer_as_saved(model, h5_path, optimizer, slots_per_variable: int) -> None:
    """Every array of the tf.keras optimizer state the ``.h5`` holds is in ``optimizer``'s Keras 3 slot for it.

    The ``.h5`` is the reference for the other forms too: the generator saved every form of a
    model at the same step. Names may be scoped by a LossScaleOptimizer ("cond_1/Adam/...", "m/...").
    """
    saved = _saved_optimizer_arrays(h5_path)
    weighted = [layer for layer in model.layers if layer.weights]
    file_layers, checked = [], 0  # the file's layers are dense_N, dense_N+1 (numbered across the script)
    for saved_name, value in saved.items():
        last = saved_name.split(":")[0].split("/")[-1]
        if last in ("iter", "iteration"):
            assert int(optimizer.iterations) == int(value) > 0
            continue
        if last == "momentum_cache":  # legacy Nadam's schedule product
            np.testing.assert_array_equal(np.asarray(optimizer._u_product), value)
            continue
        _, kind, path = optimizer_translation.optimizer_slot(optimizer_translation.unscoped_name(saved_name, type(optimizer).__name__))
        layer_name, variable_name = path.split("/")
        file_layers += [layer_name] if layer_name not in file_layers else []
        variable = getattr(weighted[file_layers.index(layer_name)], variable_name)
        np.testing.assert_array_equal(np.asarray(optimizer_translation.slot_variable(optimizer, variable, kind)), value)
        checked += 1
    assert checked == slots_per_variable * len(model.trainable_variables)


# TF 2.1-2.3 kept the scale as a "loss_scale" object (LossScaleOptimizerV1 / the experimental class)
OLD_LOSS_SCALES = {
    "dynamic": ({"class_name": "DynamicLossScale", "config": {"initial_loss_scale": 512.0, "increment_period": 7, "multiplier": 2.0}},
                {"class_name": "LossScaleOptimizer", "initial_scale": 512.0, "dynamic_growth_steps": 7}),
    "fixed": ({"class_name": "FixedLossScale", "config": {"loss_scale_value": 64.0}}, {"class_name": "SGD", "loss_scale_factor": 64.0}),
}


@pytest.mark.parametrize("class_name", optimizer_translation.LOSS_SCALE_OPTIMIZERS)
@pytest.mark.parametrize("scale", sorted(OLD_LOSS_SCALES))
def test_tf_keras_loss_scale_configs_of_every_era_build_in_keras3(class_name, scale):
    """Every LossScaleOptimizer config tf.keras 2 wrote (V1/V2/V3 class names; TF 2.3's "loss_scale" object or
    TF 2.4+'s dynamic/initial_scale) builds the Keras 3 optimizer with the same arithmetic, through Keras's own deserialize."""
    import keras

    loss_scale, expected = OLD_LOSS_SCALES[scale]
    configs = [{"optimizer": {"class_name": "SGD", "config": {"lr": 0.5, "momentum": 0.9}}, "loss_scale": loss_scale}]
    dynamic = expected["class_name"] == "LossScaleOptimizer"
    configs.append({"inner_optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.5, "momentum": 0.9}}, "dynamic": dynamic,
                    "initial_scale": expected.get("initial_scale", expected.get("loss_scale_factor")),
                    "dynamic_growth_steps": expected.get("dynamic_growth_steps")})
    for config in configs:
        built = keras.optimizers.deserialize(optimizer_translation.upgrade_optimizer_config({"class_name": class_name, "config": config}))
        assert type(built).__name__ == expected["class_name"]
        inner = getattr(built, "inner_optimizer", built)
        assert (type(inner).__name__, float(inner.learning_rate), inner.momentum) == ("SGD", 0.5, 0.9)
        for key, value in expected.items():
            assert key == "class_name" or getattr(built, key) == value


def test_tf_keras_loss_scale_multiplier_other_than_two_is_refused_as_tf_keras_did():
    config = {"optimizer": {"class_name": "SGD", "config": {}},
              "loss_scale": {"class_name": "DynamicLossScale", "config": {"initial_loss_scale": 8.0, "increment_period": 2, "multiplier": 4.0}}}
    with pytest.raises(ValueError, match="multiplier"):
        optimizer_translation.upgrade_optimizer_config({"class_name": "LossScaleOptimizerV1", "config": config})


def _carnd_without_lambda(tmp_path, *, optimizer=None, vhat_placeholders=False):
    """The real Keras 2.0.6 file with its (Python 3.5) Lambda swapped for the Rescaling it did,
    so its real optimizer_weights can be read; optionally the Keras 2.1.3+ Adam layout."""
    import shutil

    path = tmp_path / "carnd.h5"
    shutil.copy(FOUND / "carnd_model.h5", path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"][0] = {"class_name": "Rescaling", "config": {"name": "lambda_1", "scale": 1 / 127.5, "offset": -1.0,
                                                                     "batch_input_shape": [None, 64, 64, 3]}}
        f.attrs["model_config"] = json.dumps(config)
        if optimizer:
            training = json.loads(f.attrs["training_config"])
            training["optimizer_config"] = optimizer
            f.attrs["training_config"] = json.dumps(training)
        if vhat_placeholders:
            group = f["optimizer_weights"]
            names = list(group.attrs["weight_names"])
            for i in range(24, 36):
                group.create_dataset(f"Variable_{i}:0", data=np.zeros(1, "float32"))
                names.append(f"Variable_{i}:0".encode())
            group.attrs["weight_names"] = names
    return path


@pytest.mark.parametrize("vhat_placeholders", [False, True], ids=["keras-2.0", "keras-2.1.3+"])
def test_standalone_keras2_adam_state_is_placed_by_position(tmp_path, vhat_placeholders):
    """Keras 2 kept [iterations] + all m + all v (+ amsgrad placeholders), named only Variable_N."""
    path = _carnd_without_lambda(tmp_path, vhat_placeholders=vhat_placeholders)
    saved = list(_saved_optimizer_arrays(path).values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = ks.load(path)
    optimizer, trainable = model.optimizer, model.trainable_variables
    assert type(optimizer).__name__ == "Adam" and len(trainable) == 12
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert int(optimizer.iterations) == int(saved[0])
    for i, variable in enumerate(trainable):
        np.testing.assert_array_equal(np.asarray(optimizer_translation.slot_variable(optimizer, variable, "momentum")), saved[1 + i])
        np.testing.assert_array_equal(np.asarray(optimizer_translation.slot_variable(optimizer, variable, "velocity")), saved[13 + i])
    assert np.abs(saved[13]).sum() > 0  # real training state, not zeros


def test_standalone_keras2_state_that_does_not_map_warns_and_starts_fresh(tmp_path):
    path = _carnd_without_lambda(tmp_path, optimizer={"class_name": "SGD", "config": {"lr": 0.01, "momentum": 0.9}})
    with pytest.warns(UserWarning, match=r"carnd.h5: the saved optimizer state does not map onto SGD.*starts fresh"):
        model = ks.load(path)
    assert type(model.optimizer).__name__ == "SGD"
    assert all(not np.any(np.asarray(v)) for v in model.optimizer.variables if "momentum" in v.name)
