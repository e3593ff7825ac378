"""Legacy rescue: files that tf.keras 2, Keras 2.0 and Keras 1 wrote open in Keras 3 with their predictions.

The tf.keras 2 corpus is written by tests/fixtures/legacy/make_corpus.py with the real
tf_keras 2.21 (its outputs are committed); the Keras 1/2.0 texts are the tutorials'
own and a real Keras 1.1.1 project's (copies in tests/fixtures/legacy/found/), with hand-written
cases below.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import h5py
import numpy as np
import pytest

import kerasafe as ks
from conftest import TESTS, run_cli
from kerasafe import errors, legacy
from kerasafe.legacy import optimizers as optimizer_translation
from kerasafe.legacy.table_keras1 import keras1_to_keras2

CORPUS = TESTS / "fixtures" / "legacy" / "tf_keras_2"
FOUND = TESTS / "fixtures" / "legacy" / "found"  # copies of files from ../shared (see its README)
MODELS = ["pima", "fashion", "residual_cnn", "tf_ops"]


def _predict(model, name):
    ref = np.load(CORPUS / f"{name}.npz")
    return np.asarray(model.predict(ref["x"], verbose=0)), ref["y"]


@pytest.mark.parametrize("name", MODELS)
def test_tf_keras_full_h5_predicts_and_keeps_every_optimizer_slot(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "starts fresh", no dropped slot
        model = ks.load(CORPUS / f"{name}.h5")
    ours, theirs = _predict(model, name)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    with h5py.File(CORPUS / f"{name}.h5") as f:
        group = f["optimizer_weights"]
        saved = [group[n.decode() if isinstance(n, bytes) else n][()] for n in group.attrs["weight_names"]]
        config = json.loads(f.attrs["training_config"])["optimizer_config"]["config"]
    optimizer = model.optimizer
    assert float(optimizer.learning_rate) == pytest.approx(config["learning_rate"])
    if "momentum" in config:
        assert optimizer.momentum == pytest.approx(config["momentum"])
    restored = [np.asarray(v) for v in optimizer.variables if not v.name.endswith("learning_rate")]
    assert len(restored) == len(saved)
    assert sorted(float(np.abs(a).sum()) for a in restored) == pytest.approx(sorted(float(np.abs(a).sum()) for a in saved))
    assert int(optimizer.iterations) > 0


@pytest.mark.parametrize("weights", [".weights.h5", "-weights.h5"])
@pytest.mark.parametrize("name", MODELS)
def test_tf_keras_json_with_weights_h5(name, weights):
    """Both layouts tf.keras 2 wrote: .weights.h5 (Keras 3 style) and any other .h5 (layer_names)."""
    model = ks.load(CORPUS / f"{name}.json", weights=CORPUS / f"{name}{weights}")
    ours, theirs = _predict(model, name)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_tf_keras_weights_by_name_into_a_reordered_model():
    import keras

    source = ks.load(CORPUS / "pima.json")
    # Same layers, listed in another order inside a Functional model: only names match.
    inputs = keras.Input((8,))
    layers = {l.name: keras.layers.Dense(l.units, activation=l.activation, name=l.name) for l in source.layers}
    x = layers["dense"](inputs)
    x = layers["dense_1"](x)
    model = keras.Model(inputs, layers["dense_2"](x))
    ks.load_weights(model, CORPUS / "pima-weights.h5", by_name=True)
    ours, theirs = _predict(model, "pima")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_the_tutorials_keras_2_0_2_texts_build_the_model(suffix):
    """seed003: Keras 2.0.2 wrote a Sequential's config as a bare list, the input shape on layer 1."""
    model = ks.load(FOUND / f"seed003_model.{suffix}")
    assert [tuple(i.shape) for i in model.inputs] == [(None, 8)]
    assert [l.units for l in model.layers] == [12, 8, 1] and model.count_params() == 221
    assert model.predict(np.zeros((2, 8), "float32"), verbose=0).shape == (2, 1)


def test_a_real_keras_1_architecture_builds_with_keras_1_semantics():
    """ChemTS (Keras 1.1.1): output_dim/init/inner_init/input_dtype names and Keras 1's hard_sigmoid."""
    model = ks.load(FOUND / "chemts_model.json")
    assert [tuple(i.shape) for i in model.inputs] == [(None, 82)] and model.inputs[0].dtype == "int32"
    gru = next(l for l in model.layers if type(l).__name__ == "GRU")
    assert gru.units == 256
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], "float32")
    np.testing.assert_allclose(np.asarray(gru.cell.recurrent_activation(x)), np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)


# Each entry of the Keras 1 rename table with the text it came from (a Keras 1 layer config).
KERAS1_CASES = [
    ("Dense", {"output_dim": 4, "init": "uniform", "W_regularizer": None, "b_constraint": None, "bias": True},
     "Dense", {"units": 4, "kernel_initializer": "uniform", "kernel_regularizer": None, "bias_constraint": None, "use_bias": True}),
    ("Convolution2D", {"nb_filter": 8, "nb_row": 3, "nb_col": 5, "border_mode": "same", "subsample": [2, 2], "dim_ordering": "tf"},
     "Conv2D", {"filters": 8, "kernel_size": [3, 5], "padding": "same", "strides": [2, 2], "data_format": "channels_last"}),
    ("Convolution1D", {"nb_filter": 4, "filter_length": 3, "subsample_length": 1}, "Conv1D", {"filters": 4, "kernel_size": 3, "strides": 1}),
    ("Dropout", {"p": 0.5}, "Dropout", {"rate": 0.5}),
    ("GaussianNoise", {"sigma": 0.1}, "GaussianNoise", {"stddev": 0.1}),
    ("MaxPooling1D", {"pool_length": 2, "stride": 2}, "MaxPooling1D", {"pool_size": 2, "strides": 2}),
    ("GRU", {"output_dim": 8, "inner_init": "orthogonal", "inner_activation": "sigmoid", "dropout_W": 0.1, "dropout_U": 0.2,
             "U_regularizer": None, "consume_less": "gpu"},
     "GRU", {"units": 8, "recurrent_initializer": "orthogonal", "recurrent_activation": "sigmoid", "dropout": 0.1,
             "recurrent_dropout": 0.2, "recurrent_regularizer": None}),
    ("Embedding", {"input_dim": 50, "output_dim": 8, "init": "uniform", "W_regularizer": None, "input_length": 10, "dropout": 0.0},
     "Embedding", {"input_dim": 50, "output_dim": 8, "embeddings_initializer": "uniform", "embeddings_regularizer": None}),
]


@pytest.mark.parametrize(("old_class", "old", "new_class", "new"), KERAS1_CASES, ids=[c[0] for c in KERAS1_CASES])
def test_keras1_rename_table(old_class, old, new_class, new):
    assert keras1_to_keras2(old_class, old) == (new_class, new)


@pytest.mark.parametrize(("old_class", "config", "named"), [
    ("Merge", {"name": "merge_1", "mode": "concat"}, "Merge"),
    ("Embedding", {"name": "emb", "input_dim": 5, "output_dim": 2, "dropout": 0.2}, "'dropout'=0.2"),
])
def test_keras1_without_keras3_meaning_is_an_error_naming_it(old_class, config, named, tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"class_name": "Sequential", "keras_version": "1.2.2", "config": [
        {"class_name": "Dense", "config": {"name": "d", "output_dim": 2, "input_dim": 3}},
        {"class_name": old_class, "config": config}]}))
    with pytest.raises(errors.UnsupportedOperationError) as info:
        ks.load(path)
    assert str(path) in str(info.value) and named in str(info.value) and config["name"] in str(info.value)


def test_keras2_optimizer_lr_and_decay():
    new = optimizer_translation.upgrade_optimizer_config({"class_name": "Adam", "config": {"lr": 0.002, "decay": 0.0, "beta_1": 0.9}})
    assert new["config"] == {"learning_rate": 0.002, "beta_1": 0.9} and new["class_name"] == "Adam"
    tf2 = optimizer_translation.upgrade_optimizer_config({"class_name": "Custom>SGD", "config": {"learning_rate": 0.1, "momentum": 0.9,
                                                                                     "is_legacy_optimizer": False, "jit_compile": True}})
    assert tf2["class_name"] == "SGD" and tf2["config"] == {"learning_rate": 0.1, "momentum": 0.9}
    import keras

    decayed = keras.optimizers.deserialize(optimizer_translation.upgrade_optimizer_config({"class_name": "SGD", "config": {"lr": 0.1, "decay": 0.5}}))
    schedule = decayed.learning_rate if callable(decayed.learning_rate) else decayed._learning_rate
    assert float(schedule(4)) == pytest.approx(0.1 / (1 + 0.5 * 4))  # Keras 2's decay formula


# --- hostile files ------------------------------------------------------------------------------

def test_real_lambda_bytecode_h5_is_refused_and_nothing_runs(tmp_path):
    """carnd_model.h5 (Keras 2.0.6) carries Python 3.5 bytecode in a Lambda."""
    path = FOUND / "carnd_model.h5"
    with pytest.raises(errors.UnsafeContentError) as info:
        ks.load(path)
    assert "Lambda layer 'lambda_1'" in str(info.value) and "safe_mode=False" in str(info.value)
    with pytest.raises(errors.UnsupportedOperationError, match="bytecode it cannot"):  # trusted, but not runnable here
        ks.load(path, safe_mode=False)
    proc = run_cli("inspect", path)  # reading its header runs nothing and works
    assert proc.returncode == 0 and "lambda_1" in proc.stdout, proc.stderr


def _lambda_writing(marker: pathlib.Path) -> str:
    import base64
    import marshal

    code = compile(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]", "<payload>", "eval")
    function = eval(code)  # a real lambda's code object, as Keras 2 marshalled it
    return base64.b64encode(marshal.dumps(function.__code__)).decode()


@pytest.mark.parametrize("container", ["json", "h5"])
def test_lambda_bytecode_that_would_write_a_file_does_not_run(tmp_path, container):
    marker = tmp_path / "ran.txt"
    config = {"class_name": "Sequential", "keras_version": "2.2.4", "config": {"name": "s", "layers": [
        {"class_name": "Lambda", "config": {"name": "evil", "function": [_lambda_writing(marker), None, None],
                                            "function_type": "lambda", "batch_input_shape": [None, 2],
                                            "output_shape": None, "arguments": {}}}]}}
    path = tmp_path / f"evil.{container}"
    if container == "json":
        path.write_text(json.dumps(config))
    else:
        with h5py.File(path, "w") as f:
            f.attrs["model_config"] = json.dumps(config)
            f.attrs["keras_version"] = "2.2.4"
            f.create_group("model_weights").attrs["layer_names"] = np.array([b"evil"])
    with pytest.raises(errors.UnsafeContentError, match="Lambda layer 'evil'"):
        ks.load(path)
    assert not marker.exists()


def test_yaml_python_object_tag_does_not_run(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.yaml"
    path.write_text(f"class_name: Sequential\nconfig: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(errors.UnsafeContentError):
        ks.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["full", "weights"])
def test_absurd_declared_shape_is_refused_before_any_allocation(tmp_path, layout):
    """A header declaring 4 TiB of weights in a file of a few KiB: refused from the header alone."""
    path = tmp_path / "huge.h5"
    source = CORPUS / ("pima.h5" if layout == "full" else "pima-weights.h5")
    with h5py.File(source) as src, h5py.File(path, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for key in src:
            src.copy(key, dst)
        layers = dst["model_weights"] if layout == "full" else dst
        group = layers["dense"]["dense"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", shape=(2**20, 2**20), dtype="float32")  # never written: no space used
    assert path.stat().st_size < 1 << 20
    with pytest.raises(errors.CorruptFileError, match=r"declaring shape \(1048576, 1048576\)"):
        if layout == "full":
            ks.load(path)
        else:
            ks.load(CORPUS / "pima.json", weights=path)


# --- TensorFlow checkpoints and SavedModels, without TensorFlow --------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", ["prefix", "index file", "folder", "tf.train.Checkpoint"])
def test_tf_checkpoint_weights(name, kind):
    """save_weights("name") (.index + .data), named by prefix, .index or folder; tf.train.Checkpoint(model=...)."""
    weights = {
        "prefix": CORPUS / f"{name}.ckpt" / name,
        "index file": CORPUS / f"{name}.ckpt" / f"{name}.index",
        "folder": CORPUS / f"{name}.ckpt",  # its "checkpoint" file names the latest
        "tf.train.Checkpoint": CORPUS / f"{name}.tfckpt",
    }[kind]
    model = ks.load(CORPUS / f"{name}.json", weights=weights)
    ours, theirs = _predict(model, name)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def _optimizer_state(model):
    return sorted(float(np.abs(np.asarray(v, "float64")).sum()) for v in model.optimizer.variables)


@pytest.mark.parametrize("name", MODELS)
def test_tf_keras_savedmodel_is_rebuilt_as_a_keras3_model_with_its_optimizer(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = ks.load(CORPUS / f"{name}.savedmodel")
    ours, theirs = _predict(model, name)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    # Same training as the .h5 beside it, whose slots are checked against the file above.
    assert model.compiled and _optimizer_state(model) == pytest.approx(_optimizer_state(ks.load(CORPUS / f"{name}.h5")))


@pytest.mark.parametrize("name", MODELS)
def test_tf_checkpoint_into_a_compiled_model_restores_the_optimizer(name):
    reference = ks.load(CORPUS / f"{name}.h5")
    model = ks.load(CORPUS / f"{name}.h5")
    for v in model.weights + model.optimizer.variables:
        v.assign(np.zeros(v.shape, v.dtype))
    ks.load_weights(model, CORPUS / f"{name}.ckpt" / name)
    assert _optimizer_state(model) == pytest.approx(_optimizer_state(reference))
    assert int(model.optimizer.iterations) == int(reference.optimizer.iterations) > 0


def test_a_tf_checkpoint_holds_no_architecture():
    with pytest.raises(errors.UnsupportedOperationError, match="ks.load\\('arch.json', weights=path\\)"):
        ks.load(CORPUS / "pima.ckpt" / "pima")


def test_tf_checkpoint_into_the_wrong_model_is_a_clear_error():
    model = ks.load(CORPUS / "fashion.json")
    with pytest.raises(errors.WeightsMismatchError) as info:
        ks.load_weights(model, CORPUS / "residual_cnn.ckpt" / "residual_cnn")
    assert "residual_cnn" in str(info.value) and "layers with weights" in str(info.value)


def test_damaged_tf_checkpoint_index_and_data(tmp_path):
    import shutil

    shutil.copytree(CORPUS / "pima.ckpt", tmp_path / "ckpt")
    index = tmp_path / "ckpt" / "pima.index"
    data = tmp_path / "ckpt" / "pima.data-00000-of-00001"
    model = ks.load(CORPUS / "pima.json")
    data.write_bytes(data.read_bytes()[:100])  # truncated data: named, nothing read past its end
    with pytest.raises(errors.CorruptFileError, match="past its end"):
        ks.load_weights(model, tmp_path / "ckpt" / "pima")
    index.write_bytes(index.read_bytes()[:-20])  # no footer
    with pytest.raises(errors.CorruptFileError, match="checkpoint index"):
        ks.load_weights(model, tmp_path / "ckpt" / "pima")


# Run first in a child: TensorFlow (and tf_keras) cannot be imported, as on a machine without them.
HIDE_TENSORFLOW = "import hide_tensorflow; hide_tensorflow.install()\n"


def test_every_tf_artifact_loads_and_inspects_without_importing_tensorflow():
    """A user on JAX: checkpoints, SavedModels, .h5 and JSON open, and TensorFlow is never imported even when
    installed (tests/test_without_tensorflow.py runs this file again with it hidden)."""
    code = f"""
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np, kerasafe as ks
D = {str(CORPUS)!r}
for name in {MODELS!r}:
    ref = np.load(f"{{D}}/{{name}}.npz")
    for model in (ks.load(f"{{D}}/{{name}}.savedmodel"), ks.load(f"{{D}}/{{name}}.json", weights=f"{{D}}/{{name}}.ckpt/{{name}}"),
                  ks.load(f"{{D}}/{{name}}.h5")):
        assert np.abs(np.asarray(model.predict(ref["x"], verbose=0)) - ref["y"]).max() <= 1e-5
    ks.inspect(f"{{D}}/{{name}}.tfckpt")
assert "tensorflow" not in sys.modules, "TensorFlow was imported"
print("ok")
"""
    from conftest import run_python

    assert run_python(code, backend="jax").stdout.strip().endswith("ok")


def test_inspect_a_tf_checkpoint_and_a_tf_keras_savedmodel():
    proc = run_cli("inspect", CORPUS / "residual_cnn.ckpt" / "residual_cnn", "--json")
    info = json.loads(proc.stdout)
    assert proc.returncode == 0 and info["format"] == "tf-checkpoint"
    model = ks.load(CORPUS / "residual_cnn.json", weights=CORPUS / "residual_cnn.ckpt" / "residual_cnn")
    assert info["total_params"] == model.count_params() and len(info["layers"]) == 5
    saved = ks.inspect(CORPUS / "pima.savedmodel")
    assert saved["has_architecture"] and saved["total_params"] == 12 * 8 + 12 + 8 * 12 + 8 + 8 + 1


# --- kerasafe convert / upgrade ------------------------------------------------------------------

@pytest.mark.parametrize(("src", "weights"), [
    ("pima.h5", None), ("pima.savedmodel", None), ("pima.json", "pima.ckpt/pima"), ("pima.json", "pima-weights.h5"),
])
def test_convert_each_legacy_kind_to_keras(tmp_path, src, weights):
    args = ["convert", CORPUS / src, tmp_path / "new.keras"] + (["--weights", CORPUS / weights] if weights else [])
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    ours, theirs = _predict(ks.load(tmp_path / "new.keras"), "pima")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_upgrade_a_folder_converts_reports_and_never_overwrites(tmp_path):
    import shutil

    root = tmp_path / "old"
    (root / "sub").mkdir(parents=True)
    shutil.copy(CORPUS / "pima.json", root / "pima.json")
    shutil.copy(CORPUS / "pima.weights.h5", root / "pima.weights.h5")
    shutil.copytree(CORPUS / "fashion.savedmodel", root / "sub" / "fashion.savedmodel")
    shutil.copy(CORPUS / "residual_cnn.h5", root / "sub" / "cnn.h5")
    shutil.copy(FOUND / "carnd_model.h5", root / "carnd_model.h5")
    shutil.copy(CORPUS / "fashion-weights.h5", root / "lonely-weights.h5")

    def run(*extra):
        proc = run_cli("upgrade", root, "--json", *extra)
        return proc, {pathlib.Path(r["source"]).name: r for r in json.loads(proc.stdout)}

    proc, first = run()
    assert proc.returncode == 1  # carnd_model.h5 failed (unsafe), and says so
    assert {k: v["result"] for k, v in first.items()} == {
        "fashion.savedmodel": "converted", "cnn.h5": "converted", "pima.json": "converted",
        "carnd_model.h5": "failed", "lonely-weights.h5": "skipped"}
    assert "Lambda layer 'lambda_1'" in first["carnd_model.h5"]["detail"]
    assert first["fashion.savedmodel"]["warnings"] == []
    for target, name in ((root / "pima.keras", "pima"), (root / "sub" / "fashion.keras", "fashion"), (root / "sub" / "cnn.keras", "residual_cnn")):
        ours, theirs = _predict(ks.load(target), name)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    before = (root / "pima.keras").read_bytes()
    _, second = run()
    assert second["pima.json"]["result"] == "exists" and (root / "pima.keras").read_bytes() == before
    _, forced = run("--force")
    assert forced["pima.json"]["result"] == "converted"
    table = run_cli("upgrade", root)
    assert "file" in table.stdout and "format found" in table.stdout and "carnd_model.h5" in table.stdout


@pytest.mark.tensorflow
def test_a_savedmodel_without_keras_inside_runs_for_inference(tmp_path):
    """Keras 3 model.export (no Keras model inside): a callable model when TensorFlow is installed."""
    pytest.importorskip("tensorflow")
    from conftest import run_python

    code = f"""
import warnings; warnings.simplefilter("ignore")
import numpy as np, keras, kerasafe as ks
m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
m.export({str(tmp_path / "exported")!r}, format="tf_saved_model", verbose=False)
x = np.random.default_rng(0).normal(size=(300, 4)).astype("float32")
np.save({str(tmp_path / "x.npy")!r}, x); np.save({str(tmp_path / "y.npy")!r}, m.predict(x, verbose=0))
"""
    run_python(code, backend="tensorflow")
    served = ks.load(tmp_path / "exported", safe_mode=False)  # a graph only: it runs, so the caller must trust it
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(served.predict(x), y, rtol=0, atol=1e-5)
    hidden = HIDE_TENSORFLOW + f"""
import kerasafe as ks
from kerasafe import errors
try:
    ks.load({str(tmp_path / "exported")!r}, safe_mode=False)
except errors.MissingDependencyError as exc:
    print(exc)
"""
    from conftest import run_python as run

    out = run(hidden, backend="jax").stdout
    assert "pip install 'kerasafe[tensorflow]'" in out and "exported" in out


def _keras1_chemts_forward(h5_path, tokens):
    """ChemTS's network as Keras 1.1.1 computed it, in NumPy from the file's arrays (an independent reference)."""
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    def hard_sigmoid(v):  # Keras 1's: clip(0.2 x + 0.5, 0, 1)
        return np.clip(0.2 * v + 0.5, 0, 1)

    with h5py.File(h5_path) as f:
        def w(layer, name):
            return f[layer][f"{layer if layer != 'timedistributed_1' else 'dense_1'}_{name}:0"][()].astype("float64")

        x = w("embedding_1", "W")[tokens]
        for gru in ("gru_1", "gru_2"):
            h = np.zeros((x.shape[0], w(gru, "U_z").shape[0]))
            steps = []
            for t in range(x.shape[1]):
                xt = x[:, t]
                z = hard_sigmoid(xt @ w(gru, "W_z") + w(gru, "b_z") + h @ w(gru, "U_z"))
                r = hard_sigmoid(xt @ w(gru, "W_r") + w(gru, "b_r") + h @ w(gru, "U_r"))
                hh = sigmoid(xt @ w(gru, "W_h") + w(gru, "b_h") + (r * h) @ w(gru, "U_h"))
                h = z * h + (1 - z) * hh
                steps.append(h)
            x = np.stack(steps, axis=1)
        logits = x @ w("timedistributed_1", "W") + w("timedistributed_1", "b")
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_real_keras_1_gru_model_predicts_as_keras_1_did():
    """ChemTS (Keras 1.1.1): per-gate GRU weights joined for Keras 3, reset gate before the product, old hard_sigmoid."""
    model = ks.load(FOUND / "chemts_model.json", weights=FOUND / "chemts_model.h5")
    tokens = np.random.default_rng(0).integers(0, 64, size=(3, 82)).astype("int32")
    expected = _keras1_chemts_forward(FOUND / "chemts_model.h5", tokens)
    np.testing.assert_allclose(np.asarray(model.predict(tokens, verbose=0), "float64"), expected, rtol=0, atol=1e-5)
    by_name = ks.load(FOUND / "chemts_model.json")  # the same, matched by layer name
    ks.load_weights(by_name, FOUND / "chemts_model.h5", by_name=True)
    np.testing.assert_allclose(np.asarray(by_name.predict(tokens, verbose=0), "float64"), expected, rtol=0, atol=1e-5)


def test_tf_ops_survive_conversion_to_keras(tmp_path):
    """TFOpLambda / SlicingOpLambda layers become kerasafe's TFOp layers; the .keras file reloads with them."""
    ks.convert(CORPUS / "tf_ops.h5", tmp_path / "tf_ops.keras")
    from conftest import run_python

    code = f"""
import numpy as np, kerasafe as ks
ref = np.load({str(CORPUS / "tf_ops.npz")!r})
m = ks.load({str(tmp_path / "tf_ops.keras")!r})
print(float(np.abs(np.asarray(m.predict(ref["x"], verbose=0)) - ref["y"]).max()))
"""
    assert float(run_python(code, backend="jax").stdout.strip().splitlines()[-1]) <= 1e-5


def test_a_second_tensor_passed_by_keyword_becomes_a_node_input():
    """tf.keras recorded ``z * tf.sigmoid(z)`` as multiply(z, y=<the sigmoid layer's output>)."""
    layer = {"class_name": "TFOpLambda", "config": {"name": "tf.math.multiply_1", "function": "math.multiply"},
             "inbound_nodes": [["tf.math.reduce_mean", 0, 0, {"y": ["tf.math.sigmoid", 0, 0], "name": None}]]}  # as tf_ops.json has it
    config = {"class_name": "Functional", "keras_version": "2.21.0", "config": {"name": "m", "layers": [layer]}}
    out = legacy.upgrade_model_config(config)["config"]["layers"][0]
    assert out["inbound_nodes"] == [[["tf.math.reduce_mean", 0, 0, {}], ["tf.math.sigmoid", 0, 0, {}]]]
    assert out["config"]["arguments"] == {"y": {"__kerasafe_input__": 0}} and out["config"]["first_inputs"] == 0
    # a list of tensors first (tf.stack([a, c], ...)) and a tensor inside another argument (a shape from tf.shape)
    listed = {**layer, "inbound_nodes": [[["a", 0, 0, {"axis": 0, "shape": [["b", 0, 0], -1]}],
                                          ["c", 0, 0, {"axis": 0, "shape": [["b", 0, 0], -1]}]]]}
    out = legacy.upgrade_model_config({**config, "config": {"name": "m", "layers": [listed]}})["config"]["layers"][0]
    assert out["inbound_nodes"] == [[["a", 0, 0, {}], ["c", 0, 0, {}], ["b", 0, 0, {}]]]
    assert out["config"]["first_inputs"] == 2 and out["config"]["arguments"] == {"axis": 0, "shape": [{"__kerasafe_input__": 0}, -1]}
    differing = {**layer, "inbound_nodes": [[["a", 0, 0, {"axis": 0}], ["c", 0, 0, {"axis": 1}]]]}
    with pytest.raises(legacy.LegacyError, match="different arguments per input"):
        legacy.upgrade_model_config({**config, "config": {"name": "m", "layers": [differing]}})


def test_a_tf_op_without_a_keras3_equivalent_is_named(tmp_path):
    config = json.loads((CORPUS / "tf_ops.json").read_text())
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "TFOpLambda" and layer["config"]["function"] == "nn.relu":
            layer["config"]["function"] = "signal.fft"
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(errors.UnsupportedOperationError, match="TensorFlow function 'signal.fft'"):
        ks.load(tmp_path / "m.json")


@pytest.mark.parametrize("shape, chunks", [((2**20, 2**20), None), ((2**32, 2**32, 16), (1, 1, 16))])
def test_a_keras_archive_declaring_huge_weights_is_refused(tmp_path, shape, chunks):
    """The zip's HDF5 member says 4 TiB in a few KiB: refused from its headers, before Keras allocates.
    The second shape's byte count (2**70) wraps around in 64-bit arithmetic: it must still be refused."""
    import io
    import zipfile

    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ks.save(model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "a") as h5:
        group = h5["layers/dense/vars"]
        del group["0"]
        group.create_dataset("0", shape=shape, chunks=chunks, dtype="float32")
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "huge.keras", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(errors.CorruptFileError, match=r"declaring shape \(" + str(shape[0])):
        ks.load(tmp_path / "huge.keras")


@pytest.mark.parametrize("layer", [
    {"class_name": "Dense", "config": {"name": "huge", "units": 10**12}},
    {"class_name": "Embedding", "config": {"name": "vocab", "input_dim": 2**30, "output_dim": 2**10}},
])
def test_an_architecture_asking_for_terabytes_is_refused_before_building(tmp_path, layer):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"class_name": "Sequential", "keras_version": "2.2.4", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 8], "dtype": "int32"}}, layer]}}))
    with pytest.raises(errors.UnsafeContentError, match=f"layer '{layer['config']['name']}'"):
        ks.load(path)


def test_a_keras3_config_asking_for_terabytes_is_refused_too(tmp_path):
    import keras

    config = json.loads(ks.to_json(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="big")])))
    config["config"]["layers"][-1]["config"]["units"] = 10**12
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(errors.UnsafeContentError, match="layer 'big' with units=1000000000000"):
        ks.load(tmp_path / "m.json")


@pytest.mark.parametrize("backend", [None, "theano"])
def test_keras1_channels_first_convolution_weights(tmp_path, backend):
    """Keras 1 `dim_ordering: th` kernels (out, in, rows, cols); Theano's flipped ones when the file says theano."""
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(2, 1, 3, 3)).astype("float32"), np.array([0.5, -1.0], "float32")
    config = {"class_name": "Sequential", "keras_version": "1.2.2", "config": [{"class_name": "Convolution2D", "config": {
        "name": "conv", "nb_filter": 2, "nb_row": 3, "nb_col": 3, "border_mode": "valid", "dim_ordering": "th",
        "subsample": [1, 1], "activation": "linear", "bias": True, "init": "glorot_uniform", "batch_input_shape": [None, 1, 5, 5]}}]}
    (tmp_path / "m.json").write_text(json.dumps(config))
    with h5py.File(tmp_path / "w.h5", "w") as f:  # the Keras 1 weights layout
        f.attrs["layer_names"] = np.array([b"conv"])
        if backend:
            f.attrs["backend"] = backend.encode()
        g = f.create_group("conv")
        g.attrs["weight_names"] = np.array([b"conv_W:0", b"conv_b:0"])
        g["conv_W:0"], g["conv_b:0"] = kernel, bias
    model = ks.load(tmp_path / "m.json", weights=tmp_path / "w.h5")
    x = rng.normal(size=(2, 1, 5, 5)).astype("float32")
    used = kernel[:, :, ::-1, ::-1] if backend == "theano" else kernel  # Theano convolved: a flipped kernel
    expected = np.zeros((2, 2, 3, 3), "float64")
    for i in range(3):
        for j in range(3):
            expected[:, :, i, j] = np.einsum("nckl,fckl->nf", x[:, :, i:i + 3, j:j + 3], used) + bias
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), expected, rtol=0, atol=1e-5)
