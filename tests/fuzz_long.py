"""The long fuzz run: every seed, many mutations, every failing input kept as a regression file.

    KERAS_BACKEND=jax .venv/bin/python tests/fuzz_long.py --minutes 60 [--seed 1] [--only keras]

Prints the outcome counts and each finding; failing inputs go to
tests/fixtures/fuzz/regressions/ (replayed by tests/test_fuzz.py). The CI budget of the
same cases is tests/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzzing import campaign, seeds  # noqa: E402
from fuzzing.runner import Runner  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument("--only", action="append", help="seed names to fuzz (default: all)")
    parser.add_argument("--no-keep", action="store_true", help="do not copy failing inputs into the regression corpus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        all_seeds = {s.name: s for s in seeds.build(root / "seeds")}
        chosen = [all_seeds[n] for n in (args.only or all_seeds)]
        tally = campaign.Tally()
        deadline = time.monotonic() + args.minutes * 60
        architectures = sorted({str(s.architecture) for s in all_seeds.values() if s.architecture})
        with Runner(workdir=root, architectures=architectures) as runner:
            number = 0

            def batch(seed):
                """Ten hypothesis examples of one seed: seeds take turns until the time is up."""
                @settings(max_examples=10, database=None, deadline=None, phases=[Phase.generate], derandomize=False,
                          suppress_health_check=list(HealthCheck))
                @given(st.data())
                def one(data):
                    nonlocal number
                    number += 1
                    case = campaign.make_case(data.draw, seed, root / "cases", number)
                    outcome = runner.run(case)
                    bad = tally.add(case, outcome)
                    if bad:
                        kept = None if args.no_keep else campaign.keep(case, outcome)
                        print(f"[{seed.name} {case['mutator']}] {bad} -> {kept}", flush=True)
                return hypothesis.seed(args.seed)(one) if args.seed is not None else one

            while time.monotonic() < deadline:
                for seed in chosen:
                    if time.monotonic() >= deadline:
                        break

                    batch(seed)()
        for line in tally.lines():
            print(line)
    return 1 if tally.failing else 0


if __name__ == "__main__":
    sys.exit(main())
