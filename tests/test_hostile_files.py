"""Each kind of hostile or damaged file the fuzzer met, through every reader.

The files are kept in tests/fixtures/fuzz/regressions/hostile/ (built by fuzzing/hostile.py,
which says how each was made); kinds too large to keep are built each run. Every reader
(``ks.load``, ``ks.load(arch, weights=)``, ``ks.load_weights``, ``ks.inspect``, ``ks.verify``,
``kerasafe inspect``, ``kerasafe verify``) runs on each in the fuzz worker (a child process
under a memory limit and a timeout, in a folder where code from the file would leave a
marker), and each must return or raise one named ``kerasafe.errors`` line.
"""

from __future__ import annotations

import json

import pytest

from fuzzing import campaign, hostile, seeds
from fuzzing.runner import Runner, findings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    built = {s.name: s for s in seeds.build(root / "seeds")}
    architectures = sorted({str(s.architecture) for s in built.values() if s.architecture})
    with Runner(workdir=root, architectures=architectures) as runner:
        yield root, built, runner


def hostile_file(kind: str, built: dict, folder) -> str:
    """The kept file of ``kind``; a kind that is not kept must be one too large to keep, and is built."""
    path = hostile.kept(kind)
    if path is not None:
        return str(path)
    path = hostile.build(kind, built, folder)
    assert campaign.folder_bytes(folder) > campaign.KEEP_BYTES, f"{kind!r} is small enough to keep: run `python -m fuzzing.hostile` in tests/"
    return str(path)


def test_every_kept_file_is_a_kind_still_built():
    """No stale kept file: each record names a kind fuzzing/hostile.py still builds."""
    records = {p.stem for p in hostile.KEPT.glob("*.json")}
    assert records and records <= {hostile.slug(k) for k in hostile.HOSTILE}
    for kind in hostile.HOSTILE:
        if hostile.kept(kind) is not None:
            record = json.loads((hostile.KEPT / f"{hostile.slug(kind)}.json").read_text())
            assert record["seed"] == hostile.HOSTILE[kind][0] and record["mutator"] == f"hostile/{kind}"


@pytest.mark.parametrize("kind", sorted(hostile.HOSTILE))
def test_every_reader_names_a_hostile_file_in_one_line(corpus, kind):
    root, built, runner = corpus
    seed = built[hostile.HOSTILE[kind][0]]
    path = hostile_file(kind, built, root / "cases" / hostile.slug(kind))
    outcome = runner.run({"path": path, "architecture": str(seed.architecture) if seed.architecture else None,
                          "weights": str(seed.weights) if seed.weights else None})
    assert not findings(outcome), outcome
    assert not runner.marker.exists()
    assert any(v.startswith("refused:") for v in outcome.values()), f"no reader noticed anything: {outcome}"


RUN_UNSAFELY = """
import io, json, sys, zipfile
kind, path = sys.argv[1], sys.argv[2]
if kind == "Lambda bytecode in config":
    import base64, marshal, types
    layers = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
    function = next(layer for layer in layers if layer["class_name"] == "Lambda")["config"]["function"]["config"]
    # what tf.keras 2's func_load did with a Lambda's bytecode (Keras 3's wants a tuple of defaults, JSON has a list)
    code = marshal.loads(base64.b64decode(function["code"]))
    types.FunctionType(code, globals(), None, tuple(function["defaults"]))(0)
elif kind == "YAML python tag":
    import yaml
    yaml.unsafe_load(open(path))
elif kind == "pickle in the weights":
    import numpy as np
    np.load(io.BytesIO(zipfile.ZipFile(path).read("model.weights.npz")), allow_pickle=True)["layers/conv/vars/0"]
elif kind == "graph-only SavedModel whose initializer writes a file":
    import tensorflow as tf
    tf.saved_model.load(path)
"""
CODE_BEARING = ["Lambda bytecode in config", "YAML python tag", "pickle in the weights", "graph-only SavedModel whose initializer writes a file"]


@pytest.mark.parametrize("kind", CODE_BEARING)
def test_a_kept_code_bearing_file_writes_the_marker_where_it_is_replayed(kind, tmp_path):
    """What makes the replay above meaningful: run unsafely (as a careless loader would) from any folder, the
    kept file's code writes the marker in that folder, where the fuzz worker looks for it."""
    import os
    import subprocess
    import sys

    from fuzzing.runner import MARKER

    if "SavedModel" in kind:
        pytest.importorskip("tensorflow")
    path = hostile.kept(kind)
    assert path is not None, kind
    env = dict(os.environ, KERAS_BACKEND="jax" if "SavedModel" not in kind else "tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", RUN_UNSAFELY, kind, str(path)], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert (tmp_path / MARKER).exists(), f"{kind}: running the kept file did not write {MARKER} in its folder"
