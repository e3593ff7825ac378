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


@pytest.mark.parametrize("name", sorted(corpus.CASES))
def test_case_loads_and_predicts_as_tf_keras_did_in_every_form(corpus_dir, name):
    results = corpus.check_case(corpus_dir, name)
    RESULTS[name] = results
    wrong = {form: result for form, result in results.items() if not corpus.expected_result(name, result)}
    assert results and not wrong, wrong


def test_a_lambda_layer_loads_when_trusted_and_predicts_as_tf_keras_did(corpus_dir):
    """Refused in safe mode (corpus.REFUSED); with safe_mode=False the same Python's bytecode runs."""
    import kerasafe as ks

    reference = np.load(corpus_dir / "Lambda_python.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (ks.load(corpus_dir / "Lambda_python.h5", safe_mode=False),
                      ks.load(corpus_dir / "Lambda_python.json", weights=corpus_dir / "Lambda_python-weights.h5", safe_mode=False)):
            np.testing.assert_allclose(model.predict(reference["x0"], verbose=0), reference["y0"], rtol=1e-5, atol=1e-5)


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


OTHER_BACKENDS = [b for b in ("tensorflow", "torch") if importlib.util.find_spec(b) is not None]


@pytest.mark.backend
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_every_case_on_the_other_backends(corpus_dir, backend):
    """One full-model form of every case (h5, else the SavedModel, else JSON + checkpoint) on TensorFlow and PyTorch.

    Where each array goes is decided in NumPy, the same on every backend, and checked
    above for every form; what differs per backend is the layers' arithmetic.
    """
    if backend not in OTHER_BACKENDS:
        pytest.skip(f"the {backend} backend is not installed (pip install 'kerasafe[{backend}]')")
    proc = run_python([str(TESTS / "legacy_corpus.py"), str(corpus_dir), "h5,savedmodel,json+ckpt,json+-weights.h5"],
                      backend=backend, timeout=1500)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    for name, results in report["results"].items():
        RESULTS.setdefault(f"{name} [{backend}]", {}).update({f"{form} [{backend}]": r for form, r in results.items()})
    wrong = {name: results for name, results in report["results"].items()
             if not results or not all(corpus.expected_result(name, r, backend) for r in results.values())}
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
            counts[form] = [ok + (result == "ok"), total + (base not in corpus.REFUSED)]
    return [f"{form}: {ok}/{total} reproduce" for form, (ok, total) in sorted(counts.items()) if total]
