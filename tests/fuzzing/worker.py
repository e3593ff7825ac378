"""Child process: run every reader on each case it is sent and report one JSON outcome per case.

The parent (runner.py) sends one JSON line per case and kills this process if a case
hangs; a crash (a signal) ends it. Memory is bounded by RLIMIT_AS, set after the imports
(the frameworks reserve address space while importing): a reader that allocates more
than the bound fails with MemoryError, which is a finding. A case that makes a file at
MARKER (the path every code-bearing mutation tries to write) ran code from the file.

Outcomes per reader: "ok", "refused:<KerasafeError subclass>", or a finding:
"escape:<type>: <message>", "bad-message: <message>" (not one line, or the file unnamed),
"cli:<code>: <stderr>" (the CLI printed more than one line or failed internally).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import resource
import sys
import warnings


def _vm_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _judge_error(exc, paths: list[str]) -> str:
    from kerasafe import errors

    if not isinstance(exc, errors.KerasafeError):
        return f"escape:{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    text = str(exc)
    if "\n" in text or len(text) > 2000 or not any(p in text for p in paths) or ": expected " not in text:
        return f"bad-message: {text[:300]!r}"
    return f"refused:{type(exc).__name__}"


def _cli(argv: list[str], paths: list[str]) -> str:
    from kerasafe import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    text = stderr.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    if code in (0, cli.EXIT_MISMATCH) and not lines:
        return "ok"
    if code in (cli.EXIT_ERROR, cli.EXIT_MISMATCH) and len(lines) == 1 and any(p in lines[0] for p in paths):
        return "refused:cli"
    return f"cli:{code}: {text[:300]!r}"


def run_case(case: dict, templates: dict) -> dict:
    import kerasafe as ks

    path = case["path"]
    # an error may rightly name any file the reader was given (the case, or the seed it was joined with)
    paths = [p for p in (path, str(pathlib.Path(path).resolve()), case.get("architecture"), case.get("weights")) if p]
    readers = {
        "load": lambda: ks.load(path),
        "inspect": lambda: ks.inspect(path),
        "verify": lambda: ks.verify(path),
    }
    if case.get("architecture"):  # a weights file: joined with its architecture, and into a built model
        readers["load(arch, weights=)"] = lambda: ks.load(case["architecture"], weights=path)
        readers["load_weights"] = lambda: ks.load_weights(templates[case["architecture"]], path)
    if case.get("weights"):  # an architecture file: joined with its weights
        readers["load(arch, weights=)"] = lambda: ks.load(path, weights=case["weights"])
    out = {}
    for name, call in readers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
            out[name] = "ok"
        except RecursionError as exc:
            out[name] = f"escape:RecursionError: {str(exc)[:200]}"
        except MemoryError:
            out[name] = "escape:MemoryError"
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding this suite looks for
            out[name] = _judge_error(exc, paths)
    for command in ("inspect", "verify"):
        out[f"kerasafe {command}"] = _cli([command, path], paths)
    return out


def main() -> None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import kerasafe as ks

    headroom = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
    templates = {}
    for arch in json.loads(os.environ.get("KERASAFE_FUZZ_ARCHITECTURES", "[]")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            templates[arch] = ks.load(arch)
    limit = _vm_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(3000)
    marker = pathlib.Path(os.environ["KERASAFE_FUZZ_MARKER"])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        outcome = run_case(case, templates)
        if marker.exists():
            outcome["code"] = "code-ran: the marker file was written"
            marker.unlink()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
