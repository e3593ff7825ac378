"""Sharded checkpoints under keras.distribution (JAX): written shard by shard, restored onto any layout.

Each run is real: child processes (tests/distributed_child.py) with virtual CPU devices
(XLA_FLAGS must be set before JAX starts, so never in this process), joined by
``jax.distributed.initialize`` on 127.0.0.1 with gloo collectives when there are several.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import kerasafe as ks
from conftest import run_cli
from kerasafe import errors
from kerasafe.checkpoint import store
from kerasafe.formats import sharded

CHILD = pathlib.Path(__file__).with_name("distributed_child.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(job: dict, processes: int) -> list[subprocess.Popen]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "KERAS_BACKEND")}
    return [subprocess.Popen([sys.executable, str(CHILD), json.dumps(job), str(p), str(processes), str(port)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for p in range(processes)]


def run(job: dict, processes: int = 1, timeout: float = 240) -> None:
    children = _start(job, processes)
    outputs = []
    for child in children:
        try:
            out, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for c in children:
                c.kill()
            raise
        outputs.append(out)
    for child, out in zip(children, outputs):
        assert child.returncode == 0, out[-3000:]


def dumped(path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def assert_same(a: list[np.ndarray], b: list[np.ndarray], *, int_width_may_differ=False) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        same_kind = int_width_may_differ and x.dtype.kind == y.dtype.kind == "i"
        assert x.shape == y.shape and (x.dtype == y.dtype or same_kind), i
        assert np.array_equal(x, y), f"variable {i} differs"


def shard_table(checkpoint: pathlib.Path) -> dict[int, list]:
    layout = sharded.read_layout(checkpoint)
    table: dict[int, list] = {}
    for p in range(layout["layout"]["processes"]):
        marker = json.loads((checkpoint / sharded.done_file(p)).read_text())
        for row in marker["shards"]:
            table.setdefault(row["variable"], []).append((p, [tuple(i) for i in row["index"]]))
    return table


# Writers: (name, processes, job). ModelParallel over 2 processes x 2 devices with a model axis of 4
# splits the Dense kernels and the embeddings across both processes.
WRITERS = {
    "model-parallel-2x2": (2, {"devices": 2, "layout": "mp", "model_axis": 4}),
    "data-parallel-8": (1, {"devices": 8, "layout": "dp"}),
}
# Readers: every other layout, one device (no distribution) is tested in this process.
READERS = {
    "same-as-written": None,
    "data-parallel-8-devices": (1, {"devices": 8, "layout": "dp"}),
    "model-parallel-4-devices": (1, {"devices": 4, "layout": "mp", "model_axis": 2}),
    "model-parallel-2-processes": (2, {"devices": 1, "layout": "mp", "model_axis": 2}),
    "data-parallel-4-processes": (4, {"devices": 1, "layout": "dp"}),
}


@pytest.fixture(scope="module", params=sorted(WRITERS))
def written(request, tmp_path_factory):
    name = request.param
    processes, job = WRITERS[name]
    base = tmp_path_factory.mktemp(name)
    run(dict(job, action="fit", dir=str(base / "ck"), epochs=2, out=str(base / "written.npz")), processes)
    return name, base


def test_each_shard_is_written_once_by_the_process_holding_it(written):
    name, base = written
    newest = store.committed(base / "ck")[-1]
    assert newest.marker["sharded"] and newest.marker["processes"] == WRITERS[name][0]
    layout = sharded.read_layout(newest.path)
    table = shard_table(newest.path)
    total = 0
    for n, row in enumerate(layout["layout"]["variables"]):
        shape = row["shape"]
        covered = np.zeros(shape, dtype=np.int8)
        for _, index in table[n]:
            covered[tuple(slice(a, b) for a, b in index)] += 1
        assert (covered == 1).all(), f"{row['path']}: every element in exactly one written shard"
        total += int(np.prod(shape)) * np.dtype(row["dtype"]).itemsize
    stored = sum(
        sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in sharded.read_header(f)[0].items() if k != "__metadata__")
        for f in newest.path.glob("shards-*.safetensors"))
    assert stored == total  # the model's bytes once, though DataParallel holds 8 replicas
    if name == "model-parallel-2x2":
        writers = {p for rows in table.values() for p, _ in rows}
        assert writers == {0, 1}  # both processes wrote their own shards, nothing gathered on one
        assert any(row["spec"] and "model" in row["spec"] for row in layout["layout"]["variables"])


@pytest.mark.parametrize("reader", sorted(READERS))
def test_restore_onto_another_layout_is_bitwise_equal(written, reader):
    name, base = written
    processes, job = READERS[reader] or WRITERS[name]
    if READERS[reader] is not None and (processes, job) == WRITERS[name]:
        pytest.skip("the same layout as written: the 'same-as-written' case")
    out = base / f"read-{reader}.npz"
    run(dict(job, action="restore", dir=str(base / "ck"), out=str(out), report_reads=True), processes)
    assert_same(dumped(base / "written.npz"), dumped(out))
    if name == "model-parallel-2x2" and reader == "model-parallel-2-processes":
        # Each process read only the saved shards overlapping its half of the split variables.
        newest = store.committed(base / "ck")[-1].path
        total = sum(e["data_offsets"][1] - e["data_offsets"][0] for f in newest.glob("shards-*.safetensors")
                    for k, e in sharded.read_header(f)[0].items() if k != "__metadata__")
        reads = [int(pathlib.Path(f"{out}.read-{p}").read_text()) for p in range(processes)]
        assert all(0 < r < 0.8 * total for r in reads), (reads, total)
    specs = json.loads(pathlib.Path(str(out) + ".json").read_text())["specs"]
    if job.get("layout") == "mp":  # placed onto the reading layout, not the written one
        assert "P(None, 'model')" in specs
    elif job.get("layout") == "dp":
        assert all("model" not in s for s in specs)


def test_restore_onto_one_device_without_a_distribution(written):
    """The case Keras's OrbaxCheckpoint and Orbax fail (orbax#648): here, in a plain JAX process."""
    _, base = written
    model = ks.restore(base / "ck")
    values = [np.asarray(v.value) for v in model.weights + model.optimizer.variables]
    assert_same(dumped(base / "written.npz"), values)
    assert model.kerasafe.manifest["checkpoint"]["epoch"] == 2
    # ks.load of the checkpoint directory (its newest checkpoint) and of one checkpoint directory
    assert_same(values, [np.asarray(v.value) for v in ks.load(base / "ck").weights + ks.load(base / "ck").optimizer.variables])
    first = ks.load(store.committed(base / "ck")[0].path)
    assert first.kerasafe.manifest["checkpoint"]["epoch"] == 1


def test_four_processes_written_two_processes_read(tmp_path):
    """4 processes (a 4-way split, one device each) write; 2 processes with another split read: bitwise."""
    run({"devices": 1, "layout": "mp", "model_axis": 4, "action": "fit", "dir": str(tmp_path / "ck"), "epochs": 1,
         "out": str(tmp_path / "written.npz")}, 4)
    newest = store.committed(tmp_path / "ck")[-1]
    assert newest.marker["processes"] == 4
    assert len(list(newest.path.glob("shards-*.safetensors"))) == 4  # every process wrote its quarter
    run({"devices": 1, "layout": "mp", "model_axis": 2, "action": "restore", "dir": str(tmp_path / "ck"),
         "out": str(tmp_path / "read.npz")}, 2)
    assert_same(dumped(tmp_path / "written.npz"), dumped(tmp_path / "read.npz"))


@pytest.mark.backend
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_restore_on_another_backend(written, backend):
    name, base = written
    if name != "model-parallel-2x2":
        pytest.skip("one writer is enough: the read is whole arrays from the shards, whatever the writer's layout")
    out = base / f"read-{backend}.npz"
    run({"backend": backend, "layout": None, "action": "restore", "dir": str(base / "ck"), "out": str(out)})
    # The optimizer's step counter is int32 on JAX (no x64) and int64 on the others: same value.
    assert_same(dumped(base / "written.npz"), dumped(out), int_width_may_differ=True)


def test_convert_consolidates_into_a_keras_file_plain_keras_opens(written, tmp_path):
    _, base = written
    target = tmp_path / "model.keras"
    done = run_cli("convert", base / "ck", target)
    assert done.returncode == 0, done.stderr
    import keras

    plain = keras.saving.load_model(target)
    assert_same(dumped(base / "written.npz")[:len(plain.weights)], [np.asarray(w.value) for w in plain.weights])


def test_inspect_shows_the_layout_it_was_written_with(written):
    name, base = written
    info = ks.inspect(base / "ck")
    layout = info["layout"]
    processes, job = WRITERS[name]
    assert layout["processes"] == processes and layout["devices"] == processes * job["devices"]
    assert layout["distribution"] == ("ModelParallel" if job["layout"] == "mp" else "DataParallel")
    kernel = next(v for v in layout["variables"] if v["path"].endswith("dense/kernel"))
    assert kernel["spec"] == ([None, "model"] if job["layout"] == "mp" else [None, None])
    assert info["hashes"]["ok"] is True
    done = run_cli("inspect", base / "ck")
    assert done.returncode == 0, done.stderr
    assert "layout" in done.stdout and layout["distribution"] in done.stdout
    for axis, size in zip(layout["mesh"]["axis_names"], layout["mesh"]["shape"]):
        assert f"{axis}={size}" in done.stdout


def test_a_damaged_shard_is_named(written, tmp_path):
    import shutil

    _, base = written
    copy = tmp_path / "ck"
    shutil.copytree(base / "ck", copy)
    newest = store.committed(copy)[-1]
    shard = sorted(newest.path.glob("shards-*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(errors.HashMismatchError, match=shard.name):
        ks.restore(copy)
    assert ks.verify(newest.path)["ok"] is False
    (newest.path / sharded.done_file(0)).unlink()
    with pytest.raises(errors.KerasafeError) as caught:
        ks.load(newest.path)
    assert "\n" not in str(caught.value)


def test_exact_resume_under_data_parallel_processes(tmp_path):
    """Two processes, each feeding its rows of every batch: stopped after each epoch and resumed equals straight."""
    job = {"devices": 2, "layout": "dp", "save_freq": 3}
    run(dict(job, action="fit", dir=str(tmp_path / "straight"), epochs=3, out=str(tmp_path / "straight.npz")), 2)
    run(dict(job, action="fit", dir=str(tmp_path / "resumed"), epochs=1, out=None), 2)
    # save_freq=3 with 8 batches per epoch: the newest checkpoint of the 1-epoch run is mid-epoch, so the
    # next run resumes 6 batches into epoch 0 (and the last one 7 batches into epoch 1: checkpoint 15 of 16)
    newest = store.committed(tmp_path / "resumed")[-1]
    assert (newest.marker["epoch"], newest.marker["batch"]) == (0, 6)
    for epochs in (2, 3):
        run(dict(job, action="fit", dir=str(tmp_path / "resumed"), epochs=epochs, out=str(tmp_path / "resumed.npz")), 2)
    assert_same(dumped(tmp_path / "straight.npz"), dumped(tmp_path / "resumed.npz"))


def test_checkpoint_callback_in_model_fit_of_two_processes(tmp_path):
    """ks.Checkpoint as a plain callback of model.fit in each process; filename= exports refused there in one line."""
    job = {"devices": 1, "layout": "mp", "model_axis": 2, "action": "callback", "epochs": 2}
    run(dict(job, dir=str(tmp_path / "ck"), out=str(tmp_path / "trained.npz")), 2)
    assert [c.step for c in store.committed(tmp_path / "ck")] == [1, 2]
    model = ks.restore(tmp_path / "ck")
    assert_same(dumped(tmp_path / "trained.npz"), [np.asarray(v.value) for v in model.weights + model.optimizer.variables])
    children = _start(dict(job, dir=str(tmp_path / "exports"), filename="m-{epoch}.keras", out=None), 2)
    outputs = [c.communicate(timeout=240)[0] for c in children]
    for child, out in zip(children, outputs):
        assert child.returncode == 3, out[-2000:]
        line = next(line for line in out.splitlines() if line.startswith("error: "))
        assert "UnsupportedOperation" not in line and "filename=" in line and "2 processes" in line
    assert not list((tmp_path / "exports").glob("m-*.keras"))


@pytest.mark.slow
def test_killing_one_process_mid_write_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL one of two processes (at random) the moment a checkpoint's partial directory appears, then
    the other: every visible checkpoint is whole and restorable, and the resumed run ends as a straight one."""
    job = {"devices": 2, "layout": "mp", "model_axis": 4, "save_freq": 1}
    run(dict(job, action="fit", dir=str(tmp_path / "straight"), epochs=3, out=str(tmp_path / "straight.npz")), 2)
    rng = random.Random(5)
    directory = tmp_path / "killed"
    landed = 0
    for _ in range(3):
        children = _start(dict(job, action="fit", dir=str(directory), epochs=3, out=None), 2)
        before = {c.step for c in store.committed(directory)}
        deadline = time.monotonic() + 120
        partial = None
        while partial is None and time.monotonic() < deadline and children[0].poll() is None:
            steps = {c.step for c in store.committed(directory)}
            if steps - before:  # past the run's start (its clean-up), a later write is caught mid-way
                partial = next((p for p in directory.iterdir() if p.name.endswith(".kerasafe-partial")), None)
        rng.choice(children).send_signal(signal.SIGKILL)
        time.sleep(0.3)
        for child in children:
            child.kill()
            child.communicate()
        assert partial is not None, "no write caught in progress"
        step = int(partial.name.split("-")[1].split(".")[0])
        if partial.exists():
            landed += 1
            assert step not in {c.step for c in store.committed(directory)}  # never visible half-written
        for checkpoint in store.committed(directory):
            assert store.intact(checkpoint), checkpoint.path
            assert {sharded.done_file(p) for p in range(2)} <= {p.name for p in checkpoint.path.iterdir()}
        ks.restore(directory)  # the newest visible one opens, on one device
    assert landed >= 1, "no kill landed while a checkpoint was being written"
    run(dict(job, action="fit", dir=str(directory), epochs=3, out=str(tmp_path / "resumed.npz")), 2)
    assert not [p for p in directory.iterdir() if p.name.endswith(".kerasafe-partial")]
    assert_same(dumped(tmp_path / "straight.npz"), dumped(tmp_path / "resumed.npz"))
