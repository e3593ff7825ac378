"""Saving never leaves a half-written file: real subprocesses killed with SIGKILL mid-save."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import kerasafe as ks
from kerasafe import storage
from conftest import TESTS


def _child(target):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, str(TESTS / "kill_child.py"), str(target)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("target", ["big.keras", "big.h5", "big.safetensors"])
def test_sigkill_during_save_leaves_a_loadable_file(tmp_path, target):
    import kill_child

    path = tmp_path / target
    ks.save(kill_child.build(), path, metadata={"round": 0})  # what the kills must leave intact (or a later round)
    rng = random.Random(target)
    for attempt in range(3):
        child = _child(path)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 2.5))  # a save of ~100 MB takes about a second here
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        report = ks.verify(path)
        assert report["ok"] is True, (attempt, report)
        info = ks.inspect(path)
        assert isinstance(info["metadata"]["round"], int)
    model = ks.load(path, compile=False)
    assert len(model.layers) == 24
    # Leftovers of killed writes belong to dead processes; the next save clears them.
    ks.save(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target]


def test_failure_inside_atomic_file_keeps_old_content(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with storage.atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_directory_replaces_whole_directory(tmp_path):
    target = tmp_path / "model_dir"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with storage.atomic_directory(target) as tmp:
            tmp.mkdir()
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("export failed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    with storage.atomic_directory(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_dir"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "m.keras"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    stale = tmp_path / f".m.keras.kerasafe-tmp-{dead_pid}-abcd1234.keras"
    stale.write_bytes(b"partial")
    live = tmp_path / f".m.keras.kerasafe-tmp-{os.getpid()}-abcd1234.keras"
    live.write_bytes(b"in progress elsewhere")
    with storage.atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and live.exists() and target.read_bytes() == b"new"


def test_hashing_writer_hashes_what_reached_the_file(tmp_path):
    pieces = [b"header", np.arange(1 << 20, dtype="float32"), memoryview(b"tail")]
    with storage.HashingFileWriter(tmp_path / "f") as f:
        for piece in pieces:
            f.write(piece)
        assert f.tell() == 6 + 4 * (1 << 20) + 4 and not f.seekable()
    content = (tmp_path / "f").read_bytes()
    assert content == b"header" + pieces[1].tobytes() + b"tail"
    assert f.digest == storage.hash_bytes(content)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_hashing_writer_raises_a_failed_write_on_the_callers_thread():
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    with pytest.raises(OSError) as info:
        with storage.HashingFileWriter("/dev/full") as f:
            for _ in range(8):
                f.write(b"x" * (1 << 20))
    assert info.value.errno == errno.ENOSPC
