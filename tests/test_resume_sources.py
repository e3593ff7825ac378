"""Every kind of data ks.fit reads resumes exactly after SIGKILL: killed 3 times at random moments (test_resume.py kills the arrays run 6 times), then run to the end,
the script ends bitwise where an uninterrupted run of it ends (JAX on the CPU)."""

from __future__ import annotations

import pytest

from test_resume import killed_and_resumed_equals_straight

SOURCES = ["arrays_split_weights", "pydataset", "tfdata", "grain", "dataloader", "generator"]


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_each_source_killed_three_times_ends_as_a_straight_run(tmp_path, source):
    killed_and_resumed_equals_straight(tmp_path, "25", source, kills_wanted=3)


# The other backends, each with the source native to it: SIGKILLed children on TensorFlow and PyTorch
# (every source on them is also resumed after in-process crashes: test_fit_sources.py).
@pytest.mark.slow
@pytest.mark.backend
@pytest.mark.parametrize("backend,source", [("tensorflow", "tfdata"), ("torch", "dataloader")])
def test_killed_three_times_on_the_other_backends(tmp_path, backend, source):
    killed_and_resumed_equals_straight(tmp_path, "25", source, kills_wanted=3, backend=backend)
