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
import itertools
import math
import random
import warnings

import numpy as np

from .. import _keras, api, errors
from . import sources, stateful_sources, store
from .callback import Checkpoint
from .policy import parse_save_freq

# The state of a tf.data/grain/DataLoader source at a checkpoint, stored beside the model file.
DATA_STATE = "data_state.bin"

# Callback attributes that decide what a stateful Keras callback does next.
CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
}


def _length(x) -> int:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    if isinstance(x, list | tuple):
        return len(x[0])
    return len(x)


def _take(x, index):
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: sources.take(v, index) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [sources.take(v, index) for v in x]
    return sources.take(x, index)


def _parts(x):
    return list(x.values()) if isinstance(x, dict) else list(x) if isinstance(x, list | tuple) else [x]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of ``epoch``: a function of (seed, epoch) alone, so a restart can recompute it."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_plan(n_batches: int, steps_per_epoch: int | None):
    """Training epoch -> (data epoch, its first batch, batches): Keras's rule for arrays.

    Without ``steps_per_epoch`` each epoch is one pass over the data. With it, Keras's
    EpochIterator keeps one pass going across epochs of ``steps_per_epoch`` batches and ends
    an epoch early where the pass ends (so no epoch straddles two shuffles); more steps than
    batches gives one pass per epoch.
    """
    size = min(steps_per_epoch or n_batches, n_batches)
    parts = math.ceil(n_batches / size)

    def at(epoch: int) -> tuple[int, int, int]:
        data_epoch, part = divmod(epoch, parts)
        first = part * size
        return data_epoch, first, min(size, n_batches - first)
    return at


def _epochs(n, seed, shuffle, at, start_epoch, skip):
    """(order of the data epoch, its batch numbers) per training epoch from ``start_epoch`` on (``skip`` of its batches done)."""
    for epoch in itertools.count(start_epoch):
        data_epoch, first, count = at(epoch)
        yield epoch_order(n, seed, data_epoch, shuffle), range(first + (skip if epoch == start_epoch else 0), first + count)


def _walk(n, seed, shuffle, at, start_epoch, skip):
    """(order of the data epoch, batch number) from training epoch ``start_epoch`` on, without end."""
    for order, numbers in _epochs(n, seed, shuffle, at, start_epoch, skip):
        for b in numbers:
            yield order, b


def _py_dataset_batches(dataset, seed, shuffle, at, start_epoch, skip):
    """A PyDataset's batches in ks.fit's order, with its on_epoch_begin/on_epoch_end around each epoch as Keras calls them.

    Workers read ahead within an epoch only, so what on_epoch_end changes is seen by
    the next epoch's reads, as with Keras's own enqueuer.
    """
    for order, numbers in _epochs(len(dataset), seed, shuffle, at, start_epoch, skip):
        getattr(dataset, "on_epoch_begin", lambda: None)()
        try:
            yield from sources.read_py_dataset(dataset, (int(order[b]) for b in numbers))
        finally:  # also when fit stops reading mid-epoch (the generator is closed)
            getattr(dataset, "on_epoch_end", lambda: None)()


def _batches(data, batch_size, seed, shuffle, at, start_epoch, skip):
    """Batches of the arrays ``data``: epoch orders are over samples."""
    for order, b in _walk(_length(data[0]), seed, shuffle, at, start_epoch, skip):
        index = order[b * batch_size:(b + 1) * batch_size]
        yield tuple(_take(part, index) for part in data)


def _segments(at, start_epoch: int, start_batch: int, epochs: int) -> list[tuple[int, int, int, int]]:
    """One ``model.fit`` call per run of epochs of equal length: (first epoch, end epoch, steps, batches to skip)."""
    out = []
    epoch = start_epoch
    if start_batch and epoch < epochs:  # the rest of the epoch a crash interrupted
        out.append((epoch, epoch + 1, at(epoch)[2] - start_batch, start_batch))
        epoch += 1
    while epoch < epochs:
        steps, end = at(epoch)[2], epoch
        while end < epochs and at(end)[2] == steps:
            end += 1
        out.append((epoch, end, steps, 0))
        epoch = end
    return out


def _weighted(batches, class_weight):
    """Keras's class_weight on each batch of a source that is not arrays (Keras refuses it for generators)."""
    for batch in batches:
        if class_weight is not None and isinstance(batch, tuple) and len(batch) == 2:
            batch = (*batch, _keras.class_weight_to_sample_weights(np.asarray(batch[1]), class_weight))
        yield batch


def _prepend(first, rest):
    """``first`` then ``rest``, as a generator (Keras takes generators, not other iterators)."""
    yield first
    yield from rest


class _Feed:
    """Where ks.fit's batches come from: ``at`` (epoch -> data epoch, first batch, batches) and ``batches(epoch, skip)``.

    ``data_state(epoch, batch)``, for a source that can say where it is: (the position its
    stored state was taken at, the state), what a checkpoint at (epoch, batch) keeps.
    """

    def __init__(self, at, batches, validation_data, data_state=None):
        self.at, self.batches, self.validation_data, self.data_state = at, batches, validation_data, data_state


def _stateful_feed(source, steps, initial_epoch, resume, due, class_weight, validation_data) -> _Feed:
    """A tf.data/grain/DataLoader feed: position = batches since ``initial_epoch``; each fit call opens the stream at its state there."""
    def position(epoch, batch):
        return (epoch - initial_epoch) * steps + (batch or 0)

    def batches(epoch, skip):
        nonlocal resume
        p = position(epoch, skip)
        state, resume = (resume if resume is not None else source.state_at(p) if p else None), None
        return _weighted(source.batches_from(p, state, due=due), class_weight)

    return _Feed(lambda epoch: (0, 0, steps), batches, validation_data,
                 data_state=lambda epoch, batch: source.state_at(position(epoch, batch)))


def _feed(x, y, *, seed, shuffle, batch_size, steps_per_epoch, initial_epoch, sample_weight, class_weight,
          validation_split, validation_data, resumed, resume_data=None, due=None) -> _Feed:
    kind = "py_dataset" if sources.is_py_dataset(x) else "arrays" if sources.is_arrays(x) else "stream"
    if kind != "arrays":
        for name, value in (("y", y), ("sample_weight", sample_weight), ("validation_split", validation_split or None)):
            if value is not None:
                raise errors.KerasafeError(None, f"no {name} with {type(x).__name__} data (Keras takes it with arrays only)",
                                           f"{name}={type(value).__name__}", "let the data yield (x, y[, sample_weight]) batches")
    if kind == "py_dataset":  # epoch orders are over its batch indices
        at = epoch_plan(len(x), steps_per_epoch)
        return _Feed(at, lambda epoch, skip: _weighted(_py_dataset_batches(x, seed, shuffle, at, epoch, skip), class_weight),
                     validation_data)
    if kind == "stream":
        source = stateful_sources.stateful_source(x) or sources.stream_source(x, resumed=resumed)
        steps = steps_per_epoch or source.length
        if not steps:
            raise errors.KerasafeError(None, "steps_per_epoch for data without a length", type(x).__name__,
                                       "pass steps_per_epoch=N (batches per epoch), as Keras needs for a generator")
        if isinstance(source, stateful_sources.StatefulSource):
            return _stateful_feed(source, steps, initial_epoch, resume_data, due(steps), class_weight, validation_data)
        return _Feed(lambda epoch: (0, 0, steps),
                     lambda epoch, skip: _weighted(source.batches_from((epoch - initial_epoch) * steps + skip), class_weight),
                     validation_data)
    parts, validation_data = _arrays(x, y, sample_weight, class_weight, validation_split, validation_data)
    n = _length(parts[0])
    if batch_size is None:  # Keras's default, or the size that makes steps_per_epoch one pass
        batch_size = math.ceil(n / steps_per_epoch) if steps_per_epoch else 32
    at = epoch_plan(math.ceil(n / batch_size), steps_per_epoch)
    if steps_per_epoch and steps_per_epoch > math.ceil(n / batch_size):
        warnings.warn(f"steps_per_epoch={steps_per_epoch} is more than the {math.ceil(n / batch_size)} batches in the data: "
                      "each epoch is one pass, as Keras does with arrays", stacklevel=3)
    if any(sources.is_lazy(p) for part in parts for p in _parts(part)):
        # Read from disk batch by batch (kerasafe train's image folders): decoded a few batches ahead.
        return _Feed(at, lambda epoch, skip: sources.prefetch(_batches(parts, batch_size, seed, shuffle, at, epoch, skip)),
                     _streamed_validation(validation_data, batch_size))
    return _Feed(at, lambda epoch, skip: _batches(parts, batch_size, seed, shuffle, at, epoch, skip), validation_data)


def _arrays(x, y, sample_weight, class_weight, validation_split, validation_data):
    """(training parts (x, y[, sample_weight]), validation_data), as Keras's array adapter makes them."""
    try:
        if validation_split and validation_data is None and sources.is_lazy(x):
            # Keras's rule (the last fraction), without reading the files Keras's slicing would decode.
            split_at = int(math.floor(len(x) * (1.0 - validation_split)))
            keep, held = np.arange(split_at), np.arange(split_at, len(x))
            cut = [(None, None) if a is None else (np.asarray(a)[keep], np.asarray(a)[held]) for a in (y, sample_weight)]
            (x, vx), (y, vy), (sample_weight, vw) = (x.subset(keep), x.subset(held)), *cut
            validation_data = (vx, vy) if vw is None else (vx, vy, vw)
        elif validation_split and validation_data is None:
            (x, y, sample_weight), (vx, vy, vw) = _keras.train_validation_split((x, y, sample_weight), validation_split)
            validation_data = (vx, vy) if vw is None else (vx, vy, vw)
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
            if y is None or isinstance(y, dict | list | tuple):
                raise ValueError("`class_weight` is only supported for Models with a single output.")
            sample_weight = _keras.class_weight_to_sample_weights(np.asarray(y), class_weight)
    except ValueError as exc:  # Keras's own checks, worded by Keras
        raise errors.KerasafeError(None, "fit arguments Keras accepts for arrays", " ".join(str(exc).split()),
                                   "fix the argument as Keras's message says") from None
    parts = (x,) if y is None else (x, y) if sample_weight is None else (x, y, sample_weight)
    return parts, validation_data


def _streamed_validation(validation_data, batch_size):
    """Validation data read from disk as it is needed (a PyDataset), where its inputs are a lazy source."""
    if validation_data is None or not sources.is_lazy(validation_data[0]):
        return validation_data
    from ..pipeline.streaming import batches_dataset

    vx, vy, vw = (*validation_data, None, None)[:3]
    return batches_dataset(vx, vy, batch_size, vw)


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
        "seed_generators": [np.asarray(_keras.to_numpy(v)).tolist() for v in _seed_variables(model)],
        "global_seed_generator": global_gen,
        "framework_random": _keras.framework_random_state(),
        # Running sums of the epoch's training metrics: after a restart mid-epoch they are put
        # back so the epoch's logged loss covers all its batches, as without the restart.
        "metrics": [np.asarray(_keras.to_numpy(v)).tolist() for v in model.metrics_variables],
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
    done = found[-1].marker.get("global_batch", 0) if found else 0  # the callback's count starts from the newest marker

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
        steps_per_epoch=None, **fit_kwargs):
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
    bitwise equal), else one drawn once and kept in the checkpoints.

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
    found = store.committed(checkpoint_dir)
    start_epoch, start_batch = initial_epoch, 0
    history: dict[str, list[float]] = {}
    resume_data = None
    if found:
        chosen = store.newest_intact(checkpoint_dir)
        _keras.ensure_optimizer_built(model)
        api.load_weights(model, store.model_file(chosen))
        state = store.read_state(chosen)
        seed = state["extra"]["seed"]
        _put_back(model, state["extra"])
        history = state["history"]
        # An epoch checkpoint records epochs done; a batch checkpoint the epoch under way.
        start_epoch, start_batch = state["epoch"], state["batch"] or 0
        if "data_position" in state["extra"]:
            resume_data = (state["extra"]["data_position"], (chosen.path / DATA_STATE).read_bytes())
    if seed is None:
        # keras.utils.set_random_seed(n) makes a script reproducible: so is its sample order. Without
        # one, a seed is drawn once; the checkpoints keep it for the resumed run.
        seed = _keras.global_random_seed()
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
    feed = _feed(x, y, seed=seed, shuffle=shuffle, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                 initial_epoch=initial_epoch, sample_weight=sample_weight, class_weight=class_weight,
                 validation_split=validation_split, validation_data=validation_data, resumed=bool(found),
                 resume_data=resume_data, due=_due(parse_save_freq(save_freq), found, initial_epoch, start_epoch, start_batch))
    at = feed.at
    if start_batch >= at(start_epoch)[2]:
        start_epoch, start_batch = start_epoch + 1, 0
    checkpoint = Checkpoint(checkpoint_dir, save_freq=save_freq, keep_last=keep_last, keep_best=keep_best, monitor=monitor, mode=mode,
                            async_write=async_write, save_weights_only=save_weights_only)
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
        first_batches = feed.batches(start_epoch, start_batch)
        sample = next(first_batches)
        _keras.build_metrics(model, sample[0], sample[1] if len(sample) > 1 else None)
        first_batches = _prepend(sample, first_batches)
    # The checkpoint goes last, so what it saves at an epoch's end includes what the other
    # callbacks (EarlyStopping, ReduceLROnPlateau) did at that epoch's end.
    continuity = _framework_random_continuity(state["extra"].get("framework_random") if found else None)
    fit_callbacks = [continuity, *callbacks, checkpoint]
    if feed.validation_data is not None:
        fit_kwargs["validation_data"] = feed.validation_data
    result = None
    try:
        for first, end, steps, skip in _segments(at, start_epoch, start_batch, epochs):
            # Each fit call gets its own generator: TensorFlow's adapter reads ahead of the
            # step it is on, and batches read ahead by one call would be lost to the next.
            checkpoint.on_resume = on_resume
            batches = first_batches if skip and first_batches is not None else feed.batches(first, skip)
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
