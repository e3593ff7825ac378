"""Where this process stands in a ``keras.distribution`` run, and the shards of its arrays.

Keras distributes only on JAX: a variable's value is a ``jax.Array`` whose shards
live on devices of several processes. Everything kerasafe needs from that is here:
which process this is, whether a model is distributed, the shards this process
must write (each shard once: the copy with ``replica_id == 0``), a host copy of a
replicated value, and placing an array onto any sharding from a function that
reads one slice. On other backends (or JAX without a distribution) there is one
process and every array is whole.

Example:
    >>> from kerasafe import distributed
    >>> distributed.process_index(), distributed.process_count()
    (0, 1)
    >>> distributed.normal_index((slice(None), slice(2, 4)), (3, 6))
    ((0, 3), (2, 4))
"""

from __future__ import annotations

import sys

import numpy as np

from . import _keras


def _jax():
    # Only when the JAX backend is already in use: importing jax to learn there is one process
    # would cost a second on every other backend.
    return sys.modules.get("jax") if _keras.backend_name() == "jax" else None


def process_index() -> int:
    jax = _jax()
    return int(jax.process_index()) if jax is not None else 0


def process_count() -> int:
    jax = _jax()
    return int(jax.process_count()) if jax is not None else 1


def is_primary() -> bool:
    """True in the process that commits checkpoints and writes what all processes share."""
    return process_index() == 0


def current_distribution():
    """The ``keras.distribution`` in effect (JAX only), or None."""
    if _keras.backend_name() != "jax":
        return None
    return _keras.keras().distribution.distribution()


def is_distributed(model=None) -> bool:
    """True when arrays may be split over devices or processes: a distribution is set, several
    processes run, or one of ``model``'s variables spans more than one device."""
    if current_distribution() is not None or process_count() > 1:
        return True
    if model is None or _jax() is None:
        return False
    return any(len(getattr(getattr(v, "value", None), "sharding", None).device_set) > 1
               for v in model.variables if hasattr(getattr(v, "value", None), "sharding"))


def normal_index(index, shape) -> tuple[tuple[int, int], ...]:
    """A tuple of slices (as JAX gives a shard's place) as ``((start, stop), ...)`` over ``shape``."""
    out = []
    for dim, part in zip(shape, tuple(index) + (slice(None),) * (len(shape) - len(index))):
        start, stop, _ = part.indices(dim)
        out.append((start, stop))
    return tuple(out)


def owned_shards(value) -> list[tuple[tuple[tuple[int, int], ...], object]]:
    """The shards of ``value`` this process writes: ``[(index, device array), ...]``.

    A replicated shard is written by the process holding its copy number 0 only, so
    across all processes each distinct shard is written exactly once.
    """
    shape = tuple(value.shape)
    shards = getattr(value, "addressable_shards", None)
    if shards is None:  # not a jax.Array: one whole shard, held here
        return [(normal_index((), shape), value)]
    return [(normal_index(s.index, shape), s.data) for s in shards if s.replica_id == 0]


def host_value(value) -> np.ndarray:
    """The whole value as NumPy in this process: a replicated value from its local copy (a
    multi-process array is not addressable as a whole); a sharded one needs every shard here."""
    if getattr(value, "is_fully_addressable", True):
        return np.asarray(_keras.to_numpy(value))
    if value.is_fully_replicated:
        return np.asarray(value.addressable_data(0))
    raise ValueError("a value sharded over several processes has no whole copy in one process")


def sharding_of(value):
    """The JAX sharding a variable's value has (to place restored arrays the same way), or None."""
    return getattr(getattr(value, "value", value), "sharding", None) if _jax() is not None else None


def place(shape, dtype, sharding, read):
    """An array of ``shape`` laid out as ``sharding``, each local shard filled by ``read(index)``.

    ``read`` gets ``((start, stop), ...)`` and returns that part as NumPy; only the parts this
    process's devices hold are read. Without a sharding, the whole array is read.
    """
    shape = tuple(shape)
    if sharding is None:
        return read(normal_index((), shape)).astype(dtype, copy=False)
    jax = _jax()
    return jax.make_array_from_callback(shape, sharding, lambda index: read(normal_index(index, shape)).astype(dtype, copy=False))


def describe_layout() -> dict:
    """The mesh and the per-variable partition specs, as ``inspect`` shows them."""
    dist = current_distribution()
    layout = {"processes": process_count(), "devices": None, "distribution": type(dist).__name__ if dist else None, "mesh": None}
    if dist is not None:
        mesh = dist.device_mesh
        layout["mesh"] = {"shape": [int(s) for s in mesh.shape], "axis_names": list(mesh.axis_names)}
        layout["devices"] = int(np.prod(mesh.shape))
    elif _jax() is not None:
        layout["devices"] = int(_jax().device_count())
    return layout


def partition_spec(variable) -> list | None:
    """A variable's partition spec as a list of mesh axis names (None: not split on that axis)."""
    sharding = sharding_of(variable)
    spec = getattr(sharding, "spec", None)
    if spec is None:
        return None
    return [list(p) if isinstance(p, tuple) else p for p in spec]


def local_batches(batches):
    """This process's rows of every global batch: ``[p * b / P, (p + 1) * b / P)`` of each array.

    Every process of a multi-process run makes the same global batches (same seed, same
    order); Keras then joins the processes' rows into one global array
    (``jax.make_array_from_process_local_data``), so each row is trained on once.
    """
    from . import errors

    p, n = process_index(), process_count()
    tree = _keras.keras().tree

    def cut(array):
        if array is None:
            return None
        rows = int(array.shape[0])
        if rows % n:
            raise errors.KerasafeError(None, f"batches whose size divides among the {n} processes", f"a batch of {rows} rows",
                                       f"pass a batch_size that is a multiple of {n} (and data whose size is one)")
        k = rows // n
        return array[p * k:(p + 1) * k]

    for batch in batches:
        yield tree.map_structure(cut, batch)


class feeding_own_slices:
    """While in effect, the distribution takes each process's batches as they are.

    Keras refuses anything but tf.data in a multi-process run unless told the data is
    already split (``auto_shard_dataset=False``); ``ks.fit`` splits it (:func:`local_batches`).
    """

    def __init__(self):
        self._dist, self._saved = None, None

    def __enter__(self):
        dist = current_distribution()
        if dist is not None and process_count() > 1 and hasattr(dist, "auto_shard_dataset"):
            self._dist, self._saved = dist, dist.auto_shard_dataset
            dist.auto_shard_dataset = False
        return self

    def __exit__(self, *exc):
        if self._dist is not None:
            self._dist.auto_shard_dataset = self._saved
        return False
