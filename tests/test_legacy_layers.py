"""Every tf.keras 2 layer class, in every form tf.keras 2 saved it, predicts on Keras 3 as it did (within 1e-5).

The corpus (tests/legacy_corpus.py) holds one small model per public layer class of
``tf_keras.layers`` (and per option that changes its saved config or weight layout),
each written by the real tf_keras 2.21 as .h5, JSON/YAML + both HDF5 weights layouts,
a save_weights TensorFlow checkpoint, a tf.train.Checkpoint and a SavedModel. Every
form of every case is loaded here on this process's backend; the other backends load
one form of every case in a child process. The run ends with a count per form
(conftest.pytest_terminal_summary), e.g. ``h5: 229/229 reproduce``.
"""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest

import legacy_corpus as corpus
from kerasafe import errors
from conftest import TESTS, run_python

RESULTS: dict[str, dict[str, str]] = {}  # case -> form -> result, for the summary


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    return corpus.extract(tmp_path_factory.mktemp("legacy-corpus"))


def test_the_corpus_has_every_public_tf_keras_layer_class():
    """The generator enumerated dir(tf_keras.layers) (and .experimental); each class is in a case or named as no model layer."""
    used = {c for case in corpus.CASES.values() for c in case["classes"]}
    missing = sorted(name for name, cls in corpus.INDEX["enumerated"].items()
                     if cls not in used and name not in corpus.INDEX["not_model_layers"])
    assert not missing, f"no case uses {missing}"
    assert len(corpus.INDEX["enumerated"]) >= 130  # tf_keras 2.21 exports 132 layer names, experimental ones included


class Child:
    """A real child process running legacy_corpus.py in the background; ``result()`` waits for its JSON line.

    The children (other backends, plain Keras) run while this process walks the corpus:
    on two cores that halves the wall time of this module.
    """

    def __init__(self, args: list[str], backend: str | None = None):
        import os
        import subprocess
        import sys

        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        if backend:
            env["KERAS_BACKEND"] = backend
        self.proc = subprocess.Popen([sys.executable, str(TESTS / "legacy_corpus.py"), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout=1500) -> dict:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err[-4000:]
        return json.loads(out.strip().splitlines()[-1])


OTHER_BACKENDS = [b for b in ("tensorflow", "torch") if importlib.util.find_spec(b) is not None]
ONE_FORM_PER_CASE = "h5,savedmodel,json+ckpt,json+-weights.h5"  # the first of these each case has


@pytest.fixture(scope="module")
def other_backends(corpus_dir):
    return {backend: Child([str(corpus_dir), ONE_FORM_PER_CASE], backend) for backend in OTHER_BACKENDS}


@pytest.fixture(scope="module", autouse=True)
def _start_other_backends_first(request):
    """The other backends' children start before the corpus walk here, when their tests are to run at all."""
    if any("test_every_case_on_the_other_backends" in item.nodeid for item in request.session.items):
        request.getfixturevalue("other_backends")


@pytest.fixture(scope="module")
def walked(corpus_dir):
    """Every case in every form, once; each reproducing model also converted to ``converted/NAME.keras``,
    which a child then opens with plain Keras."""
    converted = corpus_dir.parent / "converted"
    converted.mkdir(exist_ok=True)
    results = {name: corpus.check_case(corpus_dir, name, convert_to=converted) for name in sorted(corpus.CASES)}
    # Opened by plain Keras on TensorFlow where installed (fastest to load eagerly; a file written on JAX
    # opening on another backend is checked on the way), else on this backend.
    return results, converted, Child(["--plain-keras", str(corpus_dir), str(converted)], "tensorflow" if "tensorflow" in OTHER_BACKENDS else None)


@pytest.mark.parametrize("name", sorted(corpus.CASES))
def test_case_loads_and_predicts_as_tf_keras_did_in_every_form(walked, name):
    results = walked[0][name]
    RESULTS[name] = results
    wrong = {form: result for form, result in results.items() if not corpus.expected_result(name, result, form=form)}
    assert results and not wrong, wrong


def test_every_converted_model_opens_in_plain_keras_and_predicts_the_same(walked, corpus_dir):
    """What convert/upgrade write (.keras) opens with keras.saving.load_model after `import kerasafe`, in a fresh process."""
    results, converted, plain_keras = walked
    expected = sorted(name for name, r in results.items() if "ok" in r.values())  # refused cases too, from the forms that hold all
    assert sorted(p.stem for p in converted.glob("*.keras")) == expected
    opened = plain_keras.result()
    backend = "tensorflow" if "tensorflow" in OTHER_BACKENDS else None
    wrong = {name: r for name, r in opened.items() if r != "ok" and (backend, name) not in corpus.BACKEND_ISSUES}
    assert len(opened) == len(expected) and not wrong, wrong


def test_kerasafe_upgrade_converts_every_kind_tf_keras_wrote(corpus_dir, tmp_path):
    """One folder with a case of every form and of every kerasafe stand-in: each model found becomes NAME.keras."""
    import shutil

    from conftest import run_cli

    names = ["LSTM_time_major", "LocallyConnected2D_impl3", "Resizing_bicubic", "tf_ops_03", "BatchNormalization_4d"]
    sources = {"LSTM_time_major": ".h5", "LocallyConnected2D_impl3": ".savedmodel", "Resizing_bicubic": ".json",
               "tf_ops_03": ".yaml", "BatchNormalization_4d": ".json"}
    weights = {"Resizing_bicubic": "-weights.h5", "tf_ops_03": "-weights.h5", "BatchNormalization_4d": ".weights.h5"}
    for name in names:
        source = corpus_dir / f"{name}{sources[name]}"
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / source.name)
        if name in weights:
            shutil.copy(corpus_dir / f"{name}{weights[name]}", tmp_path / f"{name}{weights[name]}")
    proc = run_cli("upgrade", tmp_path, "--json")
    report = {json.loads(proc.stdout)[i]["source"].split("/")[-1]: r for i, r in enumerate(json.loads(proc.stdout))}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    converted = {pathlib_name(r["target"]) for r in report.values() if r["result"] == "converted"}
    assert converted == {f"{n}.keras" for n in names}, report
    opened = json.loads(run_python([str(TESTS / "legacy_corpus.py"), "--plain-keras", str(corpus_dir), str(tmp_path)]).stdout.splitlines()[-1])
    assert opened == {n: "ok" for n in names}


def pathlib_name(path: str) -> str:
    return path.replace("\\", "/").split("/")[-1]


def test_a_lambda_layer_loads_when_trusted_and_predicts_as_tf_keras_did(corpus_dir):
    """Refused in safe mode (corpus.REFUSED); with safe_mode=False the same Python's bytecode runs."""
    import kerasafe as ks

    reference = np.load(corpus_dir / "Lambda_python.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (ks.load(corpus_dir / "Lambda_python.h5", safe_mode=False),
                      ks.load(corpus_dir / "Lambda_python.json", weights=corpus_dir / "Lambda_python-weights.h5", safe_mode=False)):
            np.testing.assert_allclose(model.predict(reference["x0"], verbose=0), reference["y0"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_savedmodel_graph_is_named_not_a_vocabulary_guessed(corpus_dir, tmp_path, damage):
    """The adapted vocabulary comes from saved_model.pb; a graph that does not decode is a CorruptFileError naming it."""
    import shutil

    import kerasafe as ks

    copy = shutil.copytree(corpus_dir / "TextVectorization_tf_idf_bigrams.savedmodel", tmp_path / "m.savedmodel")
    graph = copy / "saved_model.pb"
    data = graph.read_bytes()
    graph.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\xff\xfe" * 64)
    with pytest.raises(errors.CorruptFileError) as info:
        ks.load(copy)
    assert "saved_model.pb" in str(info.value) and "SavedModel graph" in str(info.value)


@pytest.mark.parametrize("forgery", ["path to nowhere", "metadata not an object"])
def test_a_forged_keras_metadata_leaves_the_vocabulary_refused_not_guessed(corpus_dir, tmp_path, forgery):
    """Metadata that points at no lookup table (or is not an object) gets the adapted-vocabulary refusal, nothing else."""
    import shutil

    import kerasafe as ks
    from kerasafe.formats import tf_checkpoint

    copy = shutil.copytree(corpus_dir / "StringLookup_adapted_multi_hot.savedmodel", tmp_path / "m.savedmodel")
    path = copy / "keras_metadata.pb"
    saved = tf_checkpoint._messages()["SavedMetadata"].FromString(path.read_bytes())
    for node in saved.nodes:
        if node.node_path != "root":
            if forgery == "path to nowhere":
                node.node_path = "root.layer_with_weights-9"
            else:
                node.metadata = "[1, 2]"
    path.write_bytes(saved.SerializeToString())
    with pytest.raises(errors.UnsupportedOperationError) as info:
        ks.load(copy)
    assert corpus.ADAPTED_VOCABULARY in str(info.value) and "(StringLookup)" in str(info.value)


def _optimizer_state(model) -> list[float]:
    return sorted(float(np.abs(np.asarray(v, "float64")).sum()) for v in model.optimizer.variables)


TRAINED = sorted(name for name, case in corpus.CASES.items() if case["trained"] and name not in corpus.REFUSED
                 and {"h5", "savedmodel"} <= set(corpus.available_forms(name)))


@pytest.mark.parametrize("name", TRAINED[::7])  # every seventh trained case: each layer family is among them
def test_optimizer_state_comes_back_from_h5_and_savedmodel(corpus_dir, name):
    """The files hold one Adam step; both full-model forms restore it to the same slots, with no slot dropped."""
    import h5py

    import kerasafe as ks

    with h5py.File(corpus_dir / f"{name}.h5") as f:
        group = f["optimizer_weights"]
        saved = {n.decode() if isinstance(n, bytes) else n: group[n][()] for n in group.attrs["weight_names"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "starts fresh" or a dropped slot would fail here
        warnings.filterwarnings("ignore", message=".*(deprecated|mixed precision|Skipping variable loading).*")
        from_h5 = ks.load(corpus_dir / f"{name}.h5")
        from_savedmodel = ks.load(corpus_dir / f"{name}.savedmodel")
    steps = int(saved["iteration:0"])
    assert int(from_h5.optimizer.iterations) == int(from_savedmodel.optimizer.iterations) == steps
    assert _optimizer_state(from_h5) == pytest.approx(_optimizer_state(from_savedmodel), rel=1e-6)
    slots = sorted(float(np.abs(np.asarray(v, "float64")).sum()) for k, v in saved.items() if k != "iteration:0")
    restored = sorted(float(np.abs(np.asarray(v, "float64")).sum()) for v in from_h5.optimizer.variables
                      if v.name not in ("iteration", "learning_rate"))
    assert restored == pytest.approx(slots, rel=1e-6)


@pytest.mark.backend
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_every_case_on_the_other_backends(other_backends, walked, backend):
    """One full-model form of every case (h5, else the SavedModel, else JSON + checkpoint) on TensorFlow and PyTorch.

    Where each array goes is decided in NumPy, the same on every backend, and checked
    above for every form; what differs per backend is the layers' arithmetic.
    """
    if backend not in OTHER_BACKENDS:
        pytest.skip(f"the {backend} backend is not installed (pip install 'kerasafe[{backend}]')")
    report = other_backends[backend].result()
    assert report["backend"] == backend
    for name, results in report["results"].items():
        RESULTS.setdefault(f"{name} [{backend}]", {}).update({f"{form} [{backend}]": r for form, r in results.items()})
    wrong = {name: results for name, results in report["results"].items()
             if not results or not all(corpus.expected_result(name, r, backend, form) for form, r in results.items())}
    assert not wrong, wrong
    known = {name: why for (b, name), why in corpus.BACKEND_ISSUES.items() if b == backend}
    for name, why in known.items():  # still different? then README's note stays true
        assert report["results"][name] != {f: "ok" for f in report["results"][name]}, f"{name} now reproduces on {backend}: {why}"


def summary_lines() -> list[str]:
    """``form: N/M reproduce`` for every form checked in this run (printed at the end by conftest)."""
    counts: dict[str, list[int]] = {}
    for name, results in RESULTS.items():
        base = name.split(" [")[0]
        for form, result in results.items():
            ok, total = counts.setdefault(form, [0, 0])
            promised = base not in corpus.REFUSED or form.split(" [")[0] in corpus.LOADS_FROM.get(base, ())
            counts[form] = [ok + (result == "ok"), total + promised]
    return [f"{form}: {ok}/{total} reproduce" for form, (ok, total) in sorted(counts.items()) if total]
