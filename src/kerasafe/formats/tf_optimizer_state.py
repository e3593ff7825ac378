"""A tf.keras 2 optimizer's state in a TensorFlow checkpoint (or a SavedModel's variables/), into Keras 3's optimizer.

tf.keras 2 kept it in one of two layouts, by optimizer generation:

- 2.11+ optimizers: ``optimizer/_iterations``, ``optimizer/_learning_rate`` and the slots as
  ``optimizer/_variables/N`` in creation order (legacy.optimizers.checkpoint_slot_order);
- legacy optimizers (every TF 2.0-2.10 model, and ``tf.keras.optimizers.legacy`` after):
  ``optimizer/iter``, ``optimizer/learning_rate`` and hyperparameters, and each slot beside
  the variable it belongs to: ``layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m``.

A LossScaleOptimizer around either keeps its inner optimizer's state in the same places
plus ``optimizer/loss_scale/current_loss_scale`` and ``good_steps``, which are Keras 3's
``dynamic_scale`` and ``step_counter``. What does not map is named in a warning and
starts fresh; nothing is put in a slot of another shape.

Example:
    >>> "layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m".partition(SLOT_MARK)[::2]
    ('layer_with_weights-0/kernel', 'optimizer/m')
"""

from __future__ import annotations

import pathlib
import re
import warnings

import numpy as np

from .. import _keras
from ..legacy import optimizers as opt
from ..legacy import weights as legacy_weights
from .tf_checkpoint import (VALUE_SUFFIX, Entry, _layer_assignments, _strip_root, object_graph, read_index, read_tensor,
                            shard_files, tracked_entries)

SLOT_MARK = "/.OPTIMIZER_SLOT/"


def restore_optimizer(model, prefix: pathlib.Path, entries: dict[str, Entry] | None = None, graph=None) -> None:
    """Put a tf.keras 2 checkpoint's optimizer state into ``model.optimizer``; warn and keep fresh slots when they do not map."""
    if entries is None:
        entries = read_index(prefix.with_name(prefix.name + ".index"))
        graph = object_graph(prefix, entries)
        entries = tracked_entries(entries, graph)
    base = f"{_strip_root(entries)}optimizer/"
    value = _Reader(entries, prefix, base)
    iterations = value.entry("_iterations") or value.entry("iter")
    if iterations is None:
        return  # no optimizer state saved
    _keras.ensure_optimizer_built(model)
    optimizer = model.optimizer
    holder = opt.slot_holder(optimizer)  # a LossScaleOptimizer's inner optimizer keeps the slots
    holder.iterations.assign(value.read(iterations).astype(str(holder.iterations.dtype)))
    rate = value.entry("_learning_rate") or value.entry("learning_rate")
    variable = getattr(holder, "_learning_rate", None)
    if rate is not None and hasattr(variable, "assign"):  # a schedule has no variable to put it in
        variable.assign(value.read(rate).astype(str(variable.dtype)))
    cache = value.entry("momentum_cache")
    if cache is not None and hasattr(holder, "_u_product"):  # legacy Nadam's schedule product
        holder._u_product.assign(value.read(cache).astype(str(holder._u_product.dtype)))
    _restore_loss_scale(optimizer, value, prefix)
    if any(SLOT_MARK in name for name in entries):
        _restore_legacy_slots(model, holder, entries, graph, prefix, value)
    else:
        _restore_numbered_slots(model, holder, entries, prefix, value, base)


class _Reader:
    """Entries under the optimizer's path, read from the checkpoint's shards."""

    def __init__(self, entries: dict[str, Entry], prefix: pathlib.Path, base: str):
        self.entries, self.prefix, self.base, self.shards = entries, prefix, base, shard_files(prefix)

    def entry(self, name: str) -> Entry | None:
        return self.entries.get(f"{self.base}{name}{VALUE_SUFFIX}")

    def read(self, entry: Entry) -> np.ndarray:
        return read_tensor(entry, self.shards, self.prefix)


def _restore_loss_scale(optimizer, value: _Reader, prefix) -> None:
    """tf.keras's dynamic loss scale (its current value and steps since the last change), Keras 3's LossScaleOptimizer's."""
    scale, steps = value.entry("loss_scale/current_loss_scale"), value.entry("loss_scale/good_steps")
    if scale is None:
        return
    if not hasattr(optimizer, "dynamic_scale"):
        warnings.warn(f"{prefix}: the checkpoint's dynamic loss scale has no place in {type(optimizer).__name__} "
                      "(compiled without a LossScaleOptimizer); it is not restored", stacklevel=5)
        return
    optimizer.dynamic_scale.assign(value.read(scale).astype(str(optimizer.dynamic_scale.dtype)))
    if steps is not None:
        optimizer.step_counter.assign(value.read(steps).astype(str(optimizer.step_counter.dtype)))


def _restore_numbered_slots(model, holder, entries, prefix, value: _Reader, base: str) -> None:
    """2.11+ optimizers: ``_variables/N`` (0 is iterations again), the slots in creation order."""
    pattern = re.compile(rf"^{re.escape(base)}_variables/(\d+){re.escape(VALUE_SUFFIX)}$")
    numbered = {}
    for name, entry in entries.items():
        match = pattern.match(name)
        if match and int(match.group(1)) > 0:
            numbered[int(match.group(1))] = entry
    slots = [numbered[index] for index in sorted(numbered)]
    trainable = model.trainable_variables

    def slot(index: int, kind: str):
        return opt.slot_variable(holder, trainable[index], kind)

    kinds = [k for k in opt.SLOT_KINDS if trainable and slot(0, k) is not None]
    order = opt.checkpoint_slot_order(type(holder).__name__, kinds, len(trainable)) or []
    targets = [slot(index, kind) for index, kind in order]
    if len(targets) != len(slots) or any(t is None or not legacy_weights.fits(e.shape, t.shape) for t, e in zip(targets, slots)):
        warnings.warn(f"{prefix}: the checkpoint's {len(slots)} optimizer slot arrays do not map onto "
                      f"{type(holder).__name__}'s slots; they start fresh (iterations restored)", stacklevel=5)
        return
    for target, entry in zip(targets, slots):  # virtual-batch BatchNormalization kept full rank
        target.assign(legacy_weights.fit_shape(value.read(entry), target.shape, entry.name))


def _restore_legacy_slots(model, holder, entries, graph, prefix, value: _Reader) -> None:
    """Legacy optimizers: each slot beside its variable (``<variable path>/.OPTIMIZER_SLOT/optimizer/<slot>``)."""
    assignments: list = []
    _layer_assignments(model, _strip_root(entries), entries, graph, prefix, True, assignments, [])
    variable_of = {entry: variable for variable, entry in assignments}
    kinds = opt.TF_KERAS_LEGACY_OPTIMIZER_SLOTS.get(type(holder).__name__, {})
    targets: dict[str, tuple] = {}  # each saved slot once (the object graph may reach it by several paths)
    for name, entry in entries.items():
        if SLOT_MARK not in name or not name.endswith(VALUE_SUFFIX):
            continue
        owner, _, slot_path = name[: -len(VALUE_SUFFIX)].partition(SLOT_MARK)
        variable = variable_of.get(entries.get(owner + VALUE_SUFFIX))
        kind = kinds.get(slot_path.split("/")[-1])
        target = opt.slot_variable(holder, variable, kind) if variable is not None and kind else None
        if target is not None and legacy_weights.fits(entry.shape, target.shape):
            targets[entry.name] = (target, entry)
        else:
            targets.setdefault(entry.name, (None, name))
    dropped = [name for target, name in targets.values() if target is None]
    if dropped:
        warnings.warn(f"{prefix}: {len(dropped)} optimizer slot arrays have no place in {type(holder).__name__} "
                      f"(first: {dropped[0]}); every slot starts fresh (iterations restored)", stacklevel=5)
        return
    for target, entry in targets.values():
        target.assign(legacy_weights.fit_shape(value.read(entry), target.shape, entry.name))
