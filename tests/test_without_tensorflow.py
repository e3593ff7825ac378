"""The legacy tests again, on a machine without TensorFlow: every artifact must still open.

CI installs TensorFlow (for the TF backend tests), so this runs tests/test_legacy.py and
tests/test_legacy_optimizers.py in a child pytest with TensorFlow and tf_keras unimportable in it and in every process it
starts (tests/sitecustomize.py). Tests that need TensorFlow itself skip there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import TESTS


@pytest.mark.skipif(os.environ.get("KERASAFE_TEST_WITHOUT_TENSORFLOW") == "1", reason="already the run without TensorFlow")
def test_legacy_tests_pass_without_tensorflow(tmp_path):
    env = dict(os.environ, KERASAFE_TEST_WITHOUT_TENSORFLOW="1", KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
         f"--basetemp={tmp_path / 'base'}", str(TESTS / "test_legacy.py"), str(TESTS / "test_legacy_optimizers.py")],
        env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=1200,
    )
    tail = proc.stdout[-12000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    passed = int(re.search(r"(\d+) passed", proc.stdout).group(1))
    skipped = re.search(r"(\d+) skipped", proc.stdout)
    assert passed >= 120, tail  # the corpus and optimizer tests ran, not only a few
    assert skipped is None or int(skipped.group(1)) <= 3, tail  # only the tests that need TensorFlow itself


def test_the_hiding_works():
    """The child above really has no TensorFlow (the hiding is what makes it a no-TensorFlow run)."""
    code = "import tensorflow"
    env = dict(os.environ, KERASAFE_TEST_WITHOUT_TENSORFLOW="1", PYTHONPATH=str(TESTS))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "hidden by the test" in proc.stderr
