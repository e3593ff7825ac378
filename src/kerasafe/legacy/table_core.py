"""Core, activation, merging, reshaping, regularization and attention layers: the Keras 2 -> Keras 3 table.

Most of these classes kept their arguments; the entries are the ones that did not.
Each entry is tested with the tf.keras 2 text it came from (tests/test_legacy_layers.py).
"""

from __future__ import annotations

from .rules import Rule, refuse


def _input_layer(config: dict, name: str) -> dict:
    config.setdefault("batch_shape", config.pop("input_shape", None))
    if config.get("batch_shape") is None:
        config.pop("batch_shape")
    return config


def _lambda(config: dict, name: str) -> dict:
    """Keras 2 kept a Lambda's function as [bytecode, defaults, closure]; Keras 3 reads it as a ``__lambda__`` object.

    Whether such a layer may be built at all (it runs the file's code) is decided before
    any translation, by the safe-mode check; here it only changes shape.
    """
    for key in ("function", "output_shape"):
        value = config.get(key)
        kind = config.get(f"{key}_type" if key == "output_shape" else "function_type")
        if isinstance(value, list | tuple) and kind == "lambda":
            config[key] = {"class_name": "__lambda__", "config": {"code": value[0], "defaults": value[1], "closure": value[2]}}
    for key in ("function_type", "module", "output_shape_type", "output_shape_module"):
        config.pop(key, None)
    return config


def _dense_features(config: dict, name: str) -> dict:
    raise refuse(name, "DenseFeatures", "a layer of TensorFlow feature columns",
                 "rebuild the input step with Keras preprocessing layers (Normalization, StringLookup, "
                 "CategoryEncoding, or keras.utils.FeatureSpace) and load the other layers' weights by name")


def _learns_on_every_call(class_name: str):
    def rewrite(config: dict, name: str) -> dict:
        raise refuse(name, class_name, "a vocabulary that learns from every call, prediction included (its outputs depend on "
                     "all earlier calls)", "rebuild the input step with StringLookup and the vocabulary the layer had "
                     "(its 'vocabulary' variable in the TensorFlow checkpoint), then load the other layers' weights by name")
    return rewrite


RULES = {
    # tf.keras 2.13+ wrote batch_input_shape; type_spec described a composite tensor input.
    "InputLayer": Rule(renames={"batch_input_shape": "batch_shape"}, neutral={"type_spec": (None,)}, rewrite=_input_layer),
    # tf.keras's base Layer, used as a layer of its own, returned its input.
    "Layer": Rule(keras3_class="Identity"),
    "Lambda": Rule(rewrite=_lambda),
    # Keras 3 renamed the slope; same default (0.3) and the same computation.
    "LeakyReLU": Rule(renames={"alpha": "negative_slope"}),
    # Keras 3 has no ThresholdedReLU (and ReLU(threshold=) keeps x == theta, which it zeroed).
    "ThresholdedReLU": Rule(keras3_class="kerasafe>ThresholdedReLU"),
    # robust_masking chose how masked logits were pushed down (to the dtype's minimum instead of
    # -1e9): the probabilities agree unless a logit is near 1e9.
    "Softmax": Rule(ignored=("robust_masking",)),
    # The *_shape arguments let tf.keras build the layer before its first call; Keras 3 builds it on the call.
    "MultiHeadAttention": Rule(ignored=("softmax_robust_masking", "query_shape", "key_shape", "value_shape")),
    # Keras 2's Dropout-family noise_shape: None is the only value SpatialDropout ever wrote. Keras 3's
    # SpatialDropout takes no `trainable` (it has no weights, so the flag meant nothing).
    **{f"SpatialDropout{n}D": Rule(neutral={"noise_shape": (None,)}, ignored=("trainable",)) for n in (1, 2, 3)},
    # sparse=True only made training produce sparse gradients; input_length was a shape hint.
    "Embedding": Rule(ignored=("sparse", "input_length")),
    "DenseFeatures": Rule(rewrite=_dense_features),
    "DynamicLookup": Rule(rewrite=_learns_on_every_call("DynamicLookup")),
    "DynamicEmbedding": Rule(rewrite=_learns_on_every_call("DynamicEmbedding")),
    "RandomFourierFeatures": Rule(keras3_class="kerasafe>RandomFourierFeatures"),
    "TFOpLambda": Rule(keras3_class="kerasafe>TFOp", rewrite=lambda config, name: _tf_op(config, name, "TFOpLambda")),
    "SlicingOpLambda": Rule(keras3_class="kerasafe>TFOp", rewrite=lambda config, name: _tf_op(config, name, "SlicingOpLambda")),
    "TimeDistributed": Rule(nested=("layer",)),
    "Bidirectional": Rule(nested=("layer", "backward_layer")),
    "SpectralNormalization": Rule(nested=("layer",)),
}


def _tf_op(config: dict, name: str, class_name: str) -> dict:
    from .tf_functions import NO_KERAS3_EQUIVALENT, OPS

    function = config.get("function")
    if function not in OPS:
        why = f" ({NO_KERAS3_EQUIVALENT[function]})" if function in NO_KERAS3_EQUIVALENT else ""
        raise refuse(name, class_name, f"TensorFlow function '{function}'{why}",
                     "rebuild that part of the model with Keras 3 ops (keras.ops) and load the weights by name")
    return config
