"""ks.fit reads a PyDataset (workers included) and generators, and resumes them exactly where that is possible."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

import kerasafe as ks
from kerasafe import errors
from test_checkpoint import _Crash  # raises after N batches, like a crash between checkpoints
from test_fit_arguments import _model, x, y


class Batches(keras.utils.PyDataset):
    """The arrays in batches of 16, by index (what tutorials write for data that does not fit in memory)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def __len__(self):
        return math.ceil(len(x) / 16)

    def __getitem__(self, i):
        return x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]


def make_batches():
    """A generator function: the same sequence each time it is called."""
    for i in range(0, len(x), 16):
        yield x[i:i + 16], y[i:i + 16]


def tf_pipeline():
    """tf.data with shuffle (reshuffled each pass, seeded as a reproducible script seeds it) and map."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=5).map(lambda a, b: (a * 2.0, b)).batch(16)


def grain_pipeline(loader=False, iterable=False):
    """grain: a shuffled MapDataset in batches, the same as an IterDataset, or grain's DataLoader over an index sampler."""
    import grain

    if loader:
        sampler = grain.samplers.IndexSampler(num_records=len(x), shuffle=True, seed=4, num_epochs=None)
        return grain.DataLoader(data_source=list(zip(x, y)), sampler=sampler, worker_count=0,
                                operations=[grain.transforms.Batch(batch_size=16)])
    shuffled = grain.MapDataset.source(list(zip(x, y))).shuffle(seed=4)
    if iterable:
        shuffled = shuffled.to_iter_dataset()
    return shuffled.batch(16, batch_fn=lambda pairs: tuple(np.stack(p) for p in zip(*pairs)))


def torch_loader(workers=0):
    """A shuffling DataLoader; its sampler draws from torch's global generator, seeded as a reproducible script seeds it."""
    import torch

    torch.manual_seed(11)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, num_workers=workers)


def _equal(a, b):
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))


SOURCES = {
    "PyDataset, shuffled": (lambda: Batches(), dict(shuffle=True)),
    "PyDataset, 2 worker threads": (lambda: Batches(workers=2), dict(shuffle=True)),
    "generator function, steps_per_epoch": (lambda: make_batches, dict(steps_per_epoch=3)),
    "re-iterable (a list of batches)": (lambda: list(make_batches()), {}),
    "tf.data, shuffle and map": (tf_pipeline, {}),
    "tf.data, steps_per_epoch across passes": (tf_pipeline, dict(steps_per_epoch=3)),
    "grain MapDataset, shuffled": (grain_pipeline, {}),
    "grain IterDataset, shuffled": (lambda: grain_pipeline(iterable=True), dict(steps_per_epoch=3)),
    "grain DataLoader, endless sampler": (lambda: grain_pipeline(loader=True), dict(steps_per_epoch=3)),
    "DataLoader, shuffled": (torch_loader, {}),
    "DataLoader, 2 workers, steps_per_epoch": (lambda: torch_loader(workers=2), dict(steps_per_epoch=3)),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_interrupted_twice_and_run_again_ends_as_a_straight_run(tmp_path, name):
    make, kwargs = SOURCES[name]
    kwargs = dict(kwargs, save_freq=2, epochs=4, seed=3, verbose=0)
    straight_model = _model()
    straight = ks.fit(straight_model, make(), checkpoint_dir=tmp_path / "straight", **kwargs)
    for after in (5, 4):
        with pytest.raises(KeyboardInterrupt):
            ks.fit(_model(), make(), checkpoint_dir=tmp_path / "resumed", callbacks=[_Crash(after)], **kwargs)
    resumed_model = _model()
    resumed = ks.fit(resumed_model, make(), checkpoint_dir=tmp_path / "resumed", **kwargs)
    assert resumed.history == straight.history
    _equal(resumed_model, straight_model)


def test_pydataset_processes_read_the_same_batches(tmp_path):
    """use_multiprocessing=True reads in other processes, in ks.fit's order: the same run as one worker."""
    # Each model built just before its run: on PyTorch an unseeded Dropout draws from torch's global
    # generator, which _model() seeds and the first run would otherwise have advanced.
    one = _model()
    ks.fit(one, Batches(), checkpoint_dir=tmp_path / "one", epochs=2, seed=3, verbose=0)
    many = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fork() with JAX's threads, as Keras's own enqueuer does
        ks.fit(many, Batches(workers=2, use_multiprocessing=True), checkpoint_dir=tmp_path / "many", epochs=2, seed=3, verbose=0)
    _equal(one, many)


def test_pydataset_with_class_weight_means_what_it_means_to_keras(tmp_path):
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    keras_model = _model(dropout_seed=7)  # seeded: compared with model.fit (see _model)
    theirs = keras_model.fit(Batches(), epochs=3, shuffle=False, verbose=0, class_weight=weights)
    ours_model = _model(dropout_seed=7)
    ours = ks.fit(ours_model, Batches(), checkpoint_dir=tmp_path, epochs=3, shuffle=False, verbose=0, class_weight=weights)
    for key in theirs.history:
        np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=0, atol=1e-6)


def test_a_one_shot_generator_resumes_at_its_next_batch_and_says_so(tmp_path):
    def endless():
        while True:
            yield from make_batches()

    with pytest.raises(KeyboardInterrupt):
        ks.fit(_model(), endless(), checkpoint_dir=tmp_path, steps_per_epoch=5, epochs=3, save_freq=2, verbose=0,
               callbacks=[_Crash(7)])
    with pytest.warns(UserWarning, match="cannot be replayed"):
        history = ks.fit(_model(), endless(), checkpoint_dir=tmp_path, steps_per_epoch=5, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3


@pytest.mark.parametrize("call,words", [
    (lambda d: ks.fit(_model(), make_batches, checkpoint_dir=d), "steps_per_epoch"),
    (lambda d: ks.fit(_model(), Batches(), y, checkpoint_dir=d), "no y"),
    (lambda d: ks.fit(_model(), make_batches, checkpoint_dir=d, steps_per_epoch=2, validation_split=0.2), "validation_split"),
    (lambda d: ks.fit(_model(), 42, checkpoint_dir=d), "int"),
])
def test_what_a_source_cannot_take_is_one_named_error(tmp_path, call, words):
    with pytest.raises(errors.KerasafeError, match=words) as caught:
        call(tmp_path)
    assert "\n" not in str(caught.value)


class Drifting(Batches):
    """A PyDataset whose on_epoch_end changes what the next epoch reads (as datasets that re-sample do)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.calls, self.seen = 1.0, [], []

    def on_epoch_begin(self):
        self.calls.append("begin")

    def on_epoch_end(self):
        self.calls.append("end")
        self.scale *= 1.5

    def __getitem__(self, i):
        bx, by = super().__getitem__(i)
        self.seen.append(self.scale)
        return bx * self.scale, by


@pytest.mark.parametrize("workers", [1, 2])
def test_pydataset_epoch_hooks_are_called_around_each_epoch(tmp_path, workers):
    """on_epoch_begin/on_epoch_end around every epoch, and each epoch's reads see what the last on_epoch_end did.

    (Keras 3.15's model.fit calls one more pair before training, around the batch its symbolic build
    reads, so its first epoch already reads the data as changed once; ks.fit calls them per epoch only,
    as PyDataset documents.)
    """
    data = Drifting(workers=workers)
    ks.fit(_model(), data, checkpoint_dir=tmp_path, epochs=3, shuffle=False, verbose=0)
    assert data.calls == ["begin", "end"] * 3
    per_epoch = len(data)
    assert data.seen == [1.0] * per_epoch + [1.5] * per_epoch + [2.25] * per_epoch


# Run again in a child on each other backend: every source resumed exactly, every argument meaning what it
# means to that backend's model.fit, and the PyDataset epoch hooks (TensorFlow's trainer prefetches from
# the generator: no epoch may begin that the fit call does not train). Not the use_multiprocessing test:
# fork() under TensorFlow's threads can hang, in Keras's own enqueuer as in ours; for the same reason a
# DataLoader with worker processes (forked) is left out on TensorFlow (seen: its workers never answered).
OTHER_BACKEND_TESTS = "interrupted or means_what_it_means or several_inputs or epoch_hooks_are_called"
NOT_ON = {"tensorflow": " and not (DataLoader and workers)", "torch": ""}


@pytest.mark.slow
@pytest.mark.backend
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_sources_and_arguments_on_the_other_backends(tmp_path, backend):
    import os
    import pathlib
    import subprocess
    import sys

    here = pathlib.Path(__file__).parent
    proc = subprocess.run([sys.executable, "-m", "pytest", str(here / "test_fit_sources.py"), str(here / "test_fit_arguments.py"),
                           "-k", f"({OTHER_BACKEND_TESTS}){NOT_ON[backend]}", "-n", "0", "-q", "-p", "no:cacheprovider", "-W", "ignore", "-o", "faulthandler_timeout=240",
                           "--basetemp", str(tmp_path / "child")],
                          env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-3000:]
    passed = int(proc.stdout.rsplit(" passed", 1)[0].split()[-1])
    assert passed >= 28 - bool(NOT_ON[backend]), proc.stdout[-1000:]  # 10 sources, 2 multi-input, 11 arguments vs model.fit, 3 resumes, 2 hooks


def _two_input_model():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


MULTI_INPUT = {
    "dict of arrays": lambda: {"a": x[:, :3], "b": x[:, 3:]},
    "list of arrays": lambda: [x[:, :3], x[:, 3:]],
}


@pytest.mark.parametrize("name", sorted(MULTI_INPUT))
def test_arrays_for_several_inputs_train_as_model_fit_and_resume_exactly(tmp_path, name):
    inputs = MULTI_INPUT[name]()
    theirs_model, ours_model = _two_input_model(), _two_input_model()
    theirs = theirs_model.fit(inputs, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    ours = ks.fit(ours_model, inputs, y, checkpoint_dir=tmp_path / "plain", epochs=3, batch_size=16, shuffle=False, verbose=0)
    for key in theirs.history:
        np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=0, atol=1e-6)
    kwargs = dict(epochs=3, batch_size=16, seed=2, save_freq=2, verbose=0)
    straight_model = _two_input_model()
    straight = ks.fit(straight_model, inputs, y, checkpoint_dir=tmp_path / "straight", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        ks.fit(_two_input_model(), inputs, y, checkpoint_dir=tmp_path / "resumed", callbacks=[_Crash(5)], **kwargs)
    resumed_model = _two_input_model()
    resumed = ks.fit(resumed_model, inputs, y, checkpoint_dir=tmp_path / "resumed", **kwargs)
    assert resumed.history == straight.history
    _equal(resumed_model, straight_model)
