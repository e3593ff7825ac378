"""Where ``ks.fit``'s batches come from: arrays, a PyDataset, a generator, tf.data, grain or a DataLoader.

ks.fit owns the order of arrays and PyDatasets: epoch ``e`` visits the samples (a
PyDataset's batch indices) in ``epoch_order(seed, e)``, so a restart knows which
batches are done. Streams (generators, tf.data, grain, DataLoaders) are read as their
passes one after another from a position (:mod:`.sources`, :mod:`.stateful_sources`).
:func:`make_feed` turns ``x`` and the ``fit`` arguments into a :class:`Feed`; ``fit``
calls ``feed.batches(epoch, skip, end)`` once per ``model.fit`` call it makes (epochs ``epoch``
to ``end``, ``skip`` batches of the first done).

Example:
    >>> at = epoch_plan(5, 2)  # 5 batches a pass, epochs of 2: Keras ends the third epoch early
    >>> [at(e) for e in range(4)]
    [(0, 0, 2), (0, 2, 2), (0, 4, 1), (1, 0, 2)]
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from .. import _keras, errors
from . import sources, stateful_sources


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
        # A tuple either way: Keras's generator adapter on TensorFlow takes no list in a batch's structure.
        return tuple(sources.take(v, index) for v in x)
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


def _epochs(n, seed, shuffle, at, start_epoch, skip, end_epoch=None):
    """(order of the data epoch, its batch numbers) per training epoch from ``start_epoch`` (``skip`` of its batches done) to ``end_epoch``."""
    for epoch in itertools.count(start_epoch) if end_epoch is None else range(start_epoch, end_epoch):
        data_epoch, first, count = at(epoch)
        yield epoch_order(n, seed, data_epoch, shuffle), range(first + (skip if epoch == start_epoch else 0), first + count)


def _walk(n, seed, shuffle, at, start_epoch, skip):
    """(order of the data epoch, batch number) from training epoch ``start_epoch`` on, without end."""
    for order, numbers in _epochs(n, seed, shuffle, at, start_epoch, skip):
        for b in numbers:
            yield order, b


def _py_dataset_batches(dataset, seed, shuffle, at, start_epoch, skip, end_epoch):
    """A PyDataset's batches in ks.fit's order, with its on_epoch_begin/on_epoch_end around each epoch as Keras calls them.

    Workers read ahead within an epoch only, so what on_epoch_end changes is seen by
    the next epoch's reads, as with Keras's own enqueuer; nothing is read past ``end_epoch``
    (the fit call's last), so a backend that prefetches (TensorFlow) does not begin an epoch
    that call does not train.
    """
    for order, numbers in _epochs(len(dataset), seed, shuffle, at, start_epoch, skip, end_epoch):
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


def segments(at, start_epoch: int, start_batch: int, epochs: int) -> list[tuple[int, int, int, int]]:
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


def prepend(first, rest):
    """``first`` then ``rest``, as a generator (Keras takes generators, not other iterators)."""
    yield first
    yield from rest


class Feed:
    """Where ks.fit's batches come from: ``at`` (epoch -> data epoch, first batch, batches) and ``batches(epoch, skip, end)``.

    ``data_state(epoch, batch)``, for a source that can say where it is: (the position its
    stored state was taken at, the state), what a checkpoint at (epoch, batch) keeps.
    """

    def __init__(self, at, batches, validation_data, data_state=None):
        self.at, self.batches, self.validation_data, self.data_state = at, batches, validation_data, data_state


def _stream_feed(source, steps, initial_epoch, resume, due, class_weight, validation_data) -> Feed:
    """A stream's feed: position = batches since ``initial_epoch``, from which each fit call opens the stream.

    A source that can say where it is (tf.data, grain, a DataLoader) opens at the state recorded
    there (the checkpoint's, when resuming) and gives each checkpoint its state; the others replay.
    """
    stateful = isinstance(source, stateful_sources.StatefulSource)

    def position(epoch, batch):
        return (epoch - initial_epoch) * steps + (batch or 0)

    def batches(epoch, skip, end=None):
        nonlocal resume
        p = position(epoch, skip)
        if not stateful:
            return _weighted(source.batches_from(p), class_weight)
        state, resume = (resume if resume is not None else source.state_at(p) if p else None), None
        return _weighted(source.batches_from(p, state, due=due), class_weight)

    data_state = (lambda epoch, batch: source.state_at(position(epoch, batch))) if stateful else None
    return Feed(lambda epoch: (0, 0, steps), batches, validation_data, data_state=data_state)


def make_feed(x, y, *, seed, shuffle, batch_size, steps_per_epoch, initial_epoch, sample_weight, class_weight,
              validation_split, validation_data, resumed, resume_data=None, due=None) -> Feed:
    """The Feed for ``x`` and the fit arguments (``resume_data``: a stream's stored state; ``due``: steps -> positions checkpoints are taken at)."""
    kind = "py_dataset" if sources.is_py_dataset(x) else "arrays" if sources.is_arrays(x) else "stream"
    if kind != "arrays":
        for name, value in (("y", y), ("sample_weight", sample_weight), ("validation_split", validation_split or None)):
            if value is not None:
                raise errors.KerasafeError(None, f"no {name} with {type(x).__name__} data (Keras takes it with arrays only)",
                                           f"{name}={type(value).__name__}", "let the data yield (x, y[, sample_weight]) batches")
    if kind == "py_dataset":  # epoch orders are over its batch indices
        at = epoch_plan(len(x), steps_per_epoch)
        return Feed(at, lambda epoch, skip, end=None: _weighted(_py_dataset_batches(x, seed, shuffle, at, epoch, skip, end), class_weight),
                    validation_data)
    if kind == "stream":
        source = stateful_sources.stateful_source(x) or sources.stream_source(x, resumed=resumed)
        steps = steps_per_epoch or source.length
        if not steps:
            raise errors.KerasafeError(None, "steps_per_epoch for data without a length", type(x).__name__,
                                       "pass steps_per_epoch=N (batches per epoch), as Keras needs for a generator")
        return _stream_feed(source, steps, initial_epoch, resume_data, due(steps), class_weight, validation_data)
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
        return Feed(at, lambda epoch, skip, end=None: sources.prefetch(_batches(parts, batch_size, seed, shuffle, at, epoch, skip)),
                    _streamed_validation(validation_data, batch_size))
    return Feed(at, lambda epoch, skip, end=None: _batches(parts, batch_size, seed, shuffle, at, epoch, skip), validation_data)


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
