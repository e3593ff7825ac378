"""``ks.fit``: ``model.fit`` that checkpoints, and resumes by itself where it stopped.

Keras cannot resume a shuffled run exactly: its shuffle order is not part of any
state it saves. ``ks.fit`` owns the order instead: epoch ``e`` visits the samples in
``permutation(seed, e)``, so a restart knows which batches are done. Everything
else that decides what comes next is saved in each checkpoint and put back:
weights, every optimizer variable, the Dropout/SeedGenerator states (Keras's
``.keras`` leaves them out), Python's and NumPy's global random state, the
history, and the state of EarlyStopping/ReduceLROnPlateau.

Example:
    >>> import keras, numpy as np, tempfile, kerasafe as ks
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); m.compile("sgd", "mse")
    >>> h = ks.fit(m, np.ones((16, 3)), np.ones((16, 1)), checkpoint_dir=tempfile.mkdtemp(), epochs=2, batch_size=4, verbose=0)
    >>> len(h.history["loss"])
    2
"""

from __future__ import annotations

import functools
import random
import warnings

import numpy as np

from .. import _keras, api, distributed, errors
from . import feed as feed_mod
from . import places, store
from .callback import Checkpoint
from .policy import parse_save_freq

# The state of a tf.data/grain/DataLoader source at a checkpoint, stored beside the model file.
DATA_STATE = "data_state.bin"

# Callback attributes that decide what a stateful Keras callback does next.
CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
}


def _seed_variables(model):
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _capture(model, callbacks, seed) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    global_gen = _keras.global_seed_state()
    return {
        "seed": seed,
        "python_random": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy_random": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        # distributed.host_value: under a multi-process distribution these replicated values have no
        # whole copy addressable as one array, only a local one.
        "seed_generators": [distributed.host_value(v.value).tolist() for v in _seed_variables(model)],
        "global_seed_generator": global_gen,
        "framework_random": _keras.framework_random_state(),
        # Running sums of the epoch's training metrics: after a restart mid-epoch they are put
        # back so the epoch's logged loss covers all its batches, as without the restart.
        "metrics": [distributed.host_value(v.value).tolist() for v in model.metrics_variables],
        "callbacks": _callback_state(callbacks),
    }


def _progress(feed, model, callbacks, seed, epoch, batch) -> tuple[dict, dict[str, bytes]]:
    """What a checkpoint at (epoch, batch) keeps besides the model: random and callback state, the data's position."""
    extra = _capture(model, callbacks, seed)
    if feed.data_state is None:
        return extra, {}
    extra["data_position"], data = feed.data_state(epoch, batch)
    return extra, {DATA_STATE: data}


def _due(save_every, found, initial_epoch, start_epoch, start_batch):
    """steps -> the stream positions where Checkpoint will save (epoch ends; every ``save_every`` batches, as it counts them)."""
    done = store.batches_done(found)  # where the callback's count starts

    def due(steps):
        start = (start_epoch - initial_epoch) * steps + start_batch
        return lambda p: p % steps == 0 or bool(save_every) and (done + p - start) % save_every == 0
    return due


def _callback_state(callbacks) -> list[dict]:
    return [{"class": type(cb).__name__, **{a: _plain(getattr(cb, a, None)) for a in CALLBACK_STATE.get(type(cb).__name__, ())}}
            for cb in callbacks]


def _plain(value):
    try:
        return float(value) if not isinstance(value, int | type(None)) else value
    except (TypeError, ValueError):
        return None


def _put_back(model, extra: dict) -> None:
    """Random state and SeedGenerator states as they were at the checkpoint."""
    py = extra["python_random"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = extra["numpy_random"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    for variable, value in zip(_seed_variables(model), extra["seed_generators"]):
        variable.assign(np.asarray(value, dtype=str(variable.dtype)))
    _keras.set_global_seed_state(extra.get("global_seed_generator"))


def _framework_random_continuity(state):
    """A callback that carries the framework's global generator across ``fit`` calls (PyTorch).

    Keras feeds PyTorch through a DataLoader, and each new DataLoader iterator draws
    its seed from torch's global generator: a resumed run, which calls ``fit`` anew,
    would draw once more than an uninterrupted one. So the state is put back at the
    first batch of each call, after that draw: the checkpoint's state, or the state at
    the end of the previous call.
    """
    keras = _keras.keras()

    class FrameworkRandomContinuity(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state, self.pending = state, False

        def on_train_begin(self, logs=None):
            self.pending = True

        def on_train_batch_begin(self, batch, logs=None):
            if self.pending:
                self.pending = False
                _keras.set_framework_random_state(self.state)

        def on_train_end(self, logs=None):
            self.state = _keras.framework_random_state()

    return FrameworkRandomContinuity()


def _put_back_metrics(model, saved: list | None) -> None:
    """Called at the start of the epoch a restart resumes mid-way, after Keras reset the metrics."""
    variables = model.metrics_variables
    if saved is None or len(saved) != len(variables):
        warnings.warn("the checkpoint's metric state does not fit this model's metrics; this epoch's training "
                      "metrics will cover only the batches after the restart", stacklevel=2)
        return
    for variable, value in zip(variables, saved):
        variable.assign(np.asarray(value, dtype=str(variable.dtype)))


def _put_back_callbacks(callbacks, saved: list[dict]) -> None:
    """Called at the first epoch's start: Keras callbacks reset themselves in on_train_begin."""
    for cb, state in zip(callbacks, saved):
        if type(cb).__name__ == state.get("class"):
            for attr in CALLBACK_STATE.get(state["class"], ()):
                if state.get(attr) is not None:
                    setattr(cb, attr, state[attr])


def fit(model, x=None, y=None, *, checkpoint_dir, epochs=1, batch_size=None, shuffle=True, seed=None,
        save_freq="epoch", keep_last=3, keep_best=0, monitor="val_loss", mode="auto", async_write=True, save_weights_only=False,
        callbacks=None,
        validation_split=0.0, validation_data=None, sample_weight=None, class_weight=None, initial_epoch=0,
        steps_per_epoch=None, storage_options=None, **fit_kwargs):
    """``model.fit`` that checkpoints to ``checkpoint_dir`` and resumes from it by itself.

    ``x`` is arrays (with ``y``), a ``keras.utils.PyDataset``, a function returning a
    generator of ``(x, y[, sample_weight])`` batches, a re-iterable of them, or a one-shot
    generator (see :mod:`kerasafe.checkpoint.sources` for how exactly each resumes).

    Run the same script again after a crash and it continues where the newest
    intact checkpoint stopped (epoch and batch), ending with the weights an
    uninterrupted run ends with. Returns a History covering all epochs; an epoch
    cut mid-way logs the training metrics of all its batches (their running sums
    are part of each batch checkpoint). ``save_freq``, ``keep_last``, ``keep_best``, ``monitor``,
    ``mode``, ``async_write`` and ``save_weights_only`` are :func:`Checkpoint`'s. Every other argument has ``model.fit``'s
    meaning: ``validation_split`` takes the last fraction before shuffling,
    ``class_weight``/``sample_weight`` weight the samples, ``steps_per_epoch`` cuts
    passes over the data into epochs as Keras does, ``initial_epoch`` starts later,
    and ``validation_steps``/``validation_freq``/``validation_batch_size``/``verbose``
    go to ``model.fit``. The sample order comes from ``seed``; without one, from the
    seed given to ``keras.utils.set_random_seed`` (two runs of a script that sets it are
    bitwise equal), else one drawn once and kept in the checkpoints. ``checkpoint_dir`` may be an
    fsspec URL (``storage_options`` for the store; see :func:`Checkpoint`).

    Example:
        >>> import keras, numpy as np, tempfile, kerasafe as ks
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); m.compile("sgd", "mse")
        >>> d = tempfile.mkdtemp()
        >>> _ = ks.fit(m, np.ones((16, 3)), np.ones((16, 1)), checkpoint_dir=d, epochs=1, batch_size=4, verbose=0)
        >>> h = ks.fit(m, np.ones((16, 3)), np.ones((16, 1)), checkpoint_dir=d, epochs=3, batch_size=4, verbose=0)
        >>> len(h.history["loss"]), int(m.optimizer.iterations)
        (3, 12)
    """
    if x is None:
        raise errors.KerasafeError(None, "training data as x (arrays, a PyDataset, tf.data, grain, a DataLoader or a generator)",
                                   "x=None", "pass the data to train on")
    callbacks = list(callbacks or [])
    place = places.at(checkpoint_dir, storage_options)
    found = place.committed()
    start_epoch, start_batch = initial_epoch, 0
    history: dict[str, list[float]] = {}
    resume_data = None
    if found:
        with place.fetched() as chosen:  # on a store: a downloaded copy, removed after these reads
            _keras.ensure_optimizer_built(model)
            api.load_weights(model, store.model_file(chosen))
            state = store.read_state(chosen)
            if "data_position" in state["extra"]:
                resume_data = (state["extra"]["data_position"], (chosen.path / DATA_STATE).read_bytes())
        seed = state["extra"]["seed"]
        _put_back(model, state["extra"])
        history = state["history"]
        # An epoch checkpoint records epochs done; a batch checkpoint the epoch under way.
        start_epoch, start_batch = state["epoch"], state["batch"] or 0
    if seed is None:
        # keras.utils.set_random_seed(n) makes a script reproducible: so is its sample order. Without
        # one, a seed is drawn once; the checkpoints keep it for the resumed run.
        seed = _keras.global_random_seed()
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
    feed = feed_mod.make_feed(x, y, seed=seed, shuffle=shuffle, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                 initial_epoch=initial_epoch, sample_weight=sample_weight, class_weight=class_weight,
                 validation_split=validation_split, validation_data=validation_data, resumed=bool(found),
                 resume_data=resume_data, due=_due(parse_save_freq(save_freq), found, initial_epoch, start_epoch, start_batch))
    at = feed.at
    if start_batch >= at(start_epoch)[2]:
        start_epoch, start_batch = start_epoch + 1, 0
    checkpoint = Checkpoint(checkpoint_dir, save_freq=save_freq, keep_last=keep_last, keep_best=keep_best, monitor=monitor, mode=mode,
                            async_write=async_write, save_weights_only=save_weights_only, storage_options=storage_options)
    checkpoint.extra_state = functools.partial(_progress, feed, model, callbacks, seed)
    checkpoint.resume_from(history, start_batch)
    on_resume = None
    if found:
        def on_resume():
            _put_back_callbacks(callbacks, state["extra"].get("callbacks", []))
            if start_batch:
                _put_back_metrics(model, state["extra"].get("metrics"))
    first_batches = None
    if start_batch:  # the metric sums are put back at the epoch's start: their variables must exist
        first_batches = feed.batches(start_epoch, start_batch, start_epoch + 1)
        sample = next(first_batches)
        _keras.build_metrics(model, sample[0], sample[1] if len(sample) > 1 else None)
        first_batches = feed_mod.prepend(sample, first_batches)
    # The checkpoint goes last, so what it saves at an epoch's end includes what the other
    # callbacks (EarlyStopping, ReduceLROnPlateau) did at that epoch's end.
    continuity = _framework_random_continuity(state["extra"].get("framework_random") if found else None)
    fit_callbacks = [continuity, *callbacks, checkpoint]
    if feed.validation_data is not None:
        fit_kwargs["validation_data"] = feed.validation_data
    result = None
    try:
        for first, end, steps, skip in feed_mod.segments(at, start_epoch, start_batch, epochs):
            # Each fit call gets its own generator: TensorFlow's adapter reads ahead of the
            # step it is on, and batches read ahead by one call would be lost to the next.
            checkpoint.on_resume = on_resume
            batches = first_batches if skip and first_batches is not None else feed.batches(first, skip, end)
            if distributed.process_count() > 1:  # each process feeds its rows of the global batch
                batches = distributed.local_batches(batches)
            with distributed.feeding_own_slices():
                result = model.fit(batches, steps_per_epoch=steps, epochs=end,
                                   initial_epoch=first, callbacks=fit_callbacks, shuffle=False, **fit_kwargs)
            if model.stop_training:  # EarlyStopping (or the user) ended the run
                break
            # Keras resets stateful callbacks at each fit call: the next one continues from here.
            on_resume = functools.partial(_put_back_callbacks, callbacks, _callback_state(callbacks))
    except BaseException:
        # Keras skips on_train_end when fit raises: finish the write in flight and free the
        # directory here, reporting a background failure without hiding the one raised.
        try:
            checkpoint.close()
        except errors.CheckpointWriteError as exc:
            warnings.warn(str(exc), stacklevel=2)
        raise
    keras = _keras.keras()
    merged = keras.callbacks.History()
    merged.set_model(model)
    merged.history = checkpoint.history
    merged.epoch = list(range(len(next(iter(checkpoint.history.values()), []))))
    merged.params = getattr(result, "params", {})
    return merged
