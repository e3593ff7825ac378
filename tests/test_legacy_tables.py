"""The layer tables (kerasafe/legacy/table_*.py), entry by entry, against the old texts they came from.

Every entry is exercised by the tf.keras 2 corpus (test_legacy_layers.py loads each
case in every form); here each entry is checked on its own: the old text it came
from translates to what Keras 3 takes, an argument Keras 3 dropped is refused at
every value that would change the result, and Keras 2.0-2.3's way of writing the
same configs goes through the same table and predicts what tf.keras predicted.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest

import legacy_corpus as corpus
from kerasafe import errors
from kerasafe.legacy import model_config, rules

TABLE = rules.table()


def _configs_in_corpus() -> dict[str, list[dict]]:
    """Every layer config in the corpus's JSON texts (nested ones included), by class."""
    import tarfile

    found: dict[str, list[dict]] = {}

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get("class_name"), str) and isinstance(value.get("config"), dict):
                found.setdefault(value["class_name"], []).append(value["config"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    with tarfile.open(corpus.ARCHIVE) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".json"):
                walk(json.loads(tar.extractfile(member).read()))
    return found


CORPUS_CONFIGS = _configs_in_corpus()


@pytest.mark.parametrize("class_name", sorted(TABLE))
def test_every_table_entry_came_from_a_text_in_the_corpus_or_keras_1(class_name):
    """An entry with no old text behind it would be a guess; each has one (Keras 1 names in table_keras1)."""
    assert class_name in CORPUS_CONFIGS, f"no tf.keras 2 text uses {class_name}"


@pytest.mark.parametrize("class_name", sorted(TABLE))
def test_each_entry_translates_its_old_texts_to_arguments_keras3_takes(class_name):
    import keras

    rule = TABLE[class_name]
    for config in CORPUS_CONFIGS.get(class_name, [])[:3]:
        try:
            out = rules.translate_layer(class_name, config)
        except rules.LegacyError as exc:
            assert class_name in str(exc) and config.get("name", "") in str(exc)  # refused, naming the layer
            continue
        new = out["config"]
        for key in (*rule.ignored, *rule.neutral, *rule.renames, *rules.IGNORED_EVERYWHERE):
            assert key not in new or key in rule.renames.values(), f"{class_name}: '{key}' left in {sorted(new)}"
        for old, renamed in rule.renames.items():
            assert (old in config) == (renamed in new)
        if out.get("module") == "keras.layers":
            assert isinstance(getattr(keras.layers, out["class_name"], None), type)


NEUTRAL = [(cls, key, values) for cls, rule in sorted(TABLE.items()) for key, values in rule.neutral.items()]


@pytest.mark.parametrize(("class_name", "key", "neutral"), NEUTRAL, ids=[f"{c}.{k}" for c, k, _ in NEUTRAL])
def test_a_dropped_argument_is_left_out_only_at_its_neutral_value(class_name, key, neutral):
    """Leaving out an argument Keras 3 lacks is safe at the value that changes nothing; any other value is refused by name."""
    base = dict(CORPUS_CONFIGS.get(class_name, [{"name": "layer"}])[0], name="the_layer")
    for value in neutral:
        assert key not in rules.translate_layer(class_name, dict(base, **{key: value}))["config"]
    changed = {None: "a_function", 1: 2, False: True, 0: 1}.get(neutral[0], "something else")
    with pytest.raises(rules.LegacyError) as info:
        rules.translate_layer(class_name, dict(base, **{key: changed}))
    assert "'the_layer'" in str(info.value) and class_name in str(info.value) and key in str(info.value)


def test_time_major_recurrent_layers_become_the_same_layer_wrapped_time_first():
    config = dict(CORPUS_CONFIGS["LSTM"][0], time_major=True, name="lstm_t")
    out = rules.translate_layer("LSTM", config)
    assert out["registered_name"] == "kerasafe>TimeMajor" and out["config"]["layer"]["class_name"] == "LSTM"
    assert "time_major" not in out["config"]["layer"]["config"]


def test_hard_sigmoid_keeps_its_keras_2_meaning_in_every_activation_argument():
    import keras

    from kerasafe import _keras

    config = {"class_name": "Sequential", "keras_version": "2.21.0", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "i", "batch_input_shape": [None, 3, 2], "dtype": "float32"}},
        {"class_name": "GRU", "config": {"name": "g", "units": 2, "recurrent_activation": "hard_sigmoid", "activation": "hard_sigmoid"}},
        {"class_name": "Activation", "config": {"name": "a", "activation": "hard_sigmoid"}}]}}
    model = _keras.legacy_model_from_config(model_config.upgrade_model_config(config))
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], "float32")
    keras2 = np.clip(0.2 * x + 0.5, 0, 1)
    for function in (model.layers[0].cell.recurrent_activation, model.layers[0].cell.activation, model.layers[1].activation):
        np.testing.assert_allclose(np.asarray(function(x)), keras2, atol=1e-7)
    assert not np.allclose(np.asarray(keras.activations.hard_sigmoid(x)), keras2)  # Keras 3's differs


# --- Keras 2.0-2.3: the same classes as standalone Keras 2 wrote them -------------------------------------

# Classes standalone Keras 2.3 had (keras/layers/*.py of 2.3.1); the rest came with tf.keras.
KERAS_2_3_CLASSES = {
    "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector", "Masking", "ActivityRegularization",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose",
    "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv2D", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "LocallyConnected1D", "LocallyConnected2D", "SimpleRNN", "GRU", "LSTM", "RNN",
    "SimpleRNNCell", "GRUCell", "LSTMCell", "StackedRNNCells", "ConvLSTM2D", "Embedding", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Concatenate", "Dot", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Softmax",
    "ReLU", "BatchNormalization", "GaussianNoise", "GaussianDropout", "AlphaDropout", "TimeDistributed", "Bidirectional",
    "InputLayer", "Sequential", "Model",
}
# Arguments standalone Keras 2.3 did not have for these classes (tf.keras added them), at the value that
# means what Keras 2.3 did; a case using another value is not one Keras 2.3 could have written.
TF_KERAS_ONLY = {"groups": 1, "time_major": False, "keepdims": False, "renorm": False, "renorm_clipping": None,
                 "renorm_momentum": 0.99, "fused": None, "virtual_batch_size": None, "adjustment": None,
                 "noise_shape": None, "seed": None, "zero_output_for_mask": False, "batch_size": None,
                 "ragged": False, "sparse": False}


def _as_keras_2_3(value):
    """A tf.keras 2.21 config written the way standalone Keras 2.2/2.3 wrote it.

    Standalone Keras wrote no module/registered_name/build_config, initializers without a
    module and Glorot's as the VarianceScaling it was, a Sequential's config as a bare list
    of layers with the input shape on the first, and "Model" for a functional model.
    """
    if isinstance(value, list):
        return [_as_keras_2_3(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _as_keras_2_3(v) for k, v in value.items() if k not in ("module", "registered_name", "build_config", "shared_object_id")}
    if value.get("class_name") == "GlorotUniform":
        value = {"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    if value.get("class_name") == "Functional":
        value["class_name"] = "Model"
    if isinstance(value.get("config"), dict):
        for key, neutral in TF_KERAS_ONLY.items():
            if value["config"].get(key, neutral) == neutral:
                value["config"].pop(key, None)
    return value


def _keras_2_3_could_write(name: str) -> bool:
    """No argument Keras 2.3 lacked at a value other than the one that meant what Keras 2.3 did."""
    import tarfile

    with tarfile.open(corpus.ARCHIVE) as tar:
        config = json.loads(tar.extractfile(f"layers/{name}.json").read())
    return not any(key in c for c in _layer_configs(_as_keras_2_3(config)) for key in TF_KERAS_ONLY)


def _layer_configs(value):
    if isinstance(value, dict):
        if isinstance(value.get("config"), dict):
            yield value["config"]
        for v in value.values():
            yield from _layer_configs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _layer_configs(v)


KERAS_2_CASES = sorted(
    name for name, case in corpus.CASES.items()
    if set(case["classes"]) <= KERAS_2_3_CLASSES | {"Functional"} and name not in corpus.REFUSED
    and {"json", "-weights.h5"} <= {f for f, ok in case["forms"].items() if ok is True}
    and "bilinear" not in name  # UpSampling2D's interpolation came with Keras 2.2.3; the rest is in TF_KERAS_ONLY
    and _keras_2_3_could_write(name)
)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return corpus.extract(tmp_path_factory.mktemp("legacy-corpus-k2"))


def test_the_keras_2_cases_span_every_family():
    covered = {c for name in KERAS_2_CASES for c in corpus.CASES[name]["classes"]}
    assert {"LSTM", "GRU", "Conv2D", "BatchNormalization", "Embedding", "Bidirectional", "LocallyConnected2D", "Dot",
            "PReLU", "Conv2DTranspose", "SeparableConv2D", "UpSampling2D", "Concatenate"} <= covered, covered
    assert len(KERAS_2_CASES) >= 60


@pytest.mark.parametrize("name", KERAS_2_CASES)
def test_keras_2_3_texts_of_the_same_models_predict_as_tf_keras_did(corpus_dir, name, tmp_path):
    config = json.loads((corpus_dir / f"{name}.json").read_text())
    old = _as_keras_2_3(copy.deepcopy(config))
    old["keras_version"], old["backend"] = "2.2.4", "tensorflow"
    if old["class_name"] == "Sequential":
        # Keras 2.0-2.2.2 wrote the bare list, the input shape on the first layer
        old["config"] = _input_on_first_layer(old["config"]["layers"], "dtype")
    _assert_predicts_as_tf_keras(corpus_dir, name, tmp_path, old)


def _input_on_first_layer(layers: list, dtype_key: str) -> list:
    """A Sequential's layers as Keras 1/2.2 wrote them: no InputLayer, its shape and dtype on the first layer."""
    if layers and layers[0]["class_name"] == "InputLayer":
        first = layers.pop(0)["config"]
        layers[0]["config"]["batch_input_shape"] = first["batch_input_shape"]
        layers[0]["config"].setdefault(dtype_key, first.get("dtype", "float32"))
    return layers


def _assert_predicts_as_tf_keras(corpus_dir, name: str, tmp_path, old: dict) -> None:
    """The old text ``old`` with the case's Keras 2 weights loads and predicts within 1e-5 of tf.keras."""
    import kerasafe as ks

    (tmp_path / "old.json").write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ks.load(tmp_path / "old.json", weights=corpus_dir / f"{name}-weights.h5")
        except errors.KerasafeError as exc:
            pytest.fail(f"{name} as Keras {old['keras_version']} wrote it: {exc}")
    reference = np.load(corpus_dir / f"{name}.npz")
    assert corpus._compare(corpus.predict(model, corpus._inputs(reference)), corpus._outputs(reference), 1e-5) == "ok"


# --- TensorFlow functions (TFOpLambda layers) ---------------------------------------------------------------

# TensorFlow's names for what Keras 3's ops call otherwise (the rest share the name).
TF_NAMES_FOR_KERAS_OPS = {
    "reduce_sum": "sum", "reduce_mean": "mean", "reduce_max": "max", "reduce_min": "min", "reduce_prod": "prod",
    "reduce_std": "std", "reduce_variance": "var", "reduce_logsumexp": "logsumexp", "reduce_any": "any", "reduce_all": "all",
    "concat": "concatenate", "pow": "power", "truediv": "true_divide", "floordiv": "floor_divide", "floormod": "mod",
    "clip_by_value": "clip", "acos": "arccos", "asin": "arcsin", "atan": "arctan", "atan2": "arctan2", "acosh": "arccosh",
    "asinh": "arcsinh", "atanh": "arctanh", "is_nan": "isnan", "is_inf": "isinf", "is_finite": "isfinite", "gather": "take",
    "reverse": "flip", "l2_normalize": "normalize", "avg_pool": "average_pool", "avg_pool1d": "average_pool",
    "avg_pool2d": "average_pool", "avg_pool3d": "average_pool", "max_pool1d": "max_pool", "max_pool2d": "max_pool",
    "max_pool3d": "max_pool", "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "convolution": "conv",
    "depthwise_conv2d": "depthwise_conv", "separable_conv2d": "separable_conv", "conv1d_transpose": "conv_transpose",
    "conv2d_transpose": "conv_transpose", "conv3d_transpose": "conv_transpose", "diag_part": "diagonal", "fill": "full",
    "squared_difference": "square", "divide_no_nan": "divide", "xlogy": "log",
}
# Functions in the table that tf.keras 2.21 records under another name when called (the name its call reaches).
RECORDED_AS = {
    "math.divide": "math.truediv", "math.floordiv": "compat.v1.floor_div", "norm": "compat.v1.norm",
    "transpose": "compat.v1.transpose", "squeeze": "compat.v1.squeeze", "gather": "compat.v1.gather", "pad": "compat.v1.pad",
    "shape": "compat.v1.shape", "size": "compat.v1.size", "nn.conv2d": "compat.v1.nn.conv2d", "nn.conv1d": "compat.v1.nn.conv1d",
    "nn.depthwise_conv2d": "compat.v1.nn.depthwise_conv2d", "math.in_top_k": "compat.v1.math.in_top_k",
    "nn.sigmoid_cross_entropy_with_logits": "compat.v1.nn.sigmoid_cross_entropy_with_logits",
    "nn.separable_conv2d": "compat.v1.nn.separable_conv2d", "nn.conv_transpose": "nn.conv2d_transpose",
    "math.softsign": "nn.softsign", "nn.max_pool": "nn.max_pool2d", "conv": "nn.convolution",
    # made of other recorded ops when called on a model's tensors (never one layer of their own)
    "nn.batch_normalization": "math.multiply", "linalg.logdet": "linalg.cholesky",
    "math.logical_xor": "math.logical_and",
    "linalg.eye": "eye",
}


def test_every_tensorflow_function_with_a_keras3_op_is_rebuilt_or_named():
    """Every public function of tf, tf.math, tf.nn, tf.linalg and tf.image whose name (or TensorFlow's name for it)
    is a Keras 3 op is in the table of rebuilt functions, or in NO_KERAS3_EQUIVALENT with the reason (README)."""
    import keras

    from kerasafe.legacy.tf_functions import NO_KERAS3_EQUIVALENT, OPS

    keras_ops = {n for n in dir(keras.ops) if not n.startswith("_")}
    candidates = {canonical for public, canonical in corpus.INDEX["tf_function_names"].items()
                  if TF_NAMES_FOR_KERAS_OPS.get(public.split(".")[-1], public.split(".")[-1]) in keras_ops}
    assert len(candidates) > 150
    missing = sorted(c for c in candidates if c not in OPS and c not in NO_KERAS3_EQUIVALENT)
    assert not missing, f"TensorFlow functions with a Keras 3 op that kerasafe neither rebuilds nor names: {missing}"
    assert not set(OPS) & set(NO_KERAS3_EQUIVALENT)


def test_every_rebuilt_tensorflow_function_is_in_the_corpus():
    """Each table entry is checked against tf.keras's own predictions: recorded in a corpus case, or by the name its call reaches."""
    from kerasafe.legacy.tf_functions import OPS

    recorded = {f for case in corpus.CASES.values() for f in case["tf_functions"]}
    unexercised = sorted(name for name in OPS if name not in recorded and RECORDED_AS.get(name) not in recorded)
    assert not unexercised, unexercised
    assert recorded - {"_CONSTANT_VALUE"} <= set(OPS) | {"einsum"}, recorded - set(OPS)


@pytest.mark.parametrize("name", sorted(__import__("kerasafe.legacy.tf_functions", fromlist=["x"]).NO_KERAS3_EQUIVALENT))
def test_a_tensorflow_function_without_keras3_equivalent_is_refused_by_name(name, tmp_path):
    from kerasafe.legacy.tf_functions import NO_KERAS3_EQUIVALENT

    import kerasafe as ks

    config = {"class_name": "Functional", "keras_version": "2.21.0", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_input_shape": [None, 3], "dtype": "float32"},
         "inbound_nodes": []},
        {"class_name": "TFOpLambda", "name": f"tf.{name}", "config": {"name": f"tf.{name}", "function": name, "dtype": "float32"},
         "inbound_nodes": [["x", 0, 0, {}]]}], "input_layers": [["x", 0, 0]], "output_layers": [[f"tf.{name}", 0, 0]]}}
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(errors.UnsupportedOperationError) as info:
        ks.load(tmp_path / "m.json")
    assert f"TensorFlow function '{name}'" in str(info.value) and f"'tf.{name}'" in str(info.value)
    assert NO_KERAS3_EQUIVALENT[name][:40] in str(info.value)


# --- Keras 1: the same models with Keras 1's names --------------------------------------------------------

# Classes Keras 1.2 had under these names (the others kept theirs), and the arguments it named otherwise:
# table_keras1's renames read backwards, so the texts here say what Keras 1 wrote.
KERAS_1_CLASSES = {"Conv1D": "Convolution1D", "Conv2D": "Convolution2D", "Conv3D": "Convolution3D"}
KERAS_1_HAD = {"Dense", "Activation", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector", "Masking", "Convolution1D",
               "Convolution2D", "Convolution3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
               "AveragePooling2D", "AveragePooling3D", "GlobalMaxPooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling2D",
               "GlobalAveragePooling2D", "ZeroPadding1D", "ZeroPadding2D", "UpSampling1D", "UpSampling2D", "Cropping1D",
               "Cropping2D", "SimpleRNN", "GRU", "LSTM", "Embedding", "TimeDistributed", "Bidirectional", "LeakyReLU", "PReLU",
               "ELU", "ThresholdedReLU", "GaussianNoise", "GaussianDropout", "SpatialDropout1D", "SpatialDropout2D",
               "LocallyConnected1D", "LocallyConnected2D", "InputLayer", "Sequential"}


def _as_keras_1(value):
    """A Keras 2.3-style config with Keras 1's class and argument names (table_keras1.ARGUMENT_RENAMES reversed)."""
    from kerasafe.legacy import table_keras1

    if isinstance(value, list):
        return [_as_keras_1(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _as_keras_1(v) for k, v in value.items()}
    cls = value.get("class_name")
    if isinstance(value.get("config"), dict) and cls not in (None, "Sequential", "VarianceScaling", "Zeros", "Ones"):
        old_class = KERAS_1_CLASSES.get(cls, cls)
        backwards = {new: old for old, new in {**table_keras1.ARGUMENT_RENAMES["*"],
                                                **table_keras1.ARGUMENT_RENAMES.get(cls, {})}.items() if new}
        config = {backwards.get(k, k): v for k, v in value["config"].items()}
        if "dim_ordering" in config:
            config["dim_ordering"] = {"channels_last": "tf", "channels_first": "th"}[config["dim_ordering"]]
        if old_class == "Convolution2D" and "filter_length" not in config and isinstance(config.get("kernel_size"), list):
            config["nb_row"], config["nb_col"] = config.pop("kernel_size")
        value = dict(value, class_name=old_class, config=config)
    return value


def _outer_classes(name):
    """The case's classes without the cells its recurrent layers hold (Keras 1 recorded no cells)."""
    classes = set(corpus.CASES[name]["classes"])
    return {c for c in classes if not (c.endswith("Cell") and c[:-4] in classes)} - {"Sequential", "InputLayer"}


KERAS_1_CASES = [name for name in KERAS_2_CASES
                 if _outer_classes(name) <= {
                     {v: k for k, v in KERAS_1_CLASSES.items()}.get(c, c) for c in KERAS_1_HAD}
                 and corpus.CASES[name]["classes"].count("Sequential") == 1
                 and not any(t in name for t in ("GRU", "Bidirectional_sum"))]  # GRUs: Keras 1 had no reset_after=True


def test_the_keras_1_cases_span_the_classes_keras_1_had():
    covered = {c for name in KERAS_1_CASES for c in corpus.CASES[name]["classes"]}
    assert {"Conv1D", "Conv2D", "LSTM", "SimpleRNN", "Embedding", "Dense", "MaxPooling2D", "LocallyConnected1D",
            "TimeDistributed", "PReLU", "Masking", "ZeroPadding2D"} <= covered, covered
    assert len(KERAS_1_CASES) >= 30


@pytest.mark.parametrize("name", KERAS_1_CASES)
def test_keras_1_texts_of_the_same_models_predict_as_tf_keras_did(corpus_dir, name, tmp_path):
    config = _as_keras_2_3(json.loads((corpus_dir / f"{name}.json").read_text()))
    layers = _input_on_first_layer(config["config"]["layers"], "input_dtype")
    old = {"class_name": "Sequential", "keras_version": "1.2.2", "config": _as_keras_1(layers)}
    _assert_predicts_as_tf_keras(corpus_dir, name, tmp_path, old)
