"""Dynamic batching: requests wait together a few milliseconds, then run as one predict call.

Each request puts its inputs on a bounded queue and awaits its answer. One worker
takes the first waiting request and every one queued behind it, then, while more
requests are inside the server on their way (``coming``), waits for them until the
batch holds ``max_batch`` inputs or ``max_latency_ms`` have passed since the first
was taken (a lone request never waits), runs the model on
a thread (the event loop keeps accepting requests meanwhile) and hands each request
its rows. A batch never holds more than ``max_batch`` inputs: a request with more
is refused (413) before it queues, so no batch outgrows what was compiled and warmed.
A full queue answers at once (:class:`QueueFull`, a 503) instead of growing without
bound.

Example:
    >>> import asyncio, numpy as np
    >>> async def demo():
    ...     b = Batcher(lambda x: x * 2, max_batch=4, max_latency_ms=50, queue_size=8, coming=lambda: 2)
    ...     b.start()
    ...     out = await asyncio.gather(b.submit(np.ones((1, 2))), b.submit(np.ones((2, 2))))
    ...     await b.stop()
    ...     return [o.shape for o in out], b.batch_sizes
    >>> asyncio.run(demo())
    ([(1, 2), (2, 2)], [3])
"""

from __future__ import annotations

import asyncio
import time

import numpy as np


class QueueFull(RuntimeError):
    """The queue holds as many requests as it may: answer 503 and let the client retry."""


class Batcher:
    def __init__(self, predict, *, max_batch: int, max_latency_ms: float, queue_size: int, on_batch=None, coming=None):
        self.predict = predict
        # How many requests are on their way (inside the server, not yet submitted or answered): a batch
        # waits for more only while some are, so a lone request never waits for company.
        self.coming = coming or (lambda: 0)
        self.max_batch = max_batch
        self.max_latency = max_latency_ms / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.on_batch = on_batch  # called with each batch's size (metrics)
        self.batch_sizes: list[int] = []
        self._worker: asyncio.Task | None = None
        self._carry = None  # a request taken off the queue that did not fit the last batch

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answer everything queued, then stop (the server's drain on SIGTERM)."""
        while not self.queue.empty() or self._carry is not None:
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def submit(self, inputs: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((inputs, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} requests waiting") from None
        return await future

    async def _next_batch(self) -> list:
        first = self._carry if self._carry is not None else await self.queue.get()
        self._carry = None
        taken, count = [first], len(first[0])
        deadline = time.monotonic() + self.max_latency
        while count < self.max_batch:
            if not self.queue.empty():
                item = self.queue.get_nowait()  # what already waits joins at once
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.coming() <= len(taken):
                    break  # nothing more on its way, or waited long enough
                try:
                    item = await asyncio.wait_for(self.queue.get(), min(remaining, 0.002))
                except asyncio.TimeoutError:
                    continue
            if count + len(item[0]) > self.max_batch:
                self._carry = item  # first in the next batch
                break
            taken.append(item)
            count += len(item[0])
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            taken = await self._next_batch()
            live = [(x, f) for x, f in taken if not f.cancelled()]  # a request that timed out is not computed
            if not live:
                continue
            batch = np.concatenate([x for x, _ in live])
            self.batch_sizes.append(len(batch))
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                out = await loop.run_in_executor(None, self.predict, batch)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the failure as its answer
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for x, future in live:
                if not future.done():
                    future.set_result(out[start:start + len(x)])
                start += len(x)
