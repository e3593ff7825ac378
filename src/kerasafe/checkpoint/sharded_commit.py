"""Committing a checkpoint that several processes write together (a ``keras.distribution`` run).

Every process writes its part (its shard file, then its done marker, each durable)
into one partial directory whose name all of them derive from the step. Process 0
writes what is shared (model.json, the data state), waits until every process's
done marker is there, writes the ``COMMIT`` marker last and renames the directory
into place: the checkpoint is whole or invisible. A process killed mid-write never
writes its marker, so the step is never committed and the previous checkpoint
stays the newest; the partial directory is removed by the next run's start
(:func:`kerasafe.checkpoint.store.clean`).

No collective is used to agree: the writes run on each process's background thread
while training goes on, and collectives there would interleave with the training
step's. The shared directory is the rendezvous, as in Orbax.

Example:
    >>> from kerasafe.checkpoint import sharded_commit
    >>> sharded_commit.partial_dir("/ck", 12).name
    '.ckpt-00000012.kerasafe-partial'
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil
import time

from .. import errors, storage
from ..formats import sharded
from . import store

PARTIAL = ".kerasafe-partial"
# How long process 0 waits for the others' parts. A process that died stops training too
# (its collectives never answer), so this only bounds how long a failed run hangs at its end.
PEER_TIMEOUT = 600.0


def partial_dir(directory, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f".{store.name_for(step)}{PARTIAL}"


def is_partial(entry: pathlib.Path) -> bool:
    return entry.name.startswith(".ckpt-") and entry.name.endswith(PARTIAL)


def write(directory, step: int, part: sharded.Part, files: dict[str, bytes], marker: dict, *, processes: int,
          timeout: float = PEER_TIMEOUT) -> pathlib.Path | None:
    """Write this process's part of checkpoint ``step``; in process 0 also commit it. Return the committed path (process 0)."""
    tmp = partial_dir(directory, step)
    primary = part.layout is not None
    sharded.write_part(part, tmp, primary=primary)
    if not primary:
        return None
    for name, content in files.items():
        (tmp / name).write_bytes(content)
    _wait_for_parts(tmp, processes, timeout)
    recorded = {}
    for name in [sharded.LAYOUT, *files, *(sharded.done_file(p) for p in range(processes))]:
        with open(tmp / name, "rb") as f:
            recorded[name] = storage.hash_stream(f)
    (tmp / store.MARKER).write_text(_commit_marker(step, recorded, processes, marker), encoding="utf-8")
    target = pathlib.Path(directory) / store.name_for(step)
    storage.move_directory_into_place(tmp, target)
    return target


def _commit_marker(step: int, recorded: dict[str, str], processes: int, marker: dict) -> str:
    """The COMMIT marker's text: the step, every listed file's hash, and what the callback records."""
    return json.dumps({"step": step, "files": recorded, "sharded": True, "processes": processes,
                       "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), **marker})


def _wait_for_parts(tmp: pathlib.Path, processes: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    missing = list(range(processes))
    while True:
        missing = [p for p in missing if not (tmp / sharded.done_file(p)).is_file()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise errors.CheckpointWriteError(
                tmp, f"the parts of all {processes} processes", f"none from process(es) {missing[:8]} after {timeout:.0f} s",
                "a process died or cannot see this directory; the previous checkpoint is intact; restart the run to resume",
            )
        time.sleep(0.02)


def write_to_store(place, staging: pathlib.Path, step: int, part: sharded.Part, files: dict[str, bytes], marker: dict, *,
                   processes: int, timeout: float = PEER_TIMEOUT) -> bool:
    """The same protocol with the parts on an object store (``place``: a RemoteCheckpoints): each process
    writes its part in its own staging directory and uploads it, its done marker last; process 0 also
    uploads what is shared, waits for every done marker on the store and uploads ``COMMIT`` last.
    Returns True in process 0 once committed. The checkpoint's prefix is not cleared first: process 0
    cleared uncommitted ones when the run began, before any process could write."""
    tmp = partial_dir(staging, step)
    primary = part.layout is not None
    sharded.write_part(part, tmp, primary=primary)
    try:
        for name, content in files.items() if primary else ():
            (tmp / name).write_bytes(content)
        prefix = place.prefix(step)
        own = [sharded.shard_file(part.process)] if part.shards else []
        shared = [sharded.LAYOUT, *files] if primary else []
        for name in [*own, *shared, sharded.done_file(part.process)]:  # the done marker last
            place.put(tmp / name, f"{prefix}/{name}")
        if not primary:
            return False
        deadline = time.monotonic() + timeout
        while missing := [p for p in range(processes) if not place.exists(f"{prefix}/{sharded.done_file(p)}")]:
            if time.monotonic() > deadline:
                raise errors.CheckpointWriteError(
                    prefix, f"the parts of all {processes} processes", f"none from process(es) {missing[:8]} after {timeout:.0f} s",
                    "a process died or cannot reach the store; the previous checkpoint is intact; restart the run to resume")
            time.sleep(0.05)
        recorded = {}
        for name in [sharded.LAYOUT, *files]:
            with open(tmp / name, "rb") as f:
                recorded[name] = storage.hash_stream(f)
        for p in range(processes):
            recorded[sharded.done_file(p)] = storage.hash_bytes(place.read(f"{prefix}/{sharded.done_file(p)}"))
        (tmp / store.MARKER).write_text(_commit_marker(step, recorded, processes, marker), encoding="utf-8")
        place.put(tmp / store.MARKER, f"{prefix}/{store.MARKER}")
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
