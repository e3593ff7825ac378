"""Test set-up: the JAX backend unless the caller chose one, and helpers for subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

TESTS = pathlib.Path(__file__).parent


def savedmodel_writable() -> bool:
    """Whether this process can write a SavedModel: TensorFlow installed, and on the PyTorch backend
    torch_xla too (Keras exports through it; CI does not install it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return False
    return os.environ.get("KERAS_BACKEND") != "torch" or importlib.util.find_spec("torch_xla") is not None


def run_python(code_or_args, *, backend: str | None = None, cwd=None, timeout=600, check=True):
    """Run a real Python subprocess with the tests folder importable; return CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if backend:
        env["KERAS_BACKEND"] = backend
    args = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else [sys.executable, *code_or_args]
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_cli(*args, cwd=None, timeout=300, columns=200):
    env = dict(os.environ, COLUMNS=str(columns))  # rich tables fit paths on one line
    return subprocess.run(
        [sys.executable, "-m", "kerasafe.cli", *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


# tests/test_without_tensorflow.py runs these files again in a child pytest with TensorFlow hidden. When
# the whole suite runs, only their tests marked ``tensorflow`` (which need TensorFlow itself) run here as
# well: kerasafe reads every legacy form without TensorFlow, so the rest would run the same code twice.
RUN_AGAIN_WITHOUT_TENSORFLOW = ("test_legacy.py", "test_legacy_optimizers.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KERASAFE_TEST_WITHOUT_TENSORFLOW") == "1":
        return
    if not any(item.nodeid.endswith("::test_legacy_tests_pass_without_tensorflow") for item in items):
        return  # the child does not run: every test runs here
    twice = [item for item in items if item.path.name in RUN_AGAIN_WITHOUT_TENSORFLOW and item.get_closest_marker("tensorflow") is None]
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [item for item in items if item not in set(twice)]


def _corpus_lines() -> list[str]:
    module = sys.modules.get("test_legacy_layers")
    return module.summary_lines() if module is not None else []


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its corpus counts to the controller (which prints them)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["legacy_corpus"] = _corpus_lines()


CORPUS_FROM_WORKERS: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    CORPUS_FROM_WORKERS.extend(getattr(node, "workeroutput", {}).get("legacy_corpus", []))


def pytest_terminal_summary(terminalreporter):
    """The legacy corpus's count per form (tests/test_legacy_layers.py), when it ran."""
    lines = _corpus_lines() or CORPUS_FROM_WORKERS
    if lines:
        terminalreporter.section("tf.keras 2 layer corpus")
        for line in lines:
            terminalreporter.write_line(line)
