"""Each rename in kerasafe.legacy.to_keras2, tested with the text it came from."""

import json

from kerasafe.legacy.to_keras2 import LOSS_AND_METRIC_ALIASES, canonical_training_config

# What Keras 3.15 wrote as training_config for a two-output model compiled with
# loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"} (and cannot read back).
KERAS_3_15_TRAINING_CONFIG = (
    '{"loss": {"cls": "sparse_categorical_crossentropy", "reg": "mse"}, "loss_weights": null, "metrics": null, '
    '"weighted_metrics": null, "run_eagerly": false, "steps_per_execution": 1, "jit_compile": true, '
    '"optimizer_config": {"class_name": "Adam", "config": {"name": "adam", "learning_rate": 0.001}}}'
)


def test_keras_3_15_short_loss_names_become_full_names():
    fixed = canonical_training_config(json.loads(KERAS_3_15_TRAINING_CONFIG))
    assert fixed["loss"] == {"cls": "sparse_categorical_crossentropy", "reg": "mean_squared_error"}
    assert fixed["optimizer_config"]["class_name"] == "Adam"


def test_every_alias_is_read_back_by_keras():
    import keras  # noqa: F401  (the loader below is Keras's own)
    from keras.src import losses

    for short, full in LOSS_AND_METRIC_ALIASES.items():
        assert callable(losses.deserialize(full)), short
    fixed = canonical_training_config({"loss": "mae", "metrics": ["mse", {"class_name": "MeanSquaredError", "config": {}}]})
    assert fixed["loss"] == "mean_absolute_error"
    assert fixed["metrics"][0] == "mean_squared_error" and fixed["metrics"][1]["class_name"] == "MeanSquaredError"


# Layers as Keras 3.15's HDF5 writer put them in model_config (legacy config mode).
KERAS_3_15_INPUT = {"class_name": "InputLayer", "config": {"batch_shape": [None, 12, 12, 3], "dtype": "float32", "sparse": False, "ragged": False, "name": "image", "optional": False}, "name": "image", "inbound_nodes": []}
KERAS_3_15_RESIZING = {"class_name": "Resizing", "config": {"name": "resize", "trainable": True, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}, "data_format": "channels_last", "height": 8, "width": 8, "interpolation": "bilinear", "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False, "fill_mode": "constant", "fill_value": 0.0, "antialias": False}, "name": "resize", "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [None, 12, 12, 3], "dtype": "float32", "keras_history": ["image", 0, 0]}}], "kwargs": {"training": True}}]}
KERAS_3_15_DENSE = {"class_name": "Dense", "config": {"name": "probs", "trainable": True, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}, "units": 3, "activation": "softmax", "use_bias": True, "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None, "input_axes": None, "output_axes": None}, "registered_name": None}, "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}, "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None, "quantization_config": None}, "name": "probs", "inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32", "keras_history": ["resize", 0, 0]}}]], "kwargs": {}}]}


def _model(*layers):
    return {"class_name": "Functional", "config": {"name": "m", "trainable": True, "layers": list(layers), "input_layers": [["image", 0, 0]], "output_layers": [["probs", 0, 0]]}}


def test_keras3_config_becomes_keras2_config():
    from kerasafe.legacy.to_keras2 import model_config_to_keras2

    out, problems = model_config_to_keras2(_model(KERAS_3_15_INPUT, KERAS_3_15_RESIZING, KERAS_3_15_DENSE))
    assert problems == []
    inp, resize, dense = out["config"]["layers"]
    assert inp["config"]["batch_input_shape"] == [None, 12, 12, 3] and "batch_shape" not in inp["config"] and "optional" not in inp["config"]
    assert resize["config"]["dtype"] == "float32"
    assert not {"pad_to_aspect_ratio", "fill_mode", "fill_value", "data_format", "antialias"} & set(resize["config"])
    assert resize["inbound_nodes"] == [[["image", 0, 0, {"training": True}]]]
    assert dense["inbound_nodes"] == [[["resize", 0, 0, {}]]]
    assert "quantization_config" not in dense["config"]
    assert dense["config"]["kernel_initializer"]["config"] == {"seed": None}


def test_non_default_keras3_argument_is_reported_not_dropped():
    from kerasafe.legacy.to_keras2 import model_config_to_keras2

    padded = {**KERAS_3_15_RESIZING, "config": {**KERAS_3_15_RESIZING["config"], "pad_to_aspect_ratio": True}}
    out, problems = model_config_to_keras2(_model(KERAS_3_15_INPUT, padded, KERAS_3_15_DENSE))
    assert problems and "pad_to_aspect_ratio=True" in problems[0]
    assert out["config"]["layers"][1]["config"]["pad_to_aspect_ratio"] is True


def test_keras3_optimizer_arguments_dropped_for_tf_keras_legacy_optimizers():
    from kerasafe.legacy.to_keras2 import training_config_to_keras2

    out, problems = training_config_to_keras2(json.loads(KERAS_3_15_TRAINING_CONFIG.replace(
        '"learning_rate": 0.001}', '"learning_rate": 0.001, "weight_decay": null, "use_ema": false, "ema_momentum": 0.99, '
        '"ema_overwrite_frequency": null, "loss_scale_factor": null, "gradient_accumulation_steps": null}')))
    assert problems == []
    assert out["optimizer_config"]["config"] == {"name": "adam", "learning_rate": 0.001}
