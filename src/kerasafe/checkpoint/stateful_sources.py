"""Data sources that can say where they are: tf.data, grain and a PyTorch ``DataLoader``.

Each is read as an endless stream of its passes, one after another (ks.fit cuts it
into epochs of ``steps_per_epoch`` batches, one pass each by default). Keras reads
ahead of the step it trains (it peeks at the first batches, TensorFlow prefetches),
so a source's state "now" is not the state at the checkpoint's position. Instead the
stream records its state *at* the positions where a checkpoint may be taken (``due``),
before reading on; a checkpoint at position ``p`` stores the newest recorded state at
or before ``p`` and how many batches follow it. Resuming restores that state and
skips those batches (none, when the prediction held).

- tf.data: the state of one iterator over ``dataset.repeat()`` (tf.data's own
  iterator checkpointing: shuffle buffers, the reshuffle seed count, prefetched
  elements). Exact when the pipeline's randomness is seeded
  (``keras.utils.set_random_seed`` or ``shuffle(seed=)``), as tf.data needs for two
  runs to agree at all.
- grain: its iterators' ``get_state``/``set_state``.
- DataLoader: the random state its sampler and workers draw from at the start of
  each pass (torch's global generator and the loader's own), and the batches read
  in the pass since; resuming draws the same pass and reads up to the position again.

Example:
    >>> import numpy as np, grain
    >>> source = GrainSource(grain.MapDataset.source(np.arange(6)).batch(2))
    >>> stream = source.batches_from(0, due=lambda p: p == 2)
    >>> [b.tolist() for b in itertools.islice(stream, 2)], source.state_at(2)[0]
    ([[0, 1], [2, 3]], 2)
    >>> saved = source.state_at(2)  # what a checkpoint after two batches keeps: (position, state)
    >>> [b.tolist() for b in itertools.islice(GrainSource(grain.MapDataset.source(np.arange(6)).batch(2)).batches_from(2, saved), 3)]
    [[4, 5], [0, 1], [2, 3]]
"""

from __future__ import annotations

import contextlib
import io
import itertools  # noqa: F401  (the module example uses it)
import json
from collections.abc import Callable, Iterator

import numpy as np

from .. import errors


def _plain(batch):
    """A batch as Keras takes it from a generator on every backend: NumPy arrays, a tuple at the top."""
    if isinstance(batch, dict):
        return {k: _plain(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return tuple(_plain(v) for v in batch)
    return np.asarray(batch) if hasattr(batch, "shape") else batch


class StatefulSource:
    """An endless stream of passes whose position can be stored (``state_at``) and restored (``batches_from``)."""

    length: int | None = None  # batches per pass, where known

    def __init__(self):
        self._recorded: dict[int, bytes] = {}
        self._position = None  # batches handed out so far (counted from the stream's start)

    # Per kind: open the stream at a saved state (None: at the start), and the state now.
    def _open(self, state: bytes | None) -> Iterator:
        raise NotImplementedError

    def _state(self) -> bytes:
        raise NotImplementedError

    def batches_from(self, position: int, state: tuple[int, bytes] | None = None,
                     due: Callable[[int], bool] | None = None) -> Iterator:
        """The stream from ``position`` on: ``state`` is what :meth:`state_at` returned for it (None: from the start)."""
        saved_at, state = state if state is not None else (0, None)
        stream = self._open(state)
        # Batches between the recorded state and the position (and, with no state, from the start).
        for _ in range(position - saved_at):
            next(stream)
        self._recorded = {position: self._state()}
        p = self._position = position
        while True:
            if due is not None and due(p) and p not in self._recorded:
                self._recorded[p] = self._state()
            try:
                batch = next(stream)
            except StopIteration:  # the data ran out: Keras stops the run with its own warning
                return
            p += 1
            self._position = p
            yield _plain(batch)

    def state_at(self, position: int) -> tuple[int, bytes]:
        """(recorded position <= ``position``, its state): what a checkpoint at ``position`` stores."""
        if position == self._position and position not in self._recorded:
            self._recorded[position] = self._state()  # nothing read ahead: the state now is the state there
        earlier = [p for p in self._recorded if p <= position]
        if not earlier:
            raise errors.KerasafeError(None, f"a data state at or before batch {position}", "none recorded",
                                       "report this: the stream was not started at the position it resumed from")
        at = max(earlier)
        for p in [p for p in self._recorded if p < at]:
            del self._recorded[p]  # checkpoints only move forward
        return at, self._recorded[at]


class TFDataSource(StatefulSource):
    """A ``tf.data.Dataset``: one iterator over ``dataset.repeat()``, its state tf.data's own."""

    def __init__(self, dataset):
        super().__init__()
        import tensorflow as tf

        self.dataset, self._tf = dataset, tf
        n = int(dataset.cardinality())
        self.length = n if n > 0 else None  # INFINITE (-1) or UNKNOWN (-2): steps_per_epoch says
        self._iterator = None

    def _open(self, state):
        self._iterator = iter(self.dataset.repeat())
        if state is not None:
            # OwnedIterator._save/_restore are tf.train.Checkpoint's own serialisation of the
            # iterator as one string tensor; the public route writes files we would read back.
            self._iterator._restore(self._tf.constant(state))
        return self._iterator

    def _state(self):
        return self._iterator._save().numpy()


class GrainSource(StatefulSource):
    """A grain ``MapDataset``/``IterDataset``/``DataLoader``: its iterator's ``get_state``."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.length = len(dataset) if hasattr(dataset, "__len__") else None
        self._iterator = None

    def _open(self, state):
        self._iterator = iter(self.dataset)
        if state is not None:
            kind, body = state[:1], state[1:]
            self._iterator.set_state(json.loads(body) if kind == b"J" else body)
        return self._stream(fresh=state is None)

    def _stream(self, fresh):
        while True:
            empty = True
            for batch in self._iterator:
                empty = False
                yield batch
            if empty and fresh:  # a pass with nothing in it: the data ran out
                return
            self._iterator, fresh = iter(self.dataset), True

    def _state(self):
        state = self._iterator.get_state()
        return b"B" + state if isinstance(state, bytes) else b"J" + json.dumps(state).encode()


class TorchLoaderSource(StatefulSource):
    """A PyTorch ``DataLoader``: the random state each pass starts from, and the batches read in it.

    What the loader draws from torch's global generator (the sampler's seed, the workers'
    base seed) comes from a global state of its own, swapped in around each touch of the
    loader: on the PyTorch backend Keras's unseeded layers (Dropout) draw from the same
    global generator, and a resume that replays part of a pass would otherwise leave the
    two streams interleaved differently from the uninterrupted run.
    """

    def __init__(self, loader):
        super().__init__()
        import torch

        self.loader, self._torch = loader, torch
        try:
            self.length = len(loader)
        except TypeError:  # an IterableDataset without a length
            self.length = None
        self._pass_start, self._in_pass, self._current, self._data_rng = None, 0, None, None

    def _generators(self):
        found = [self.loader.generator, getattr(self.loader.sampler, "generator", None),
                 getattr(getattr(self.loader.batch_sampler, "sampler", None), "generator", None)]
        return list({id(g): g for g in found if g is not None}.values())  # each once, in this order

    @contextlib.contextmanager
    def _data_random_state(self):
        """torch's global generator holds the loader's own state while the loader runs, the training's otherwise."""
        training = self._torch.get_rng_state()
        self._torch.set_rng_state(self._data_rng)
        try:
            yield
        finally:
            self._data_rng = self._torch.get_rng_state()
            self._torch.set_rng_state(training)

    def _begin(self) -> None:
        """Start a pass: everything it draws (sampler order, worker seeds) comes from the states recorded here."""
        self._pass_start = {"global": self._data_rng, "generators": [g.get_state() for g in self._generators()]}
        self._in_pass = 0
        with self._data_random_state():
            self._current = iter(self.loader)

    def _next(self):
        with self._data_random_state():
            return next(self._current)

    def _open(self, state):
        skip = 0
        self._data_rng = self._torch.get_rng_state()  # a new run: the loader starts from the script's global state
        if state is not None:
            saved = self._torch.load(io.BytesIO(state), weights_only=True)
            self._data_rng = saved["global"]
            for g, s in zip(self._generators(), saved["generators"]):
                g.set_state(s)
            skip = saved["in_pass"]
        self._begin()
        for _ in range(skip):  # the part of the pass read before the checkpoint, read again
            self._next()
            self._in_pass += 1
        return self._stream()

    def _stream(self):
        while True:
            try:
                batch = self._next()
            except StopIteration:
                if self._in_pass == 0:
                    return
                self._begin()
                continue
            self._in_pass += 1
            yield batch

    def _state(self):
        if self.length is not None and self._in_pass >= self.length:
            self._begin()  # at a pass's end the next one starts here, so a resume need not read this one again
        buffer = io.BytesIO()
        self._torch.save({**self._pass_start, "in_pass": self._in_pass}, buffer)
        return buffer.getvalue()


def is_tf_dataset(x) -> bool:
    return hasattr(x, "element_spec") and type(x).__module__.startswith("tensorflow")


def is_torch_loader(x) -> bool:
    return any(c.__name__ == "DataLoader" and c.__module__.startswith("torch.utils.data") for c in type(x).__mro__)


def is_grain(x) -> bool:
    return type(x).__module__.startswith("grain") and hasattr(x, "__iter__")


def stateful_source(x) -> StatefulSource | None:
    """The stateful source for ``x``, or None when it is not one of these kinds."""
    if is_tf_dataset(x):
        return TFDataSource(x)
    if is_torch_loader(x):
        return TorchLoaderSource(x)
    if is_grain(x):
        return GrainSource(x)
    return None
