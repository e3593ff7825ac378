"""One fuzz case from a seed (hypothesis draws the mutation), and what to keep when a case breaks the promise.

Used by tests/test_fuzz.py (a fixed-seed budget in CI) and tests/fuzz_long.py (longer, keeping
every failing input under tests/fixtures/fuzz/regressions/ for the suite to replay).
"""

from __future__ import annotations

import collections
import hashlib
import json
import pathlib
import shutil

from hypothesis import strategies as st

from . import mutators
from .mutators import MUTATORS
from .runner import MARKER, findings
from .seeds import Seed

REGRESSIONS = pathlib.Path(__file__).parent.parent / "fixtures" / "fuzz" / "regressions"
# The largest regression input kept in the repository (bombs compress well; the rest is small).
KEEP_BYTES = 4 << 20


def make_case(draw, seed: Seed, workdir: pathlib.Path, number: int) -> dict:
    """Write one mutated copy of ``seed`` under ``workdir``; return the case the worker runs."""
    mutator = draw(st.sampled_from(MUTATORS[seed.kind]))
    case_dir = workdir / f"case{number}"
    case_dir.mkdir(parents=True)
    if seed.kind == "tf-checkpoint":
        path = case_dir / "ckpt" / seed.path.name
    else:
        # mostly the seed's own name; sometimes another suffix, since kerasafe judges a file by its content
        suffix = "".join(seed.path.suffixes) if seed.kind == "savedmodel" or draw(st.integers(0, 4)) else \
            draw(st.sampled_from([".keras", ".h5", ".weights.h5", ".safetensors", ".json", ".yaml", ""]))
        path = case_dir / f"case{suffix}"
    mutators.CHOSEN.clear()
    mutator(draw, seed.path, path, MARKER)
    return {"path": str(path), "seed": seed.name, "mutator": "/".join([mutator.__name__, *mutators.CHOSEN]),
            "architecture": str(seed.architecture) if seed.architecture else None,
            "weights": str(seed.weights) if seed.weights else None}


def folder_bytes(folder: pathlib.Path) -> int:
    """What keeping ``folder`` in the repository costs (compared with KEEP_BYTES)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def keep(case: dict, outcome: dict) -> pathlib.Path | None:
    """Copy a failing case into the regression corpus (named by its content hash) with what it did."""
    path = pathlib.Path(case["path"])
    files = sorted(p for p in path.parent.rglob("*") if p.is_file())
    if folder_bytes(path.parent) > KEEP_BYTES:
        return None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]
    target = REGRESSIONS / case["seed"].replace(" ", "_") / digest
    if target.exists():
        return target
    shutil.copytree(path.parent, target)
    record = {"seed": case["seed"], "mutator": case["mutator"], "entry": str(path.relative_to(path.parent)),
              "findings": findings(outcome)}
    (target.parent / f"{digest}.json").write_text(json.dumps(record, indent=1) + "\n")
    return target


def regression_cases(seeds: dict[str, Seed]) -> list[tuple[str, dict]]:
    """(id, case) for every kept regression input, paired with this run's seeds' architecture and weights."""
    out = []
    for record_path in sorted(REGRESSIONS.glob("*/*.json")):
        record = json.loads(record_path.read_text())
        seed = seeds[record["seed"]]
        entry = record_path.with_suffix("") / record["entry"]
        out.append((f"{record_path.parent.name}/{record_path.stem}", {
            "path": str(entry), "seed": seed.name, "mutator": record["mutator"],
            "architecture": str(seed.architecture) if seed.architecture else None,
            "weights": str(seed.weights) if seed.weights else None}))
    return out


class Tally:
    """Outcome counts over a run: per reader outcome kind, and the findings."""

    def __init__(self):
        self.outcomes = collections.Counter()
        self.cases = 0
        self.failing: list[tuple[dict, dict]] = []

    def add(self, case: dict, outcome: dict) -> dict:
        self.cases += 1
        for reader, result in outcome.items():
            self.outcomes[result.split(":")[0] if result != "ok" else "ok"] += 1
        bad = findings(outcome)
        if bad:
            self.failing.append((case, bad))
        return bad

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return [f"{self.cases} cases, {len(self.failing)} breaking the promise; reader outcomes: {kinds}"]
