"""Files written on one Keras backend load on the others with the same predictions (within 1e-5).

Each backend runs in its own real subprocess (a process holds one Keras backend).
CI installs the tensorflow and torch extras; a backend that is not installed is skipped.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import TESTS, run_python

MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}
AVAILABLE = [b for b, m in MODULES.items() if importlib.util.find_spec(m) is not None]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    for backend in AVAILABLE:
        run_python([str(TESTS / "backend_child.py"), "write", str(root)], backend=backend)
    return root


@pytest.fixture(scope="module")
def read_by(written):
    """reader backend -> writer backend -> that reader's result on that writer's files (one child per reader)."""
    results = {}

    def get(reader):
        if reader not in results:
            folders = [str(written / w) for w in AVAILABLE if w != reader]
            proc = run_python([str(TESTS / "backend_child.py"), "read", *folders], backend=reader)
            lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            results[reader] = {r["writer"]: r for r in lines}
        return results[reader]
    return get


@pytest.mark.backend
@pytest.mark.parametrize("writer", list(MODULES))
@pytest.mark.parametrize("reader", list(MODULES))
def test_cross_backend_predictions(read_by, writer, reader):
    if writer == reader:
        pytest.skip("same backend: covered bitwise by test_roundtrip")
    for b in (writer, reader):
        if b not in AVAILABLE:
            pytest.skip(f"the {b} backend is not installed (pip install 'kerasafe[{b}]')")
    result = read_by(reader)[writer]
    assert result["backend"] == reader
    assert len(result["diffs"]) == 25
    worst = max(result["diffs"].items(), key=lambda kv: kv[1])
    assert worst[1] <= 1e-5, worst


def _resume_child(backend, directory, out, crash_after=None):
    args = [str(TESTS / "resume_child.py"), str(directory), str(out)] + ([str(crash_after)] if crash_after else [])
    return run_python(args, backend=backend, check=crash_after is None)


@pytest.mark.backend
@pytest.mark.parametrize("backend", list(MODULES))
def test_crashed_and_resumed_run_ends_where_a_straight_one_does(backend, tmp_path):
    """Each backend: a run that dies mid-epoch and is run again ends within 1e-6 of one that never died (on JAX
    it dies twice, the second time in a resumed run: the checkpoint logic is the same on every backend).

    On CPU all three end bitwise equal; the tolerance is what the docs promise for
    TensorFlow and PyTorch, whose kernels may differ in summation order elsewhere.
    """
    if backend not in AVAILABLE:
        pytest.skip(f"the {backend} backend is not installed (pip install 'kerasafe[{backend}]')")
    import numpy as np

    _resume_child(backend, tmp_path / "straight", tmp_path / "straight.npz")
    for crash_after in (40, 35) if backend == "jax" else (40,):  # 25 batches per epoch: dies in epoch 2, then in epoch 3
        proc = _resume_child(backend, tmp_path / "resumed", tmp_path / "resumed.npz", crash_after)
        assert proc.returncode == 17, proc.stderr[-2000:]
    _resume_child(backend, tmp_path / "resumed", tmp_path / "resumed.npz")
    straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(straight.files) == sorted(resumed.files) and "val_loss" in straight.files
    for key in straight.files:
        np.testing.assert_allclose(resumed[key], straight[key], rtol=0, atol=1e-6, err_msg=f"{backend} {key}")
    if backend == "jax":  # the promise on JAX/CPU is bitwise
        for key in straight.files:
            np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
