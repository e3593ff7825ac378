"""ks.Checkpoint / ks.restore: atomic commits, retention, fallback past damage, the lock."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from kerasafe.checkpoint import store
import zoo


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")


def _fit(model, directory, epochs, **kw):
    x, y = _data()
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False, validation_split=0.25,
                     callbacks=[ks.Checkpoint(directory, **kw)])


def test_epoch_checkpoints_and_restore_latest(tmp_path):
    model = zoo.mlp()
    _fit(model, tmp_path, 5, keep_last=2)
    assert [c.step for c in store.committed(tmp_path)] == [4, 5]
    restored = ks.restore(tmp_path)
    state = restored.kerasafe.manifest["checkpoint"]
    assert state["epoch"] == 5 and len(state["history"]["loss"]) == 5
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(restored.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keep_best_by_monitor(tmp_path):
    model = zoo.mlp()
    history = _fit(model, tmp_path, 6, keep_last=1, keep_best=2, monitor="val_loss")
    losses = history.history["val_loss"]
    best_two = sorted(range(6), key=lambda i: losses[i])[:2]
    assert sorted(c.step for c in store.committed(tmp_path)) == sorted({6, *(i + 1 for i in best_two)})
    best = ks.restore(tmp_path, which="best")
    assert best.kerasafe.manifest["checkpoint"]["epoch"] == best_two[0] + 1
    assert ks.restore(tmp_path, which=6).kerasafe.manifest["checkpoint"]["epoch"] == 6


def test_batch_save_freq(tmp_path):
    model = zoo.mlp()
    _fit(model, tmp_path, 2, save_freq=3, keep_last=3)  # 6 batches an epoch: steps 3, 6, 9, 12
    found = store.committed(tmp_path)
    assert [c.step for c in found] == [6, 9, 12]
    # (epochs done, None) at an epoch boundary; (epoch under way, batches done in it) inside one.
    assert [(c.marker["epoch"], c.marker["batch"]) for c in found] == [(1, None), (1, 3), (2, None)]


def test_damaged_newest_checkpoint_falls_back(tmp_path):
    model = zoo.mlp()
    _fit(model, tmp_path, 3)
    newest = store.committed(tmp_path)[-1].path / "model.keras"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        restored = ks.restore(tmp_path)
    assert restored.kerasafe.manifest["checkpoint"]["epoch"] == 2
    with pytest.raises(errors.HashMismatchError):
        ks.restore(tmp_path, which=3)


def test_uncommitted_leftovers_are_ignored_then_cleaned(tmp_path):
    model = zoo.mlp()
    _fit(model, tmp_path, 1)
    (tmp_path / "ckpt-00000009").mkdir()  # a rename that happened without its marker
    (tmp_path / "ckpt-00000009" / "model.keras").write_bytes(b"partial")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f".ckpt-00000010.kerasafe-tmp-{dead}-abcd").mkdir()
    assert [c.step for c in store.committed(tmp_path)] == [1]
    assert ks.restore(tmp_path).kerasafe.manifest["checkpoint"]["epoch"] == 1
    _fit(model, tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == ["ckpt-00000001"]


def test_second_writer_gets_a_clear_error(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"from kerasafe.checkpoint.store import DirectoryLock\nimport time\nl = DirectoryLock({str(tmp_path)!r}).acquire()\n"
         "print('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(errors.CheckpointLockedError) as info:
            _fit(zoo.mlp(), tmp_path, 1)
        assert str(tmp_path) in str(info.value) and str(holder.pid) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    _fit(zoo.mlp(), tmp_path, 1)  # free again once the other run is gone


def test_tutorial_filename_pattern_and_weights_only(tmp_path):
    model = zoo.mlp()
    _fit(model, tmp_path, 2, filename="weights-{epoch:02d}-{val_loss:.2f}.weights.h5", save_weights_only=True)
    exported = sorted(p.name for p in tmp_path.glob("weights-*.weights.h5"))
    assert len(exported) == 2 and exported[0].startswith("weights-01-")
    fresh = zoo.mlp()
    ks.load_weights(fresh, tmp_path / exported[-1])
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_continue_with_more_data_keeps_optimizer_state(tmp_path):
    """Tutorial 004: restore, then fit on new data; training goes on from where it was (not from scratch)."""
    keras.utils.set_random_seed(0)
    model = zoo.mlp()
    _fit(model, tmp_path, 6)
    restored = ks.restore(tmp_path)
    assert int(np.asarray(restored.optimizer.iterations)) == int(np.asarray(model.optimizer.iterations)) > 0
    x_new, y_new = _data(seed=1)
    more = restored.fit(x_new, y_new, batch_size=8, epochs=1, verbose=0, shuffle=False)
    keras.utils.set_random_seed(0)
    scratch = zoo.mlp().fit(x_new, y_new, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert more.history["loss"][0] < scratch.history["loss"][0]


def test_a_plain_model_fit_run_continues_with_one_line(tmp_path):
    """model.fit + ks.Checkpoint, stopped after 3 of 5 epochs; the documented continuation trains epochs 4 and 5 only."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    zoo.mlp().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ks.Checkpoint(tmp_path)])
    model = ks.restore(tmp_path)
    assert model.kerasafe.epoch == 3
    more = model.fit(x, y, batch_size=8, epochs=5, initial_epoch=model.kerasafe.epoch, verbose=0, callbacks=[ks.Checkpoint(tmp_path)])
    assert more.epoch == [3, 4]
    assert [c.marker["epoch"] for c in store.committed(tmp_path)][-1] == 5
    assert int(np.asarray(model.optimizer.iterations)) == 5 * 8
    assert ks.load(ks.save(model, tmp_path / "m.keras")).kerasafe.epoch == 0  # not a checkpoint


def test_bad_arguments():
    for kwargs in ({"save_freq": 0}, {"save_freq": "often"}, {"keep_last": 0}, {"mode": "up"}):
        with pytest.raises(errors.KerasafeError):
            ks.Checkpoint("/tmp/x", **kwargs)


def test_ks_fit_resumes_by_itself_in_process(tmp_path):
    """Same script twice: the second call continues from the checkpoint instead of starting over."""
    x, y = _data()

    def script(epochs):
        from kerasafe import _keras

        _keras.set_random_seed(0)
        model = zoo.mlp()
        history = ks.fit(model, x, y, checkpoint_dir=tmp_path / "run", epochs=epochs, batch_size=8, seed=3, verbose=0)
        return model, history

    reference_dir = tmp_path / "reference"
    script(2)  # "crashes" after epoch 2 of 4
    second, history = script(4)  # run again with the full plan
    assert len(history.history["loss"]) == 4
    assert int(np.asarray(second.optimizer.iterations)) == 4 * 8  # 64 samples, batches of 8
    from kerasafe import _keras

    _keras.set_random_seed(0)
    straight = zoo.mlp()
    ks.fit(straight, x, y, checkpoint_dir=reference_dir, epochs=4, batch_size=8, seed=3, verbose=0)
    for a, b in zip(second.weights, straight.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ks_fit_refuses_what_it_cannot_resume(tmp_path):
    x, y = _data()
    with pytest.raises(errors.KerasafeError):
        ks.fit(zoo.mlp(), iter([x]), checkpoint_dir=tmp_path)


def test_callback_state_round_trip(tmp_path):
    """EarlyStopping's patience counter and best value survive a restart of ks.fit."""
    x, y = _data()

    def run(epochs):
        stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=50, min_delta=10.0)  # never improves "enough"
        ks.fit(zoo.mlp(), x, y, checkpoint_dir=tmp_path, epochs=epochs, batch_size=8, seed=1, verbose=0, callbacks=[stopper])
        return stopper

    first = run(3)
    assert first.wait == 2  # epochs 2 and 3 did not beat epoch 1's loss by 10
    second = run(5)
    assert second.wait == 4 and second.best == first.best  # counted on from the saved state, not from zero


class _Crash(keras.callbacks.Callback):
    """Raises after ``at`` batches, like a run that dies mid-epoch."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt


def test_a_mid_epoch_restart_logs_the_same_epoch_metrics(tmp_path):
    """The restarted epoch's training loss and accuracy cover all its batches: equal to an uninterrupted run."""
    from kerasafe import _keras

    x, y = _data()

    def script(directory, crash_at=None):
        _keras.set_random_seed(0)
        model = zoo.mlp()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        callbacks = [_Crash(crash_at)] if crash_at else []
        return ks.fit(model, x, y, checkpoint_dir=directory, epochs=3, batch_size=8, seed=5, save_freq=3, verbose=0,
                      callbacks=callbacks).history

    with pytest.raises(KeyboardInterrupt):
        script(tmp_path / "run", crash_at=13)  # epoch 2, batch 5 of 8: last checkpoint after global batch 12
    assert store.read_state(store.committed(tmp_path / "run")[-1])["batch"] == 4  # resumes mid-epoch
    resumed = script(tmp_path / "run")
    straight = script(tmp_path / "straight")
    assert resumed.keys() == straight.keys() and {"loss", "accuracy"} <= resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def test_weights_only_checkpoints_hold_weights_and_what_resume_needs(tmp_path):
    """save_weights_only=True: each checkpoint is a .weights.h5 (no .keras archive); restore and resume work from it."""
    import h5py

    keras.utils.set_random_seed(0)
    model = zoo.mlp()
    _fit(model, tmp_path / "w", 2, save_weights_only=True)
    found = store.committed(tmp_path / "w")
    assert [sorted(p.name for p in c.path.iterdir() if p.name != "COMMIT") for c in found] == [["model.weights.h5"]] * 2
    assert h5py.is_hdf5(found[-1].path / "model.weights.h5")
    assert ks.inspect(found[-1].path / "model.weights.h5")["format"] == "weights.h5"
    restored = ks.restore(tmp_path / "w")
    assert restored.kerasafe.epoch == 2 and restored.optimizer is not None
    for a, b in zip(restored.weights + restored.optimizer.variables, model.weights + model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x, y = _data()
    more = restored.fit(x, y, batch_size=8, epochs=3, initial_epoch=restored.kerasafe.epoch, verbose=0,
                        callbacks=[ks.Checkpoint(tmp_path / "w", save_weights_only=True)])
    assert more.epoch == [2] and store.committed(tmp_path / "w")[-1].marker["epoch"] == 3
