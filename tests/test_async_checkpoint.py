"""async_write: files written by one background thread, one write at a time, errors never lost."""

from __future__ import annotations

import re
import shutil
import threading

import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from kerasafe.checkpoint import store
from kerasafe.checkpoint.writer import BackgroundWriter
import zoo


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def test_submit_returns_while_the_job_runs_and_one_job_at_most_is_in_flight():
    writer = BackgroundWriter("/tmp/run")
    release, started, order = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait(30)
        order.append(("first", threading.current_thread().name))

    writer.submit(slow, "checkpoint 1")
    assert started.wait(30) and writer.busy  # submit came back while the job is still running
    releaser = threading.Timer(0.2, release.set)
    releaser.start()
    writer.submit(lambda: order.append(("second", threading.current_thread().name)), "checkpoint 2")
    writer.wait()
    assert [o[0] for o in order] == ["first", "second"]  # the second started only after the first ended
    assert all(name == "kerasafe-checkpoint-writer" for _, name in order)
    assert writer.submitted == 2 and writer.seconds_waited > 0


def test_a_background_failure_is_raised_at_the_next_submit_then_cleared():
    writer = BackgroundWriter("/tmp/run")
    writer.submit(lambda: open("/nonexistent-dir/x", "wb"), "checkpoint 7")
    with pytest.raises(errors.CheckpointWriteError) as info:
        writer.submit(lambda: None, "checkpoint 8")
    message = str(info.value)
    assert message.startswith("/tmp/run: expected checkpoint 7 written in the background, found FileNotFoundError")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    writer.wait()  # reported once, not again


def _model():
    model = zoo.mlp()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("async_write", [True, False])
def test_async_and_sync_checkpoints_hold_the_same_state(tmp_path, async_write):
    keras.utils.set_random_seed(3)
    model = _model()
    x, y = _data()
    cb = ks.Checkpoint(tmp_path, keep_last=10, async_write=async_write)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[cb])
    assert cb._writer.submitted == (3 if async_write else 0)
    assert [c.step for c in store.committed(tmp_path)] == [1, 2, 3]
    restored = ks.restore(tmp_path)
    for a, b in zip(restored.weights + restored.optimizer.variables, model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _WeightsSpy(keras.callbacks.Callback):
    """Records the weights at each epoch end (before the checkpoint callback runs)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append([np.array(w) for w in self.model.weights])


def test_each_async_checkpoint_holds_its_own_epoch_not_a_later_one(tmp_path):
    """The host copy is taken before training goes on: checkpoint k holds epoch k's weights exactly."""
    keras.utils.set_random_seed(4)
    model = _model()
    x, y = _data(256)
    spy = _WeightsSpy()
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[spy, ks.Checkpoint(tmp_path, keep_last=10)])
    for epoch in range(1, 5):
        restored = ks.restore(tmp_path, which=epoch)
        for a, b in zip(restored.weights, spy.seen[epoch - 1]):
            np.testing.assert_array_equal(np.asarray(a), b)


class _BreakDirectory(keras.callbacks.Callback):
    """At the end of epoch ``at``, before the checkpoint, puts a plain file where the directory was."""

    def __init__(self, directory, at):
        super().__init__()
        self.directory, self.at = directory, at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            shutil.rmtree(self.directory)
            self.directory.write_text("not a directory")


@pytest.mark.parametrize("async_write", [True, False])
def test_a_failed_write_stops_training_with_a_clear_error(tmp_path, async_write):
    directory = tmp_path / "ckpt"
    model = _model()
    x, y = _data()
    with pytest.raises(errors.CheckpointWriteError) as info:
        model.fit(x, y, batch_size=8, epochs=4, verbose=0,
                  callbacks=[_BreakDirectory(directory, at=2), ks.Checkpoint(directory, async_write=async_write)])
    # Checkpoint 1's write may still be in flight when the directory goes (async): either fails.
    assert re.match(rf"{re.escape(str(directory))}: expected checkpoint [12] written in the background, found NotADirectoryError", str(info.value))


def test_ks_fit_reports_a_background_failure_at_the_end_of_training(tmp_path):
    """The failing write is the only one: the error comes from the end of training, not never."""
    directory = tmp_path / "ckpt"
    model = _model()
    x, y = _data()
    with pytest.raises(errors.CheckpointWriteError, match="checkpoint 1 written in the background"):
        ks.fit(model, x, y, checkpoint_dir=directory, epochs=1, batch_size=8, verbose=0, callbacks=[_BreakDirectory(directory, at=1)])
