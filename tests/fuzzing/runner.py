"""Parent side: a worker process (worker.py) that runs cases, restarted after a hang or a crash.

Example:
    >>> with Runner(workdir=pathlib.Path("/tmp/fuzz"), architectures=[]) as runner:  # doctest: +SKIP
    ...     runner.run({"path": "damaged.keras"})
    {'load': 'refused:CorruptFileError', ...}
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys

HERE = pathlib.Path(__file__).parent
# A case's every reader together; loading a small model takes about a second.
CASE_TIMEOUT_S = 60
START_TIMEOUT_S = 180
# What code carried by a hostile file writes. Relative: the worker runs in the runner's folder, so a
# file kept in the regression corpus still writes the marker that is checked wherever it is replayed.
MARKER = pathlib.Path("kerasafe-fuzz-marker")


class Runner:
    def __init__(self, *, workdir: pathlib.Path, architectures: list[str], headroom: int = 1 << 30):
        self.workdir, self.architectures, self.headroom = workdir, architectures, headroom
        self.marker = workdir / MARKER  # exists after a case: the case ran code from its file
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        env = dict(os.environ, KERASAFE_FUZZ_MARKER=str(self.marker), KERAS_BACKEND="jax",
                   KERASAFE_FUZZ_ARCHITECTURES=json.dumps(self.architectures), COLUMNS="200")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen([sys.executable, "-m", "fuzzing.worker", str(self.headroom)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=self.workdir)
        reply = self._read(START_TIMEOUT_S)
        if reply is None or not reply.get("ready"):
            raise RuntimeError(f"the fuzz worker did not start: {reply}")

    def _read(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, case: dict) -> dict:
        """Every reader's outcome for ``case``; {"process": ...} for a hang or a crash (the worker is restarted)."""
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write(json.dumps(case) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._read(CASE_TIMEOUT_S)
        if reply is not None:
            return reply
        code = self.process.poll()
        self.close()
        if code is None:
            return {"process": f"hang: no answer in {CASE_TIMEOUT_S} s"}
        if code < 0:
            return {"process": f"crash: {signal.Signals(-code).name}"}
        return {"process": f"exit {code}"}


def findings(outcome: dict) -> dict:
    """The outcomes that break kerasafe's promise (anything but ok and a named refusal)."""
    return {k: v for k, v in outcome.items() if not (v == "ok" or v.startswith("refused:"))}
