"""What ``ks.fit`` can read besides arrays, each as batches from a position it can name again after a crash.

- A ``keras.utils.PyDataset`` is index-addressable: ks.fit owns the order of its batch
  indices (a permutation per epoch from the seed when shuffling, as Keras shuffles a
  PyDataset's batch order), so a restart knows exactly which batches are done. Its
  ``workers`` read ahead on threads (processes with ``use_multiprocessing``), at most
  ``max_queue_size`` batches, in order, as Keras's own enqueuer does (:func:`read_py_dataset`).
- A callable returning an iterable, or a re-iterable object (``iter`` gives a fresh
  iterator each time), is *replayable*: the stream is its passes one after another, and a
  restart replays it and skips the batches already trained on. Exact when it yields the
  same sequence each time.
- A one-shot iterator (a generator object) cannot be replayed: a restart goes on with its
  next batch, and ks.fit warns that the position is not reproduced.

Example:
    >>> source = Replayable(lambda: iter([1, 2, 3]))
    >>> list(itertools.islice(source.batches_from(2), 4))
    [3, 1, 2, 3]
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import queue
import threading
import warnings
from collections.abc import Iterator

import numpy as np

from .. import errors


def is_py_dataset(x) -> bool:
    return any(c.__name__ in ("PyDataset", "Sequence") and c.__module__.startswith("keras") for c in type(x).__mro__)


def is_lazy(part) -> bool:
    """True for rows left on disk (``kerasafe.pipeline.streaming``'s ImageFiles and CsvRows): read them with :func:`take`."""
    return getattr(part, "lazy_rows", False)


def take(part, index):
    """Rows ``index`` of an array, or of rows left on disk (reading only those)."""
    return part.rows(index) if is_lazy(part) else np.asarray(part)[index]


def prefetch(batches, depth: int = 4):
    """``batches`` produced ``depth`` ahead on a background thread (decoding overlaps training), in order.

    Stops its thread when the consumer stops (the generator is closed) and re-raises
    the producer's exception at the batch where it happened.
    """
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        ahead.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(("error", exc))
            return
        ahead.put(("batch", done))

    thread = threading.Thread(target=produce, name="kerasafe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ahead.get()
            if kind == "error":
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ahead.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def is_arrays(x) -> bool:
    if isinstance(x, dict):
        return all(hasattr(v, "shape") or isinstance(v, list) for v in x.values())
    if isinstance(x, list | tuple):
        return all(hasattr(v, "shape") for v in x)
    return hasattr(x, "shape") and hasattr(x, "__array__") or hasattr(x, "__array_interface__")


_WORKER_DATASET = None  # the PyDataset, in each reading process (set once, not sent with every index)


def _init_worker(dataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _get(index: int):
    return _WORKER_DATASET[index]


def read_py_dataset(dataset, indices: Iterator[int]) -> Iterator:
    """``dataset[i]`` for each index in order; with ``workers`` > 1 read ahead (at most ``max_queue_size``)."""
    workers = max(1, int(getattr(dataset, "workers", 1) or 1))
    if workers == 1:
        for i in indices:
            yield dataset[i]
        return
    queue = max(1, int(getattr(dataset, "max_queue_size", 10) or 10))
    if getattr(dataset, "use_multiprocessing", False):
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(dataset,))
        get = _get
    else:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        get = dataset.__getitem__
    try:
        pending = collections.deque(pool.submit(get, i) for i in itertools.islice(indices, queue))
        while pending:
            batch = pending.popleft().result()
            pending.extend(pool.submit(get, i) for i in itertools.islice(indices, 1))
            yield batch
    finally:  # also when Keras stops reading (the generator is closed): drop what was read ahead
        pool.shutdown(wait=False, cancel_futures=True)


class Replayable:
    """A callable or re-iterable source: its passes one after another, replayed and skipped to a position."""


    def __init__(self, make, *, length=None):
        self.make, self.length = make, length  # length: batches per pass, where the source knows it

    def batches_from(self, position: int) -> Iterator:
        """The stream from batch ``position`` (counted from the first pass's first batch) on, without end."""
        def passes():
            while True:
                empty = True
                for batch in self.make():
                    empty = False
                    yield batch
                if empty:
                    return
        return itertools.islice(passes(), position, None)


class OneShot:
    """An iterator that cannot start again: a restart continues with whatever it yields next."""

    length = None

    def __init__(self, iterator):
        self.iterator = iterator

    def batches_from(self, position: int) -> Iterator:
        return self.iterator


def stream_source(x, *, resumed: bool):
    """The source for a non-array, non-PyDataset ``x``; warn when a resumed position cannot be reproduced."""
    if hasattr(x, "__next__"):
        if resumed:
            warnings.warn("ks.fit: the data is a one-shot iterator (a generator object), which cannot be replayed: the "
                          "resumed run continues with its next batch, not the batch after the checkpoint. Pass a function "
                          "that returns the generator (ks.fit(model, make_batches, ...)) to resume exactly", stacklevel=3)
        return OneShot(x)
    if callable(x):
        return Replayable(lambda: iter(x()))
    if hasattr(x, "__iter__") and not isinstance(x, str | bytes | dict | np.ndarray):
        return Replayable(lambda: iter(x), length=len(x) if hasattr(x, "__len__") else None)
    raise errors.KerasafeError(None, "arrays, a PyDataset, a generator function, an iterable or an iterator as x",
                               type(x).__name__, "pass one of those")
