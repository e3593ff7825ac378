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


@pytest.mark.backend
@pytest.mark.parametrize("writer", list(MODULES))
@pytest.mark.parametrize("reader", list(MODULES))
def test_cross_backend_predictions(written, writer, reader):
    if writer == reader:
        pytest.skip("same backend: covered bitwise by test_roundtrip")
    for b in (writer, reader):
        if b not in AVAILABLE:
            pytest.skip(f"the {b} backend is not installed (pip install 'kerasafe[{b}]')")
    proc = run_python([str(TESTS / "backend_child.py"), "read", str(written / writer)], backend=reader)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == reader
    assert len(result["diffs"]) == 25
    worst = max(result["diffs"].items(), key=lambda kv: kv[1])
    assert worst[1] <= 1e-5, worst
