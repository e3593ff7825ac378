"""Keras 1 layer classes and arguments under their Keras 2 names (then the Keras 2 tables apply).

Each entry is tested with the Keras 1 text it came from (tests/test_legacy.py,
KERAS1_CASES), and a real Keras 1.1.1 project's files load through it.

Example:
    >>> keras1_to_keras2("Convolution2D", {"nb_filter": 8, "nb_row": 3, "nb_col": 5, "border_mode": "same"})
    ('Conv2D', {'padding': 'same', 'filters': 8, 'kernel_size': [3, 5]})
"""

from __future__ import annotations

from .rules import refuse

# Keras 1 layer classes under their Keras 2/3 names.
CLASS_RENAMES = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "AtrousConvolution2D": "Conv2D", "Deconvolution2D": "Conv2DTranspose",
}

# Keras 1 argument names -> Keras 2/3 ("*" applies to every layer class); None: no Keras 3
# meaning unless the value is 0/None. Values that change meaning are mapped in VALUE_RENAMES.
ARGUMENT_RENAMES = {
    "*": {
        "init": "kernel_initializer", "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
        "W_constraint": "kernel_constraint", "b_constraint": "bias_constraint", "bias": "use_bias",
        "border_mode": "padding", "subsample": "strides", "dim_ordering": "data_format", "nb_filter": "filters",
        "input_dtype": "__input_dtype__", "inner_init": "recurrent_initializer", "inner_activation": "recurrent_activation",
        "U_regularizer": "recurrent_regularizer", "U_constraint": "recurrent_constraint",
        "dropout_W": "dropout", "dropout_U": "recurrent_dropout", "atrous_rate": "dilation_rate",
    },
    "Dense": {"output_dim": "units"},
    "SimpleRNN": {"output_dim": "units"},
    "GRU": {"output_dim": "units"},
    "LSTM": {"output_dim": "units"},
    "Dropout": {"p": "rate"},
    "SpatialDropout1D": {"p": "rate"},
    "SpatialDropout2D": {"p": "rate"},
    "GaussianNoise": {"sigma": "stddev"},
    "GaussianDropout": {"p": "rate"},
    "MaxPooling1D": {"pool_length": "pool_size", "stride": "strides"},
    "AveragePooling1D": {"pool_length": "pool_size", "stride": "strides"},
    "Conv1D": {"filter_length": "kernel_size", "subsample_length": "strides"},
    # Keras 1's embedding dropout has no Keras 3 meaning at a non-zero value.
    "Embedding": {"dropout": None, "init": "embeddings_initializer", "W_regularizer": "embeddings_regularizer",
                  "W_constraint": "embeddings_constraint"},
}
VALUE_RENAMES = {"data_format": {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}}
# Keras 1 arguments that were hints, not meaning: dropping them changes no output.
# consume_less chose an RNN implementation; input_length a shape Keras 3 infers.
HINTS = ("consume_less", "input_length")


def keras1_to_keras2(class_name: str, config: dict) -> tuple[str, dict]:
    """A Keras 1 layer's (class, config) in Keras 2 terms; LegacyError names what has no meaning now."""
    config = dict(config)
    name = config.get("name", class_name)
    class_name = CLASS_RENAMES.get(class_name, class_name)
    if class_name == "Merge":
        raise refuse(name, "Merge", "Keras 1's Merge layer", "rebuild it with Add/Concatenate/... layers and load the weights by name")
    renames = {**ARGUMENT_RENAMES["*"], **ARGUMENT_RENAMES.get(class_name, {})}
    for old, new in renames.items():
        if old not in config:
            continue
        value = config.pop(old)
        if new is None:
            if value not in (None, 0, 0.0):
                raise refuse(name, class_name, f"argument '{old}'={value!r}", "rebuild this layer in Keras 3 and load the weights by name")
            continue
        config[new] = VALUE_RENAMES.get(new, {}).get(value, value) if isinstance(value, str) else value
    for hint in HINTS:
        config.pop(hint, None)
    if class_name in ("Conv2D", "Conv2DTranspose") and "nb_row" in config:
        config["kernel_size"] = [config.pop("nb_row"), config.pop("nb_col")]
    return class_name, config
