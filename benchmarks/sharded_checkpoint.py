"""Sharded checkpoints: N processes writing one checkpoint together vs one process; restore onto another layout.

    python benchmarks/sharded_checkpoint.py [--mib 256] [--processes 1 2 4] [--rounds 3]

Save: a Dense stack of about ``--mib`` MiB of weights plus Adam's two slots (3x the bytes
in all), under ``ModelParallel`` that splits every kernel over all devices (2 virtual CPU
devices per process, joined by ``jax.distributed`` on 127.0.0.1). Each round every
process copies its shards to host memory and writes its part; process 0 waits for all
parts and commits. The time is from a common start (a collective barrier) to the commit.
Reported: total throughput for each process count, its ratio to one process writing the
same bytes, and raw I/O (one process writing the same bytes with ``ndarray.tofile`` +
fsync) in the same run. Also checked: the bytes written equal the model's bytes once.

Restore (one process, 8 virtual devices): the 8-way split checkpoint onto the same
8-way layout, onto a 4-way split (mesh 2 x 4) and onto no distribution (one device),
each against the same-layout time.

The disk is shared by all processes, so more processes help only while one process
cannot keep the disk busy (its host copies, hashing and Python are the limit); with a
fast disk the ratio says how much of a single writer's time was not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()


def _child(job: dict, process: int, count: int, port: int) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={job['devices']}"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if count > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=count, process_id=process)
    import keras
    import numpy as np
    from jax.experimental import multihost_utils

    from kerasafe import distributed
    from kerasafe.checkpoint import sharded_commit, store
    from kerasafe.formats import sharded

    keras.utils.set_random_seed(1)  # every process must initialise the same values
    devices = jax.devices()
    split = job.get("split", len(devices))
    if split:
        mesh = keras.distribution.DeviceMesh((len(devices) // split, split), ["batch", "model"], devices)
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map[".*kernel"] = (None, "model")
        keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    width = 2048
    layers = max(1, int(job["mib"] * 2**20 / (width * width * 4)))
    model = keras.Sequential([keras.Input((width,))] + [keras.layers.Dense(width) for _ in range(layers)])
    model.compile(keras.optimizers.Adam(), "mse")
    model.optimizer.build(model.trainable_variables)
    directory = pathlib.Path(job["dir"])
    result = {}
    if job["action"] == "save":
        times = []
        for step in range(1, job["rounds"] + 1):
            multihost_utils.sync_global_devices(f"start {step}")
            start = time.perf_counter()
            part = sharded.snapshot(model, {})
            sharded_commit.write(directory, step, part, {}, {}, processes=distributed.process_count())
            if process == 0:
                times.append(time.perf_counter() - start)
            multihost_utils.sync_global_devices(f"end {step}")
            if process == 0 and step < job["rounds"]:  # the disk holds one checkpoint at a time, as with keep_last
                store.delete(store.committed(directory)[-1])
        if process == 0:
            newest = store.committed(directory)[-1].path
            written = sum(e["data_offsets"][1] - e["data_offsets"][0] for f in newest.glob("shards-*.safetensors")
                          for k, e in sharded.read_header(f)[0].items() if k != "__metadata__")
            model_bytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for _, v in sharded.state_variables(model))
            result = {"seconds": min(times), "written": written, "model_bytes": model_bytes}
    else:
        times = []
        newest = store.committed(directory)[-1].path
        for _ in range(job["rounds"]):
            start = time.perf_counter()
            sharded.fill(model, newest)
            times.append(time.perf_counter() - start)
        result = {"seconds": min(times)}
    if process == 0:
        pathlib.Path(job["out"]).write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(job: dict, processes: int) -> dict:
    port = _free_port()
    out = pathlib.Path(job["dir"]).parent / f"result-{os.getpid()}-{time.monotonic_ns()}.json"
    job = dict(job, out=str(out))
    children = [subprocess.Popen([sys.executable, str(HERE), "--child", json.dumps(job), str(p), str(processes), str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for p in range(processes)]
    for child in children:
        _, err = child.communicate(timeout=1800)
        if child.returncode:
            raise SystemExit(f"a benchmark process failed:\n{err[-3000:]}")
    return json.loads(out.read_text())


def _raw_write(directory: pathlib.Path, nbytes: int, rounds: int) -> float:
    import numpy as np

    data = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    best = float("inf")
    for i in range(rounds):
        path = directory / f"raw-{i}.bin"
        start = time.perf_counter()
        with open(path, "wb") as f:
            data.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        best = min(best, time.perf_counter() - start)
        path.unlink()
    return best


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]), *(int(a) for a in sys.argv[3:6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="weights in MiB (Adam's slots add twice that)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=5, help="best of this many (this machine's disk varies 0.3-2.3 s for the same 768 MiB)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    root = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-bench-", dir=args.dir))
    try:
        print(f"save: {args.mib} MiB of weights + Adam slots, kernels split over all devices (2 per process)")
        base = None
        for n in args.processes:
            r = _run({"action": "save", "devices": 2, "mib": args.mib, "rounds": args.rounds, "dir": str(root / f"save-{n}")}, n)
            gib_s = r["written"] / r["seconds"] / 2**30
            if base is None:
                base = r["seconds"]
            once = "once" if r["written"] == r["model_bytes"] else f"{r['written'] / r['model_bytes']:.2f}x the model"
            print(f"  {n} process(es): {r['seconds']:.2f} s  {gib_s:.2f} GiB/s  ({r['written'] / 2**20:.0f} MiB written: {once});"
                  f"  {base / r['seconds']:.2f}x the throughput of {args.processes[0]} process(es)")
            shutil.rmtree(root / f"save-{n}", ignore_errors=True)
        raw = _raw_write(root, r["model_bytes"], args.rounds)
        print(f"  raw I/O, one process, same bytes (tofile + fsync, best of {args.rounds}): {raw:.2f} s  "
              f"{r['model_bytes'] / raw / 2**30:.2f} GiB/s; kerasafe with {args.processes[0]} process(es) at {raw / base:.2f}x raw throughput")
        print("restore, one process, 8 devices, from an 8-way split checkpoint:")
        written = root / "restore"
        _run({"action": "save", "devices": 8, "split": 8, "mib": args.mib, "rounds": 1, "dir": str(written)}, 1)
        same = None
        for label, split, devices in (("same layout (8-way split)", 8, 8), ("another mesh (2 x 4, 4-way split)", 4, 8),
                                      ("one device, no distribution", 0, 1)):
            r = _run({"action": "restore", "devices": devices, "split": split, "mib": args.mib, "rounds": args.rounds, "dir": str(written)}, 1)
            same = same or r["seconds"]
            print(f"  {label}: {r['seconds']:.2f} s  ({r['seconds'] / same:.2f}x the same-layout time)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
