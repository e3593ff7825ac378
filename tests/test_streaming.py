"""kerasafe train reads an image folder batch by batch: memory does not grow with the number of files, and it resumes exactly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from kerasafe.checkpoint import sources, store
from kerasafe.pipeline.data import image_preprocessing, load_dataset
from kerasafe.pipeline.streaming import ImageFiles

SIDE = 32  # 32x32 RGB: 12 KiB per decoded image, 600 MiB for 50,000 if they were all held at once


def _folder(root, count):
    rng = np.random.default_rng(count)
    base = np.linspace(0, 255, SIDE * SIDE * 3).reshape(SIDE, SIDE, 3)
    for i in range(count):
        label = "bright" if i % 2 else "dark"
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (base * (0.9 if i % 2 else 0.3) + rng.integers(0, 20, (SIDE, SIDE, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:05d}.png", compress_level=1)
    return root


def _peak_rss_of_train(folder, out) -> int:
    """Peak resident memory (bytes) of one `kerasafe train` run on ``folder``, from the kernel's own count for that child."""
    proc = subprocess.Popen([sys.executable, "-m", "kerasafe.cli", "train", str(folder), "--out", str(out), "--epochs", "1",
                             "--arch", "mlp", "--batch-size", "64", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    return usage.ru_maxrss * 1024  # Linux reports KiB


@pytest.mark.slow
def test_peak_memory_does_not_depend_on_the_number_of_images(tmp_path):
    small = _peak_rss_of_train(_folder(tmp_path / "5k", 5_000), tmp_path / "run5k")
    large = _peak_rss_of_train(_folder(tmp_path / "50k", 50_000), tmp_path / "run50k")
    print("peak RSS MiB (5k, 50k):", small // 2**20, large // 2**20)
    decoded_difference = 45_000 * SIDE * SIDE * 3 * 4  # what holding the extra images decoded would add: 527 MiB
    # The file list and labels grow (a few hundred bytes per file); the decoded images must not.
    assert large - small < 80 * 2**20, (small // 2**20, large // 2**20)
    assert large - small < decoded_difference / 6


def test_image_files_decode_only_what_is_indexed(tmp_path):
    folder = _folder(tmp_path, 6)
    ds = load_dataset(folder, ratios=(1.0, 0.0, 0.0))
    assert isinstance(ds.x_train, ImageFiles) and ds.x_train.shape == (6, SIDE, SIDE, 3)
    files = ds.x_train.files
    first = sources.take(ds.x_train, np.array([3, 1]))
    assert first.shape == (2, SIDE, SIDE, 3)
    np.testing.assert_array_equal(first[1], np.asarray(Image.open(files[1]).convert("RGB"), np.float32))
    (folder / "bright" / "00001.png").write_bytes(b"gone bad after listing")
    with pytest.raises(Exception) as caught:
        sources.take(ds.x_train, np.array([files.index(folder / "bright" / "00001.png")]))
    assert "00001.png" in str(caught.value) and type(caught.value).__module__ == "kerasafe.errors"


def test_prefetch_hands_out_batches_in_order_and_raises_where_the_source_failed():
    def batches():
        yield from range(5)
        raise ValueError("file 5 unreadable")

    stream = sources.prefetch(batches(), depth=2)
    assert [next(stream) for _ in range(5)] == list(range(5))
    with pytest.raises(ValueError, match="file 5"):
        next(stream)
    stopped = sources.prefetch(iter(range(100)), depth=2)
    assert next(stopped) == 0
    stopped.close()  # the producer thread ends with the consumer


def test_streamed_folder_resumed_run_ends_as_a_straight_one(tmp_path):
    folder = _folder(tmp_path / "images", 300)
    straight = run_cli("train", folder, "--out", tmp_path / "straight", "--epochs", "3", "--arch", "mlp", "--batch-size", "32", "--quiet")
    assert straight.returncode == 0, straight.stderr
    first = run_cli("train", folder, "--out", tmp_path / "resumed", "--epochs", "1", "--arch", "mlp", "--batch-size", "32", "--quiet")
    assert first.returncode == 0, first.stderr
    rest = run_cli("train", folder, "--out", tmp_path / "resumed", "--epochs", "3", "--arch", "mlp", "--batch-size", "32", "--quiet",
                   "--resume")
    assert rest.returncode == 0, rest.stderr
    import kerasafe as ks

    a, b = ks.load(tmp_path / "straight" / "model.keras"), ks.load(tmp_path / "resumed" / "model.keras")
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "resumed" / "history.csv").read_text()


@pytest.mark.slow
def test_streamed_folder_killed_mid_epoch_resumes_as_a_straight_run(tmp_path):
    """SIGKILL `kerasafe train` at random moments inside epochs (after a checkpoint, before the next), then --resume."""
    folder = _folder(tmp_path / "images", 1200)
    train = ["train", folder, "--epochs", "6", "--arch", "mlp", "--batch-size", "16", "--quiet"]
    straight = run_cli(*train, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    command = [sys.executable, "-m", "kerasafe.cli", *map(str, train), "--out", str(tmp_path / "resumed"), "--resume"]
    checkpoints = tmp_path / "resumed" / "checkpoints"
    rng = random.Random(7)
    kills, epochs_at_kill = 0, []
    for _ in range(12):
        done = len(store.committed(checkpoints)) if checkpoints.exists() else 0
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and (
                (len(store.committed(checkpoints)) if checkpoints.exists() else 0) <= done):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.05, 0.4))  # into the next epoch: its batches are read, decoded and trained on
        if proc.poll() is not None:
            break  # the run finished before the kill: too fast a machine, the kills so far still count
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        epochs_at_kill.append(len(store.committed(checkpoints)))
        if kills == 3:
            break
    assert kills >= 2 and epochs_at_kill == sorted(epochs_at_kill) and epochs_at_kill[-1] < 6, epochs_at_kill
    rest = run_cli(*train, "--out", tmp_path / "resumed", "--resume")
    assert rest.returncode == 0, rest.stderr
    import kerasafe as ks

    a, b = ks.load(tmp_path / "straight" / "model.keras"), ks.load(tmp_path / "resumed" / "model.keras")
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "resumed" / "history.csv").read_text()


def _csv(path, rows):
    rng = np.random.default_rng(rows)
    features = rng.normal(size=(rows, 4)).round(4)
    labels = np.where(features[:, 0] + features[:, 1] > 0, "yes", "no")
    lines = ["a,b,label,c,d"] + [f"{f[0]},{f[1]},{lab},{f[2]},{f[3]}" for f, lab in zip(features, labels)]
    path.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")  # a blank line too
    return path


def test_a_streamed_csv_reads_the_same_rows_as_one_in_memory(tmp_path):
    path = _csv(tmp_path / "t.csv", 1000)
    held = load_dataset(path, label_column="label", stream=False, seed=4)
    streamed = load_dataset(path, label_column="label", stream=True, seed=4)
    assert type(streamed.x_train).__name__ == "CsvRows" and streamed.x_train.offsets.dtype == np.int64
    assert streamed.labels == held.labels and streamed.preprocessing == held.preprocessing
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(getattr(streamed, f"x_{part}")), getattr(held, f"x_{part}"))
        np.testing.assert_array_equal(getattr(streamed, f"y_{part}"), getattr(held, f"y_{part}"))
    some = np.array([7, 3, 500])
    np.testing.assert_array_equal(sources.take(streamed.x_train, some), held.x_train[some])


def test_training_on_a_streamed_csv_is_training_on_it_in_memory(tmp_path, monkeypatch):
    """Same standardization (statistics read in chunks instead of adapt), same batches, same run (to float rounding)."""
    from kerasafe.pipeline import data, train

    path = _csv(tmp_path / "t.csv", 2000)
    held = train.train(path, tmp_path / "held", epochs=2, batch_size=64, quiet=True, label_column="label")
    monkeypatch.setattr(data, "STREAM_CSV_BYTES", 0)  # this small file is streamed as a large one would be
    streamed = train.train(path, tmp_path / "streamed", epochs=2, batch_size=64, quiet=True, label_column="label")
    assert type(streamed.dataset.x_train).__name__ == "CsvRows" and type(held.dataset.x_train) is np.ndarray
    norm, adapted = streamed.model.get_layer("standardize"), held.model.get_layer("standardize")
    np.testing.assert_allclose(np.ravel(norm.mean), np.ravel(adapted.mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.ravel(norm.variance), np.ravel(adapted.variance), rtol=1e-5, atol=1e-6)
    for key in held.history:
        np.testing.assert_allclose(streamed.history[key], held.history[key], rtol=1e-5, atol=1e-6)
    assert streamed.test_accuracy == pytest.approx(held.test_accuracy, abs=1e-9)
