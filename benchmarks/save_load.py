"""Save and load speed and memory: kerasafe against Keras, safetensors and raw file I/O, in one run.

    python benchmarks/save_load.py                     # 64 MiB and 1 GiB models, table
    python benchmarks/save_load.py --size 256 --size 2048 --repeats 3
    python benchmarks/save_load.py --scaling scaling.png   # + save/load time from 1 MiB to 4 GiB, plotted

For each model size (four square Dense layers, float32, random values) and each format
(.keras, .h5, .weights.h5, .safetensors) it times, round robin, best of ``--repeats``:

- save: kerasafe (``ks.save`` / ``ks.save_weights``), the matching Keras call
  (``keras.saving.save_model``, ``model.save_weights``) or ``safetensors.numpy.save_file``;
  "raw": the same bytes written to one file with fsync. Every save ends with an fsync
  (kerasafe's does; the others get one added), and the page cache is flushed before each.
- load: to a ready model: ``ks.load`` / ``ks.load_weights`` against ``keras.saving.load_model``,
  ``model.load_weights`` or ``safetensors.numpy.load_file`` + ``set_weights``; "raw": the
  bytes read into preallocated arrays + ``set_weights`` on a model built beforehand.
  Files are read from the page cache (all candidates alike).

Peak memory above the model itself is measured for each operation in a fresh
subprocess: peak RSS (``VmHWM``, reset before the operation) minus RSS before it (minus
the loaded model's bytes for loads), and ``tracemalloc``'s peak. Issue 6's targets:
save >= 5x faster than Keras and within 1.3x of raw; load >= 2x faster than Keras and
within 1.3x of raw; memory above the model <= 10% of its bytes; ``kerasafe inspect`` of the
.keras file (a fresh interpreter, start-up included) under 0.5 s; ``ks.verify`` within 1.5x
of reading the file once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMATS = (".keras", ".h5", ".weights.h5", ".safetensors")


def build_model(mib: float, *, layers: int = 4, random: bool = True):
    import keras
    import numpy as np

    width = max(1, int(math.sqrt(mib * 2**20 / 4 / layers)))
    inputs = keras.Input((width,), name="x")
    x = inputs
    for i in range(layers):
        x = keras.layers.Dense(width, use_bias=False, name=f"d{i}")(x)
    model = keras.Model(inputs, x, name="bench")
    if random:
        rng = np.random.default_rng(0)
        for w in model.weights:  # random bytes, so nothing on the way can shortcut zeros
            w.assign(rng.standard_normal(w.shape, dtype="float32"))
    return model


def wide_model(weights: int, mib: float):
    """``weights`` small Dense kernels side by side (a deep chain that long exceeds Python's recursion limit)."""
    import keras

    units = max(1, int(mib * 2**20 / 4 / weights / 16))
    inputs = keras.Input((16,))
    outputs = [keras.layers.Dense(units, use_bias=False)(inputs) for _ in range(weights)]
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


def expected_bytes(mib: float, layers: int = 4) -> int:
    width = max(1, int(math.sqrt(mib * 2**20 / 4 / layers)))
    return layers * width * width * 4


# --- the candidates -------------------------------------------------------------------------------

def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_save(model, path) -> None:
    import numpy as np

    with open(path, "wb") as f:
        for w in model.weights:
            f.write(memoryview(np.ascontiguousarray(np.asarray(w))).cast("B"))
        f.flush()
        os.fsync(f.fileno())


def raw_load(model, path) -> None:
    import numpy as np

    arrays = [np.empty(tuple(w.shape), "float32") for w in model.weights]
    with open(path, "rb", buffering=0) as f:
        for a in arrays:
            f.readinto(memoryview(a).cast("B"))
    model.set_weights(arrays)


def save(impl: str, fmt: str, model, path) -> None:
    import keras

    import kerasafe as ks

    if impl == "raw":
        raw_save(model, path)
    elif impl == "kerasafe":
        (ks.save_weights if fmt == ".weights.h5" else ks.save)(model, path)
    elif impl == "keras":
        if fmt == ".weights.h5":
            model.save_weights(path)
        else:
            keras.saving.save_model(model, path)
        _fsync(path)
    elif impl == "safetensors":
        import numpy as np
        from safetensors.numpy import save_file

        save_file({w.path: np.asarray(w) for w in model.weights}, str(path))
        _fsync(path)


def load(impl: str, fmt: str, path, ready_model):
    """Load ``path``; ``ready_model`` is a built model for the calls that need one."""
    import keras

    import kerasafe as ks

    if impl == "raw":
        raw_load(ready_model, path)
    elif impl == "kerasafe":
        if fmt == ".weights.h5":
            ks.load_weights(ready_model, path)
        else:
            return ks.load(path)
    elif impl == "keras":
        if fmt == ".weights.h5":
            ready_model.load_weights(path)
        else:
            return keras.saving.load_model(path)
    elif impl == "safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        ready_model.set_weights([tensors[w.path] for w in ready_model.weights])
    return ready_model


def candidates(fmt: str) -> list[str]:
    third = {".safetensors": "safetensors"}.get(fmt, "keras")
    return ["kerasafe", third, "raw"]


def suffix(impl: str, fmt: str) -> str:
    return ".bin" if impl == "raw" else fmt


def raw_read(path: pathlib.Path) -> None:
    """Read the file once into one reused buffer (what hashing it cannot beat)."""
    buffer = memoryview(bytearray(8 << 20))
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass


def _warm(path: pathlib.Path) -> None:
    """Read the file once, so every load candidate starts from the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass


# --- timing ---------------------------------------------------------------------------------------

def time_size(mib: float, repeats: int, folder: pathlib.Path) -> dict:
    import keras

    model = build_model(mib)
    ready = build_model(mib, random=False)
    results = {}
    for _ in range(repeats):
        for fmt in FORMATS:
            for impl in candidates(fmt):
                path = folder / f"m-{impl}{suffix(impl, fmt)}"
                if path.exists():
                    path.unlink()
                os.sync()
                _keep_best(results, ("save", fmt, impl), _seconds(save, impl, fmt, model, path))
        for fmt in FORMATS:
            for impl in candidates(fmt):
                path = folder / f"m-{impl}{suffix(impl, fmt)}"
                save(impl, fmt, model, path)
                os.sync()  # no write-back of this save competes with the load
                _warm(path)
                _keep_best(results, ("load", fmt, impl), _seconds(load, impl, fmt, path, ready))
                keras.backend.clear_session()
        path = folder / "m-kerasafe.keras"
        ks_save_for_checks(model, path)
        for impl, fn in (("kerasafe", lambda p=path: _cli("inspect", p, "--json")), ("raw", lambda: _cli(None))):
            _keep_best(results, ("inspect", ".keras", impl), _seconds(fn))
        for impl, fn in (("kerasafe", lambda p=path: _verify(p)), ("raw", lambda p=path: raw_read(p))):
            _warm(path)
            _keep_best(results, ("verify", ".keras", impl), _seconds(fn))
    return results


def _seconds(fn, *args) -> float:
    """Wall-clock seconds of ``fn(*args)``."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _keep_best(results: dict, key: tuple, seconds: float) -> None:
    results[key] = min(results.get(key, math.inf), seconds)


def ks_save_for_checks(model, path) -> None:
    import kerasafe as ks

    ks.save(model, path)


def _verify(path) -> None:
    import kerasafe as ks

    report = ks.verify(path)
    assert report["ok"], report


def _cli(command, *args) -> None:
    """``kerasafe COMMAND ...`` in a fresh interpreter (start-up included); None: the bare interpreter."""
    code = ["-c", "pass"] if command is None else ["-m", "kerasafe.cli", command, *map(str, args)]
    subprocess.run([sys.executable, *code], check=True, capture_output=True)


# --- memory, one operation per subprocess ---------------------------------------------------------

def _status(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(op: str, fmt: str, impl: str, mib: float, path: str) -> None:
    import tracemalloc

    import numpy as np
    import keras  # noqa: F401

    import kerasafe as ks  # noqa: F401

    build_model(0.01)  # backend initialised before the baseline
    model = build_model(mib) if op == "save" else None
    ready = build_model(mib, random=False) if op == "load" and (impl in ("raw", "safetensors") or fmt == ".weights.h5") else None
    for w in (ready or model).weights if (ready or model) is not None else ():
        np.asarray(w)  # JAX computes values asynchronously: make them resident before the baseline
    size = expected_bytes(mib)
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    tracemalloc.start()
    if op == "save":
        save(impl, fmt, model, path)
    else:
        load(impl, fmt, path, ready)
    # What stays allocated after the operation is the loaded model itself where its arrays
    # came from NumPy (kerasafe on JAX); the peak above that is what the operation needed.
    current, peak = tracemalloc.get_traced_memory()
    traced = peak - current
    tracemalloc.stop()
    above = _status("VmHWM") - before - (size if op == "load" and ready is None else 0)
    print(json.dumps({"rss_above": above, "traced": traced, "model_bytes": size}))


def memory(op: str, fmt: str, impl: str, mib: float, path: pathlib.Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", op, fmt, impl, str(mib), str(path)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else str(proc.returncode)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- report -----------------------------------------------------------------------------------------

def report(mib: float, times: dict, mems: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mib:g} MiB model: seconds (best of runs), ratio to kerasafe, peak memory above the model")
    for col in ("operation", "format", "candidate", "seconds", "x kerasafe", "RSS above", "tracemalloc"):
        table.add_column(col, justify="right" if col not in ("operation", "format", "candidate") else "left")
    for op in ("save", "load"):
        for fmt in FORMATS:
            ours = times[(op, fmt, "kerasafe")]
            for impl in candidates(fmt):
                t = times[(op, fmt, impl)]
                mem = mems.get((op, fmt, impl), {})
                size = mem.get("model_bytes") or 1
                rss = f"{mem['rss_above'] / 2**20:.0f} MiB ({mem['rss_above'] / size:.0%})" if "rss_above" in mem else mem.get("error", "-")
                traced = f"{mem['traced'] / 2**20:.0f} MiB ({mem['traced'] / size:.0%})" if "traced" in mem else "-"
                table.add_row(op, fmt, impl, f"{t:.3f}", f"{t / ours:.2f}", rss, traced)
        table.add_section()
    for op, what in (("inspect", "raw = bare interpreter start"), ("verify", "raw = reading the file once")):
        ours = times[(op, ".keras", "kerasafe")]
        for impl in ("kerasafe", "raw"):
            t = times[(op, ".keras", impl)]
            table.add_row(op, ".keras", impl if impl == "kerasafe" else f"raw ({what.split('= ')[1]})", f"{t:.3f}", f"{t / ours:.2f}", "-", "-")
    Console(width=160).print(table)


def _save_then_load(model, target: pathlib.Path) -> tuple[float, float]:
    """Seconds for ``ks.save`` and then ``ks.load`` of ``target``."""
    import kerasafe as ks

    return _seconds(lambda: ks.save(model, target)), _seconds(lambda: ks.load(target))


def scaling(path: pathlib.Path, folder: pathlib.Path, sizes_mib=(1, 4, 16, 64, 256, 1024, 4096)) -> None:
    """Save and load time of .keras against model bytes, and a 10,000-weight model, plotted."""
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    rows = []
    for mib in sizes_mib:
        model = build_model(mib)
        saved, loaded = _save_then_load(model, folder / "s.keras")
        rows.append((mib, saved, loaded))
        print(f"scaling {mib:>5} MiB: save {saved:.3f} s, load {loaded:.3f} s")
        del model
        keras.backend.clear_session()
    wide = wide_model(10_000, 16)  # 10,000 kernels, 16 MiB
    many_save, many_load = _save_then_load(wide, folder / "many.keras")
    few_save, few_load = _save_then_load(build_model(16, random=False), folder / "few.keras")
    print(f"16 MiB in 10,000 weights: save {many_save:.2f} s, load {many_load:.2f} s; "
          f"in 4 weights: save {few_save:.2f} s, load {few_load:.2f} s (per weight: "
          f"{(many_save - few_save) / 1e4 * 1e3:.2f} ms save, {(many_load - few_load) / 1e4 * 1e3:.2f} ms load)")
    # Where the per-weight time goes: Keras's own calls on the same model, and rebuilding
    # the model from its config alone (no weights read), which any loader has to do.
    keras_save = _seconds(lambda: keras.saving.save_model(wide, folder / "many-keras.keras"))
    keras_load = _seconds(lambda: keras.saving.load_model(folder / "many-keras.keras"))
    config = wide.to_json()
    rebuild = _seconds(lambda: keras.models.model_from_json(config))
    print(f"10,000 weights, Keras: save {keras_save:.2f} s, load {keras_load:.2f} s; "
          f"rebuilding the model from its config alone: {rebuild:.2f} s")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([r[0] for r in rows], [r[1] for r in rows], "o-", label="save .keras")
    ax.loglog([r[0] for r in rows], [r[2] for r in rows], "s-", label="load .keras")
    ax.set_xlabel("model MiB")
    ax.set_ylabel("seconds")
    ax.set_title(f"kerasafe scaling (10,000 weights, 16 MiB: save {many_save:.1f} s, load {many_load:.1f} s)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, action="append", help="model size in MiB (repeatable; default 64 and 1024)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-operation memory subprocesses")
    parser.add_argument("--scaling", type=pathlib.Path, default=None, help="also run the scaling series and plot it here (PNG)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        op, fmt, impl, mib, path = args.child
        child(op, fmt, impl, float(mib), path)
        return
    folder = pathlib.Path(tempfile.mkdtemp(dir=args.dir))
    try:
        time_size(1, 1, folder)  # warm-up: imports and first-call costs are not what is measured
        for mib in args.size or [64, 1024]:
            times = time_size(mib, args.repeats, folder)
            mems = {}
            if not args.no_memory:
                for op in ("save", "load"):
                    for fmt in FORMATS:
                        for impl in candidates(fmt):
                            path = folder / f"mem-{impl}{suffix(impl, fmt)}"
                            if op == "load":
                                shutil.copy(folder / f"m-{impl}{suffix(impl, fmt)}", path)
                                _warm(path)
                            mems[(op, fmt, impl)] = memory(op, fmt, impl, mib, path)
                            path.unlink(missing_ok=True)
            report(mib, times, mems)
        if args.scaling:
            scaling(args.scaling, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
