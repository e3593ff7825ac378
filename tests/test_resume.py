"""ks.fit resumes exactly: a run killed with SIGKILL at random moments ends bitwise where an uninterrupted run ends."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TESTS
from kerasafe.checkpoint import store


def _start(directory, out, save_freq, source, backend=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    if backend:
        env["KERAS_BACKEND"] = backend
    return subprocess.Popen(
        [sys.executable, str(TESTS / "fit_child.py"), str(directory), str(out), save_freq, source],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def _run_to_end(directory, out, save_freq, source, backend=None) -> float:
    """Run until done; return the seconds from 'ready' to 'done' (the training itself)."""
    proc = _start(directory, out, save_freq, source, backend)
    assert proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "done" in stdout
    return time.perf_counter() - started


def _newest(directory) -> int:
    if isinstance(directory, str):  # on a store: one listing request (the poll must be quick)
        import fsspec

        fs = fsspec.filesystem(directory.split("://")[0])
        fs.invalidate_cache()
        try:
            keys = fs.find(directory)
        except FileNotFoundError:
            return 0
        steps = [int(k.split("/")[-2][5:]) for k in keys if k.endswith("/COMMIT") and k.split("/")[-2].startswith("ckpt-")]
        return max(steps, default=0)
    steps = [c.step for c in store.committed(directory)]
    return steps[-1] if steps else 0


def killed_and_resumed_equals_straight(tmp_path, save_freq, source="arrays", kills_wanted=5, backend=None, base=None):
    """Run the script straight; run it again killed ``kills_wanted`` times at random moments, then to the end; compare.

    ``base``: where the checkpoint directories go (an object-store URL), else ``tmp_path``.
    """
    where = {name: f"{base}/{name}" if base else tmp_path / name for name in ("reference", "resumed")}
    _run_to_end(where["reference"], tmp_path / "reference.npz", save_freq, source, backend)
    reference = np.load(tmp_path / "reference.npz")

    rng = random.Random(f"{save_freq}{source}")
    kills = 0
    resumed_from = []  # the newest committed step after each kill: the run must really resume
    for _ in range(4 * kills_wanted):
        proc = _start(where["resumed"], tmp_path / "resumed.npz", save_freq, source, backend)
        assert proc.stdout.readline().strip() == "ready"
        # Wait until this run has committed something new, then kill it a random moment
        # later: sometimes between checkpoints, sometimes in the middle of writing one.
        baseline = _newest(where["resumed"])
        deadline = time.monotonic() + 120
        while proc.poll() is None and _newest(where["resumed"]) <= baseline and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            resumed_from.append(_newest(where["resumed"]))
        if kills >= kills_wanted:
            break
    assert kills >= kills_wanted
    # Progress kept across kills: each kill came after a new commit.
    assert resumed_from == sorted(resumed_from) and len(set(resumed_from)) >= kills_wanted - 1, resumed_from
    _run_to_end(where["resumed"], tmp_path / "resumed.npz", save_freq, source, backend)
    resumed = np.load(tmp_path / "resumed.npz")
    assert sorted(resumed.files) == sorted(reference.files)
    # Weights, and every metric Keras logged for every epoch (training metrics of epochs cut
    # mid-way included), bitwise.
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(reference.files)
    for key in reference.files:
        np.testing.assert_array_equal(resumed[key], reference[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("save_freq", ["epoch", "25"])
def test_killed_runs_end_bitwise_equal_to_an_uninterrupted_one(tmp_path, save_freq):
    killed_and_resumed_equals_straight(tmp_path, save_freq, kills_wanted=6)
