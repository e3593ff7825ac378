"""``.h5`` / ``.hdf5``: the legacy full-model HDF5 layout (Keras 2 / tf.keras 2 / Keras 3).

Root attributes ``model_config``, ``training_config``, ``keras_version``,
``backend``; groups ``model_weights`` and ``optimizer_weights``. kerasafe adds
its manifest as the root attribute ``kerasafe``, which every Keras ignores.
"""

from __future__ import annotations


import json
import os
import warnings

import numpy as np

from .. import _keras, _keras_direct, errors, legacy, storage
from ..legacy import optimizers as opt
from ..legacy import to_keras2
from ..legacy import weights as legacy_weights
from . import _direct, _hdf5
from .base import MODEL, Format, apply_manifest, stored_model_to_fill, summary


def _first_line(exc: Exception) -> str:
    return str(exc).strip().split("\n")[0][:240]


def load_legacy_weights(model, group, path, *, by_name: bool, skip_mismatch: bool) -> None:
    """Load a Keras 1/2 style weights group (``layer_names``/``weight_names``) into ``model`` (legacy.weights)."""
    version = _hdf5.attr_text(group, "keras_version") or _hdf5.attr_text(group.file, "keras_version") or "1"
    theano = (_hdf5.attr_text(group, "backend") or _hdf5.attr_text(group.file, "backend")) == "theano"
    try:
        legacy_weights.load_h5_layers(model, group, by_name=by_name, skip_mismatch=skip_mismatch, keras_version=version, theano=theano)
    except (ValueError, KeyError) as exc:
        raise errors.WeightsMismatchError(
            path, "weights that fit the model's layers", _first_line(exc), "load them into the model they were saved from, or pass by_name=True / skip_mismatch=True"
        ) from None
    _keras.finalize_loaded_state(model)


def compile_from_training_config(model, training: dict, path, custom_objects) -> bool:
    """Compile ``model`` from a Keras 2 style ``training_config``; False (with a warning) when it cannot be."""
    utils = _keras.legacy_saving_utils()
    training = to_keras2.canonical_training_config(training)  # "mse" -> "mean_squared_error": Keras 3 reads only these
    if isinstance(training.get("optimizer_config"), dict):
        training = dict(training, optimizer_config=opt.upgrade_optimizer_config(training["optimizer_config"]))
    try:
        model.compile(**utils.compile_args_from_training_config(training, custom_objects))
    except (ValueError, TypeError, KeyError) as exc:
        warnings.warn(f"{path}: the training configuration cannot be restored ({_first_line(exc)}); the model is not compiled", stacklevel=4)
        return False
    return True


def restore_optimizer(model, f, path, custom_objects, manifest: dict | None) -> None:
    """Compile ``model`` as it was saved and restore every optimizer slot.

    kerasafe records Keras 3's own compile config in the manifest, because Keras's
    HDF5 ``training_config`` does not always round-trip (a dict of losses comes back
    as names Keras then refuses); files from elsewhere fall back to ``training_config``.
    """
    compile_config = (manifest or {}).get("compile_config")
    try:
        if compile_config:
            model.compile_from_config(compile_config)
        else:
            training = _hdf5.attr_json(f, "training_config", path)
            if training is None:
                return
            if not compile_from_training_config(model, training, path, custom_objects):
                return
    except (ValueError, TypeError, KeyError) as exc:
        warnings.warn(f"{path}: the training configuration cannot be restored ({_first_line(exc)}); the model is not compiled", stacklevel=4)
        return
    group = f.get("optimizer_weights")
    if group is None:
        return
    values = _keras.legacy_h5().load_optimizer_weights_from_hdf5_group(f)
    _keras.ensure_optimizer_built(model)
    optimizer = model.optimizer
    names = legacy_weights.name_list(group, "weight_names")
    if len(names) != len(values):
        names = [f"array {i}" for i in range(len(values))]
    holder = opt.slot_holder(optimizer)
    if holder is not optimizer or getattr(holder, "loss_scale_factor", None):
        # tf.keras's LossScaleOptimizer (dynamic, or fixed: Keras 3's loss_scale_factor) named its inner
        # optimizer's arrays in its own scopes
        names = [n if opt.optimizer_slot(n) else opt.unscoped_name(n, type(holder).__name__) for n in names]
    # tf.keras 2 names its slots (and "iteration" alone when the model has nothing to train).
    if any(opt.optimizer_slot(n) for n in names) or (names and all(n.split(":")[0].split("/")[-1] in ("iteration", "iter") for n in names)):
        _restore_named_slots(holder, model.trainable_variables, names, values, path)
        return
    if [tuple(v.shape) for v in optimizer.variables] == [tuple(np.shape(v)) for v in values]:
        pairs, dropped = list(zip(optimizer.variables, values)), []  # Keras 3 wrote them: its own order
    elif str(_hdf5.attr_text(f, "keras_version") or "").split(".")[0] in ("1", "2"):
        targets, dropped = opt.keras2_optimizer_targets(optimizer, model.trainable_variables, names,
                                                        [tuple(np.shape(v)) for v in values])
        pairs = [(t, v) for t, v in zip(targets, values) if t is not None]
    else:
        pairs, dropped = [], [f"{len(values)} arrays for {len(optimizer.variables)} variables"]
    if dropped:
        warnings.warn(f"{path}: the saved optimizer state does not map onto {type(optimizer).__name__}'s "
                      f"variables ({dropped[0]}); it starts fresh", stacklevel=4)
        return
    for variable, value in pairs:
        variable.assign(np.asarray(value).astype(str(variable.dtype)))


# Optimizer hyperparameters tf.keras 2's legacy optimizers kept as weights ("Adam/beta_1:0"):
# their values come back with the training config, so they are not state to carry.
_HYPERPARAMETERS = ("beta_1", "beta_2", "decay", "rho", "momentum", "epsilon", "initial_accumulator_value",
                    "learning_rate_power", "l1_regularization_strength", "l2_regularization_strength")


def _restore_named_slots(optimizer, trainable, names: list[str], values: list, path) -> None:
    """Put tf.keras 2 optimizer slots (named by layer and variable) into Keras 3's slots.

    The variables the slots name appear in the order tf.keras's model listed its trainable
    variables, which is the Keras 3 model's order too (the weights went in by that order);
    where the counts and shapes agree that decides, since Keras 3 may name a variable
    otherwise (a ConvLSTM's cell, a layer kerasafe wraps). Otherwise names decide.
    """
    dropped = []
    named = list(dict.fromkeys(slot[2] for slot in map(opt.optimizer_slot, names) if slot))
    shapes = {opt.optimizer_slot(n)[2]: tuple(np.shape(v)) for n, v in zip(names, values) if opt.optimizer_slot(n)}
    by_order = dict(zip(named, trainable)) if len(named) == len(trainable) and all(
        legacy_weights.fits(shapes[p], v.shape) for p, v in zip(named, trainable)) else {}
    for name, value in zip(names, values):
        base = name.split(":")[0].split("/")
        if base[-1] in ("iteration", "iter", "iterations"):
            optimizer.iterations.assign(np.asarray(value, dtype=str(optimizer.iterations.dtype)))
            continue
        if base[-1] in ("momentum_cache", "m_schedule") and hasattr(optimizer, "_u_product"):
            optimizer._u_product.assign(np.asarray(value, dtype=str(optimizer._u_product.dtype)))  # Nadam's schedule product
            continue
        if len(base) == 2 and base[-1] in ("learning_rate", "lr"):
            if hasattr(getattr(optimizer, "_learning_rate", None), "assign"):  # a schedule has nowhere to put it
                optimizer._learning_rate.assign(np.asarray(value, dtype=str(optimizer._learning_rate.dtype)))
            continue
        if len(base) == 2 and base[-1] in _HYPERPARAMETERS:
            continue
        slot = opt.optimizer_slot(name)
        variable = by_order.get(slot[2]) if slot else None
        targets = [variable] if variable is not None else [
            v for v in trainable if slot and (v.path == slot[2] or v.path.endswith("/" + slot[2]))]
        target = opt.slot_variable(optimizer, targets[0], slot[1]) if len(targets) == 1 else None
        if target is None or not legacy_weights.fits(np.shape(value), target.shape):
            dropped.append(name)
            continue
        target.assign(legacy_weights.fit_shape(value, target.shape, name))  # virtual-batch BatchNormalization kept full rank
    if dropped:
        warnings.warn(f"{path}: {len(dropped)} of {len(names)} optimizer arrays have no place in "
                      f"{type(optimizer).__name__} (first: {dropped[0]}); those slots start fresh", stacklevel=5)


def _write_keras2_configs(f, target) -> None:
    """Rewrite the configs Keras 3 wrote into terms both Keras 3 and tf.keras 2 read."""
    model_config, problems = to_keras2.model_config_to_keras2(_hdf5.attr_json(f, "model_config", target))
    if problems:
        warnings.warn(f"{target.name}: tf.keras 2 will not open this file: {problems[0]}", stacklevel=5)
    else:
        f.attrs["model_config"] = json.dumps(model_config)
    training = _hdf5.attr_json(f, "training_config", target)
    if training is not None:
        training, _ = to_keras2.training_config_to_keras2(training)
        f.attrs["training_config"] = json.dumps(training)


def _legacy_subset(group, variables, placed: list, hashes: dict) -> None:
    """Keras's ``save_subset_weights_to_hdf5_group``, each array placed for streaming and hashed from memory."""
    _keras.legacy_h5().save_attributes_to_hdf5_group(group, "weight_names", [str(v.path).encode("utf8") for v in variables])
    for v in variables:
        array = _keras._host_view(v)
        dataset = _hdf5.place_dataset(group, str(v.path), array, placed, opaque_bfloat16=False)
        hashes[dataset.name.lstrip("/")] = storage.hash_bytes(array)


def _legacy_groups(model) -> list[tuple[str, list]]:
    """``(group name, variables)`` in the order Keras's legacy writer makes them."""
    legacy = _keras.legacy_h5()
    groups = [(layer.name, legacy._legacy_weights(layer)) for layer in sorted(model.layers, key=lambda layer: layer.name)]
    own = [v for v in model._trainable_variables + model._non_trainable_variables if v in model.weights]
    return groups + [("top_level_model_weights", own)]


def legacy_weights_skeleton(group, placed: list, model) -> dict[str, str]:
    """Keras's ``save_weights_to_hdf5_group`` layout in ``group``, for ``_hdf5.stream_h5``; the datasets' hashes."""
    hashes: dict[str, str] = {}
    _keras.legacy_h5().save_attributes_to_hdf5_group(group, "layer_names", [layer.name.encode("utf8") for layer in model.layers])
    group.attrs["backend"] = _keras.backend_name().encode("utf8")
    group.attrs["keras_version"] = str(_keras.keras().__version__).encode("utf8")
    for name, variables in _legacy_groups(model):  # sorted by layer name, so group names grow
        _legacy_subset(group.create_group(name), variables, placed, hashes)
    return hashes


def read_legacy_weights_direct(model, h5, refs: dict, path, prefix: str, hashes: dict) -> bool:
    """Fill ``model`` from the legacy layout under ``prefix``, each array read at its offset (formats._direct).

    ``refs``: the file's layout (``_hdf5.reject_external_links``). Pairs each layer's
    variables with its group's ``weight_names`` by position, as
    Keras's loader does, for files laid out as :func:`legacy_weights_skeleton` writes
    them for this model (kerasafe's own, rebuilt from their manifest). Returns False,
    having read nothing, when the groups or shapes do not fit, for Keras's loader.
    """
    legacy = _keras.legacy_h5()
    pairs = []
    for group_name, variables in _legacy_groups(model):
        group = h5.get(f"{prefix}{group_name}")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in legacy.load_attributes_from_hdf5_group(group, "weight_names")] if group is not None else []
        if len(names) != len(variables):
            return False
        pairs += [(refs.get(f"{prefix}{group_name}/{name}"), v) for name, v in zip(names, variables)]
    if any(ref is None or tuple(ref.shape) != tuple(v.shape) for ref, v in pairs):
        return False
    with open(path, "rb") as raw:
        reader = _direct.SequentialReader(_direct.FileWindow(raw.fileno(), 0, os.fstat(raw.fileno()).st_size), path, hashes)
        for ref, variable in pairs:
            variable.assign(_keras_direct.adopt(reader.read(ref, h5)))
    _keras.finalize_loaded_state(model)
    return True


def _legacy_skeleton(h5, placed, model, include_optimizer: bool, manifest: dict, target) -> None:
    """The layout Keras's ``save_model_to_hdf5`` writes, with the weights placed for ``_hdf5.stream_h5``.

    Keras's own writer puts every byte through HDF5 into a file that must seek, then
    kerasafe would read it all back to hash it; here the arrays are views of the
    variables, hashed from memory, and streamed once. The names, groups and attributes
    are Keras's, made with Keras's own helpers where it has them.
    """
    from keras.src.legacy.saving import json_utils, saving_options

    with saving_options.keras_option_scope(use_legacy_config=True):
        metadata = _keras.legacy_saving_utils().model_metadata(model, include_optimizer)
    for key, value in metadata.items():
        h5.attrs[key] = json.dumps(value, default=json_utils.get_json_type).encode("utf8") if isinstance(value, dict | list | tuple) else value
    hashes = legacy_weights_skeleton(h5.create_group("model_weights"), placed, model)
    optimizer = getattr(model, "optimizer", None)
    if include_optimizer and optimizer is not None and optimizer.variables:
        _legacy_subset(h5.create_group("optimizer_weights"), list(optimizer.variables), placed, hashes)
    _write_keras2_configs(h5, target)
    _hdf5.write_manifest(h5, dict(manifest, hashes=hashes))


class HDF5ModelFormat(Format):
    name = "h5"
    description = "legacy full-model HDF5 (.h5)"
    suffixes = (".h5", ".hdf5")
    holds = MODEL

    def recognise(self, path, head):
        if not _hdf5.is_hdf5(head):
            return False
        with _hdf5.open_h5(path) as f:
            return "model_config" in f.attrs

    def write(self, model, target, manifest, *, include_optimizer):
        # The Keras 3 config goes into the manifest, so kerasafe rebuilds exactly this model;
        # model_config is rewritten in Keras 2 terms so tf.keras 2 opens the file as well.
        manifest = dict(manifest, architecture=_keras.serialize_model(model))
        if include_optimizer and getattr(model, "optimizer", None) is not None:
            manifest["compile_config"] = _keras.compile_config(model)
        else:
            manifest["architecture"]["compile_config"] = None
        with _keras.preserve_compile_config(model), _keras.tensorflow_left_alone():
            _hdf5.write_h5_file(target, lambda h5, placed: _legacy_skeleton(h5, placed, model, include_optimizer, manifest, target))

    def read(self, path, *, compile, safe_mode, custom_objects):
        with _hdf5.open_h5(path, expected="a full-model HDF5 file") as f:
            refs = _hdf5.reject_external_links(f, path)
            manifest = _hdf5.read_manifest(f, path)
            group = f.get("model_weights")
            if group is None:
                raise errors.CorruptFileError(
                    path, "an HDF5 model with a 'model_weights' group", f"groups {list(f)[:6]}", "save the model again"
                )
            if (manifest or {}).get("architecture"):
                # kerasafe's own file: the model built empty and each array read at its offset.
                with stored_model_to_fill(manifest, path, compile=False, safe_mode=safe_mode, custom_objects=custom_objects) as model:
                    if not read_legacy_weights_direct(model, f, refs, path, "model_weights/", manifest.get("hashes") or {}):
                        load_legacy_weights(model, group, path, by_name=False, skip_mismatch=False)
            else:
                # A file from Keras 1/2, tf.keras 2 or plain Keras 3: its config goes through the
                # legacy translation (old names, old hard_sigmoid) and the check for code; the
                # optimizer is compiled later (restore_optimizer), because Keras's own compile
                # step builds it over no variables and drops the saved slots.
                config = _hdf5.attr_json(f, "model_config", path)
                if config is None:
                    raise errors.CorruptFileError(
                        path, "a full-model HDF5 file with a 'model_config'", "weights only",
                        "load it into a model: ks.load('architecture.json', weights=...) or ks.load_weights(model, ...)",
                    )
                config.setdefault("keras_version", _hdf5.attr_text(f, "keras_version"))
                with _keras_direct.variables_filled_by_loading() as built:  # no initializer runs for what the file fills
                    model = legacy.build_model(config, path, custom_objects=custom_objects, safe_mode=safe_mode)
                    built()
                    load_legacy_weights(model, group, path, by_name=False, skip_mismatch=False)
            if compile:
                restore_optimizer(model, f, path, custom_objects, manifest)
        return model, manifest

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        with _hdf5.open_h5(path, expected="a full-model HDF5 file") as f:
            refs = _hdf5.reject_external_links(f, path)
            group = f.get("model_weights")
            if group is None:
                raise errors.CorruptFileError(path, "an HDF5 model with a 'model_weights' group", f"groups {list(f)[:6]}", "save the model again")
            manifest = _hdf5.read_manifest(f, path)
            # kerasafe's own file: straight from the offsets if the names fit (as a Keras 2 weights file)
            if manifest is None or by_name or not read_legacy_weights_direct(model, f, refs, path, "model_weights/", manifest.get("hashes") or {}):
                load_legacy_weights(model, group, path, by_name=by_name, skip_mismatch=skip_mismatch)
            return manifest

    def inspect(self, path):
        with _hdf5.open_h5(path) as f:
            _hdf5.reject_external_links(f, path)  # inspect walks nothing load would refuse
            config = _hdf5.attr_json(f, "model_config", path)
            result = summary(
                path, self, keras_version=_hdf5.attr_text(f, "keras_version"), backend=_hdf5.attr_text(f, "backend"), has_architecture=True
            )
            group = f.get("model_weights")
            if group is not None:
                classes = _hdf5.config_layer_classes(config)
                result["layers"] = [dict(row, **{"class": classes.get(row["name"])}) for row in _hdf5.legacy_layer_table(group)]
                result["total_params"], result["weights_bytes"], result["dtypes"] = _hdf5.weights_summary(group)
            training = _hdf5.attr_json(f, "training_config", path) or {}
            opt = training.get("optimizer_config")
            if isinstance(opt, dict):
                result["optimizer"] = {"class": opt.get("class_name"), "learning_rate": (opt.get("config") or {}).get("learning_rate")}
            manifest = _hdf5.read_manifest(f, path)
        return apply_manifest(result, manifest)

    def verify(self, path):
        with _hdf5.open_h5(path) as f:
            recorded = (_hdf5.read_manifest(f, path) or {}).get("hashes") or {}
        return _hdf5.verify_hashes(path, recorded)


