"""One background thread that writes checkpoints, at most one write in flight.

The training thread hands over a job (a snapshot already copied to host memory and
the function that writes it) and goes on. Before the next job it waits for the
previous one, so there is never more than one write running and never more than
one extra copy of the model in memory. An exception in the background is kept and
raised on the training thread at the next :meth:`submit` or :meth:`wait`, never
lost.

Example:
    >>> from kerasafe.checkpoint.writer import BackgroundWriter
    >>> w = BackgroundWriter("/tmp/run")
    >>> w.submit(lambda: 1 / 0, "checkpoint 3")
    >>> w.wait()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    kerasafe.errors.CheckpointWriteError: /tmp/run: expected checkpoint 3 written in the background, found ZeroDivisionError: ...
"""

from __future__ import annotations

import os
import threading
import time

from .. import errors


class BackgroundWriter:
    """Runs write jobs one at a time on a background thread; re-raises their errors on the caller's."""

    def __init__(self, directory):
        self.directory = directory
        self._thread: threading.Thread | None = None
        self._failure: tuple[str, BaseException] | None = None
        self.seconds_waited = 0.0  # time the training thread spent waiting for an earlier write
        self.submitted = 0  # jobs handed to the background thread

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, job, description: str) -> None:
        """Wait for the write in flight (raising its error, if any), then start ``job`` in the background."""
        self.wait()

        def run():
            _yield_cpu_to_training()
            try:
                job()
            except BaseException as exc:  # kept for the training thread; a thread cannot raise to it
                self._failure = (description, exc)

        self.submitted += 1

        # Not a daemon: the interpreter waits for a write in progress before it exits.
        self._thread = threading.Thread(target=run, name="kerasafe-checkpoint-writer", daemon=False)
        self._thread.start()

    def run_now(self, job, description: str) -> None:
        """Run ``job`` on this thread (``async_write=False``), failing the same way a background job does."""
        self.wait()
        try:
            job()
        except Exception as exc:
            raise self._error(description, exc) from exc

    def wait(self) -> None:
        """Block until no write is in flight; raise a background failure as a CheckpointWriteError."""
        if self._thread is not None:
            start = time.perf_counter()
            self._thread.join()
            self.seconds_waited += time.perf_counter() - start
            self._thread = None
        if self._failure is not None:
            description, exc = self._failure
            self._failure = None
            raise self._error(description, exc) from exc

    def _error(self, description: str, exc: BaseException) -> errors.CheckpointWriteError:
        return errors.CheckpointWriteError(
            self.directory, f"{description} written in the background", f"{type(exc).__name__}: {exc}",
            "the previous checkpoint is intact; fix the cause (disk space, permissions) and run again to resume",
        )


# Nice value of the writer thread (and the threads it starts, which inherit it).
WRITER_NICENESS = 10


def _yield_cpu_to_training() -> None:
    """Let training threads go first when the CPU is busy: the write needs CPU (copies into the page cache,
    hashing) that would otherwise slow the training steps running beside it. On Linux each thread
    has its own nice value; elsewhere this does nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
    except (AttributeError, OSError):
        pass
