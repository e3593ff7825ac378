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
    import kerasafe as ks

    config = json.loads((corpus_dir / f"{name}.json").read_text())
    old = _as_keras_2_3(copy.deepcopy(config))
    old["keras_version"], old["backend"] = "2.2.4", "tensorflow"
    if old["class_name"] == "Sequential":
        layers = old["config"]["layers"]
        if layers and layers[0]["class_name"] == "InputLayer":  # Keras 2.2 put the input shape on the first layer
            first = layers.pop(0)["config"]
            layers[0]["config"]["batch_input_shape"] = first["batch_input_shape"]
            layers[0]["config"].setdefault("dtype", first.get("dtype", "float32"))
        old["config"] = layers  # Keras 2.0-2.2.2 wrote the bare list
    (tmp_path / "old.json").write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ks.load(tmp_path / "old.json", weights=corpus_dir / f"{name}-weights.h5")
        except errors.KerasafeError as exc:
            pytest.fail(f"{name} as Keras 2.2.4 wrote it: {exc}")
    reference = np.load(corpus_dir / f"{name}.npz")
    ours = corpus.predict(model, corpus._inputs(reference))
    assert corpus._compare(ours, corpus._outputs(reference), 1e-5) == "ok"
