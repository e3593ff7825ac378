"""The fuzz suite, CI budget: every seed format mutated by hypothesis under a fixed seed, every reader on each case.

Each case runs in the fuzz worker (a child process under RLIMIT_AS and a timeout, with a
marker file that code from the file would write); every reader must return or raise one
named ``kerasafe.errors`` line. ``KERASAFE_FUZZ_EXAMPLES`` sets the cases per seed (CI: 25,
about a minute on 2 cores); ``python tests/fuzz_long.py --minutes 60`` is the long run, and
every input that ever broke the promise is replayed by :func:`test_regression_inputs`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzzing import campaign, seeds
from fuzzing.runner import Runner, findings

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("KERASAFE_FUZZ_EXAMPLES", "25"))
SEED_NAMES = ["keras", "h5", "weights.h5", "safetensors", "json", "yaml", "tf.keras h5", "keras2 weights", "tf.keras json",
              "tf checkpoint", "savedmodel"]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    built = {s.name: s for s in seeds.build(root / "seeds")}
    assert sorted(built) == sorted(SEED_NAMES)  # a seed added to seeds.py is fuzzed here too
    architectures = sorted({str(s.architecture) for s in built.values() if s.architecture})
    with Runner(workdir=root, architectures=architectures) as runner:
        yield root, built, runner.marker, runner


@pytest.mark.parametrize("seed_name", SEED_NAMES)
def test_every_reader_keeps_the_promise_on_mutated_files(fuzz, seed_name):
    root, built, marker, runner = fuzz
    seed = built[seed_name]
    tally = campaign.Tally()
    count = [0]

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        count[0] += 1
        case = campaign.make_case(data.draw, seed, root / "cases" / seed_name.replace(" ", "_"), count[0])
        tally.add(case, runner.run(case))

    one()
    print(*tally.lines())
    assert tally.cases == EXAMPLES
    assert not tally.failing, "\n".join(f"{c['mutator']} {c['path']}: {bad}" for c, bad in tally.failing[:5])
    assert not marker.exists()


def test_regression_inputs(fuzz):
    """Every input a fuzz run ever found breaking the promise (tests/fixtures/fuzz/regressions/) keeps it now.

    The kinds built on purpose (regressions/hostile/) are replayed one by one in test_hostile_files.py."""
    _, built, marker, runner = fuzz
    cases = [(name, case) for name, case in campaign.regression_cases(built) if not name.startswith("hostile/")]
    assert cases
    failing = {name: bad for name, case in cases if (bad := findings(runner.run(case)))}
    assert not failing, failing
    assert not marker.exists()
