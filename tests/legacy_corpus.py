"""The tf.keras 2 layer corpus: one small model per tf.keras 2 layer class, in every form tf.keras 2 saved.

Written by tests/fixtures/legacy/make_layer_corpus.py with the real tf_keras 2.21 and
committed as ``layers.tar.xz`` with ``layers_index.json``. :func:`check_case` loads one
case in every form with kerasafe and compares its predictions with tf.keras's;
test_legacy_layers.py runs it on the test process's backend, and on the others
through ``python legacy_corpus.py BACKEND_DIR CASE...`` in a child process.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tarfile
import warnings

import numpy as np

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "legacy"
ARCHIVE = FIXTURES / "layers.tar.xz"
INDEX = json.loads((FIXTURES / "layers_index.json").read_text())
CASES = INDEX["cases"]

# Each form tf.keras 2 saved a model in: (architecture file, weights file or None); {c} is the case name.
FORMS = {
    "h5": ("{c}.h5", None),
    "json+weights.h5": ("{c}.json", "{c}.weights.h5"),
    "json+-weights.h5": ("{c}.json", "{c}-weights.h5"),
    "yaml+-weights.h5": ("{c}.yaml", "{c}-weights.h5"),
    "json+ckpt": ("{c}.json", "{c}.ckpt/{c}"),
    "json+tfckpt": ("{c}.json", "{c}.tfckpt"),
    "savedmodel": ("{c}.savedmodel", None),
}
# Which generator outputs each form needs (index "forms" says which tf.keras could write).
NEEDS = {"h5": ["h5"], "json+weights.h5": ["json", "weights.h5"], "json+-weights.h5": ["json", "-weights.h5"],
         "yaml+-weights.h5": ["yaml", "-weights.h5"], "json+ckpt": ["json", "ckpt"], "json+tfckpt": ["json", "tfckpt"],
         "savedmodel": ["savedmodel"]}

# The forms that hold a whole compiled model, optimizer state included.
OPTIMIZER_FORMS = ("h5", "savedmodel")
# Cases kerasafe refuses by design, with the words its error must contain (README lists the classes and why).
ADAPTED_VOCABULARY = "learned by adapt(), which this file does not hold"
REFUSED = {
    "DenseFeatures": ("UnsupportedOperationError", "'dense_features' (DenseFeatures)", "feature columns"),
    "DynamicLookup": ("UnsupportedOperationError", "'dynamic_lookup' (DynamicLookup)", "learns from every call"),
    "DynamicEmbedding": ("UnsupportedOperationError", "(DynamicEmbedding)", "learns from every call"),
    "tf_einsum_unreloadable": ("UnsupportedOperationError", "'tf.einsum' (TFOpLambda)", "without any of its tensors"),
    "Lambda_python": ("UnsafeContentError", "Lambda layer 'lambda'", "safe_mode=False"),
    "StringLookup_adapted_multi_hot": ("UnsupportedOperationError", "(StringLookup)", ADAPTED_VOCABULARY),
    "IntegerLookup_adapted_invert": ("UnsupportedOperationError", "(IntegerLookup)", ADAPTED_VOCABULARY),
    "IntegerLookup_adapted_one_hot": ("UnsupportedOperationError", "(IntegerLookup)", ADAPTED_VOCABULARY),
    "TextVectorization": ("UnsupportedOperationError", "(TextVectorization)", ADAPTED_VOCABULARY),
    "TextVectorization_tf_idf_bigrams": ("UnsupportedOperationError", "(TextVectorization)", ADAPTED_VOCABULARY),
}
# Forms of a refused case that do hold what the others lack, and load: an adapted vocabulary is in a SavedModel's graph.
LOADS_FROM = {name: {"savedmodel"} for name, (*_, why) in REFUSED.items() if why == ADAPTED_VOCABULARY}
# float16 arithmetic differs between TensorFlow's kernels and the others' in the last float16 bit.
TOLERANCE = {"mixed_float16_policy": 2e-3}
# Keras 3's own arithmetic differs from TensorFlow 2's here, on one backend (README, "Known differences").
BACKEND_ISSUES = {
    ("tensorflow", "Conv1D_channels_first"): "Keras 3 on TensorFlow computes a channels_first Conv1D through XLA "
                                             "(TensorFlow's CPU kernels have none) and gets it wrong: 0.14 off NumPy's",
}


def extract(destination: pathlib.Path) -> pathlib.Path:
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(destination, filter="data")
    return destination / "layers"


def available_forms(name: str) -> list[str]:
    written = CASES[name]["forms"]
    return [form for form, needs in NEEDS.items() if all(written.get(n) is True for n in needs)]


def _inputs(reference):
    named = sorted(k for k in reference.files if k.startswith("x_"))
    if named:
        return {k[2:]: reference[k] for k in named}
    xs = [reference[f"x{i}"] for i in range(sum(1 for k in reference.files if k.startswith("x")))]
    return xs[0] if len(xs) == 1 else xs


def _outputs(reference) -> list:
    return [reference[f"y{i}"] for i in range(sum(1 for k in reference.files if k.startswith("y")))]


def predict(model, x):
    """The model's outputs as a list of NumPy arrays.

    Keras 3 has string tensors only on TensorFlow: elsewhere a model with string inputs
    runs its layers one by one, eagerly (the preprocessing layers take NumPy strings).
    """
    import keras

    values = x.values() if isinstance(x, dict) else x if isinstance(x, list) else [x]
    if any(np.asarray(v).dtype.kind in "SU" for v in values) and keras.backend.backend() != "tensorflow":
        if isinstance(model, keras.Sequential):
            out = x
            for layer in model.layers:
                out = layer(out)
        else:
            out = model._run_through_graph(x, operation_fn=lambda op: op)
    else:
        if keras.backend.backend() == "jax":
            out = model.predict(x, verbose=0)
        else:  # eager: on TensorFlow and PyTorch faster than tracing for one small batch
            try:
                out = model(x, training=False)
            except Exception:  # noqa: BLE001 - TensorFlow's CPU kernels lack channels_first and dilated transposed
                model.jit_compile = True  # convolutions; XLA has them (tf.keras's predictions came from XLA too)
                out = model.predict(x, verbose=0)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in (out if isinstance(out, list | tuple) else [out])]


def _compare(ours: list, theirs: list, tolerance: float) -> str:
    if len(ours) != len(theirs):
        return f"{len(ours)} outputs, tf.keras had {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.dtype.kind in "SUO" or b.dtype.kind in "SUO":
            if a.shape != b.shape or not (a.astype(str) == b.astype(str)).all():
                return f"output {i}: strings differ"
            continue
        if a.shape != b.shape:
            return f"output {i}: shape {a.shape}, tf.keras {b.shape}"
        a, b = a.astype("float64"), b.astype("float64")
        if not np.allclose(a, b, rtol=tolerance, atol=tolerance):
            return f"output {i}: max |diff| {np.abs(a - b).max():.3g}"
    return "ok"


def saved_optimizer_slots(h5_path: pathlib.Path) -> dict[str, np.ndarray] | None:
    """The optimizer arrays tf.keras wrote into a full-model .h5 ({name: array}), or None if it wrote none."""
    import h5py

    with h5py.File(h5_path) as f:
        if "optimizer_weights" not in f:
            return None
        group = f["optimizer_weights"]
        return {n.decode() if isinstance(n, bytes) else n: group[n][()] for n in group.attrs["weight_names"]}


def _optimizer_result(model, saved: dict[str, np.ndarray]) -> str:
    """"ok" if ``model``'s optimizer holds the file's step count and every slot array (compared by sum), else what differs."""
    from kerasafe.legacy.optimizers import slot_holder

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return "optimizer: none restored"
    optimizer = slot_holder(optimizer)  # a LossScaleOptimizer's slots are its inner optimizer's
    steps = int(saved["iteration:0"])
    if int(optimizer.iterations) != steps:
        return f"optimizer: {int(optimizer.iterations)} steps, the file {steps}"
    slots = sorted(float(np.abs(np.asarray(v, "float64")).sum()) for k, v in saved.items() if k != "iteration:0")
    restored = sorted(float(np.abs(np.asarray(v, "float64")).sum()) for v in optimizer.variables
                      if v.name not in ("iteration", "learning_rate"))
    if len(restored) != len(slots) or not np.allclose(restored, slots, rtol=1e-6, atol=0):
        return f"optimizer: {len(restored)} slots restored, the file has {len(slots)} (or their values differ)"
    return "ok"


def _load_form(ks, root: pathlib.Path, name: str, form: str, json_model=None):
    architecture, weights = (p.format(c=name) if p else None for p in FORMS[form])
    if json_model is not None and architecture.endswith(".json") and weights:
        return ks.load_weights(json_model, root / weights)
    return ks.load(root / architecture, weights=(root / weights) if weights else None)


def _same_architecture(a, b) -> bool:
    """Whether two loaded models are the same computation (same config, variables in the same order)."""
    if type(a) is not type(b) or [tuple(v.shape) for v in a.weights] != [tuple(v.shape) for v in b.weights]:
        return False
    from kerasafe.legacy.weights import keeps_old_weights_as_state

    if any(keeps_old_weights_as_state(layer) for layer in a._flatten_layers(include_self=False)):
        return False  # state outside the variables (an adapted summary, a vocabulary)
    try:
        return a.get_config() == b.get_config()
    except Exception:  # noqa: BLE001 - a config that cannot be compared: predict with the model itself
        return False


def check_case(root: pathlib.Path, name: str, forms=None, convert_to: pathlib.Path | None = None) -> dict[str, str]:
    """{form: "ok" | "refused: ..." | what went wrong} for one case (forms: all it has by default).

    The JSON architecture is built once and every JSON-side weights file is loaded into
    it in turn (ks.load(json, weights=w) is that build plus that load). ``convert_to``: the
    first model that reproduces is saved there as ``NAME.keras`` (what ``kerasafe convert``
    writes: the same load, then ks.save). Another form whose
    model is the same computation (same config, same variables) is checked by putting
    its weights into the first model and predicting there: a model's outputs depend on
    nothing else, and one compiled prediction function then serves the whole case. A
    trained case's full-model forms (OPTIMIZER_FORMS) must also bring back tf.keras's Adam
    step: its step count and every slot array the .h5 holds.
    """
    import kerasafe as ks
    from kerasafe import errors

    reference = np.load(root / f"{name}.npz")
    x, expected = _inputs(reference), _outputs(reference)
    tolerance = TOLERANCE.get(name, 1e-5)
    results, json_model, first = {}, None, None
    for form in forms or available_forms(name):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _load_form(ks, root, name, form, json_model)
                if FORMS[form][0].endswith(".json") and FORMS[form][1] and json_model is None:
                    json_model = model
                runner = model
                if first is not None and model is not first and _same_architecture(model, first):
                    for mine, theirs in zip(first.weights, model.weights):
                        mine.assign(theirs)
                    runner = first
                results[form] = _compare(predict(runner, x), expected, tolerance)
                if convert_to is not None and results[form] == "ok" and not (convert_to / f"{name}.keras").exists():
                    ks.save(model, convert_to / f"{name}.keras")
                if results[form] == "ok" and form in OPTIMIZER_FORMS and CASES[name]["trained"]:
                    saved = saved_optimizer_slots(root / f"{name}.h5") if (root / f"{name}.h5").is_file() else None
                    if saved is not None:  # the full-model forms hold tf.keras's one Adam step: it comes back too
                        results[form] = _optimizer_result(model, saved)
                first = first or model
        except errors.KerasafeError as exc:
            results[form] = f"refused: {type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported per form, the test says which
            text = str(exc).strip().replace("Exception encountered when calling", "in")
            results[form] = f"{type(exc).__name__}: {' '.join(text.split())[:400]}"
    return results


def expected_result(name: str, result: str, backend: str | None = None, form: str | None = None) -> bool:
    """Whether ``form``'s result is what kerasafe promises for this case (on ``backend``, default the test's)."""
    if (backend, name) in BACKEND_ISSUES:
        return True  # reported by the test that runs it, not hidden
    if name not in REFUSED or form in LOADS_FROM.get(name, ()):
        return result == "ok"
    kind, *words = REFUSED[name]
    return result.startswith(f"refused: {kind}") and all(w in result for w in words)


def plain_keras(root: pathlib.Path, converted: pathlib.Path) -> dict[str, str]:
    """{case: result} for every converted ``.keras`` opened by plain ``keras.saving.load_model`` (kerasafe only imported)."""
    import keras

    import kerasafe  # noqa: F401 - registers the stand-in layers some converted files name

    out = {}
    for path in sorted(converted.glob("*.keras")):
        reference = np.load(root / f"{path.stem}.npz")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = keras.saving.load_model(path)
            out[path.stem] = _compare(predict(model, _inputs(reference)), _outputs(reference), TOLERANCE.get(path.stem, 1e-5))
        except Exception as exc:  # noqa: BLE001 - reported per file
            out[path.stem] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return out


if __name__ == "__main__":  # python legacy_corpus.py CORPUS_DIR [FORM,...] | --plain-keras CORPUS_DIR CONVERTED_DIR
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.argv[1] == "--plain-keras":
        print(json.dumps(plain_keras(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))))
        sys.exit(0)
    root = pathlib.Path(sys.argv[1])
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    out = {}
    for case in CASES:
        forms = [f for f in available_forms(case) if only is None or f in only][:1] if only else None
        out[case] = check_case(root, case, forms)
    import keras

    print(json.dumps({"backend": keras.backend.backend(), "results": out}))
