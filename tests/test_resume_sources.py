"""Every kind of data ks.fit reads resumes exactly after SIGKILL: killed 5 times at random moments, then run to the end,
the script ends bitwise where an uninterrupted run of it ends (JAX on the CPU)."""

from __future__ import annotations

import pytest

from test_resume import killed_and_resumed_equals_straight

SOURCES = ["arrays_split_weights", "pydataset", "tfdata", "grain", "dataloader", "generator"]


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_each_source_killed_five_times_ends_as_a_straight_run(tmp_path, source):
    killed_and_resumed_equals_straight(tmp_path, "25", source, kills_wanted=5)
