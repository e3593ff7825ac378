"""kerasafe's public functions: argument checks and dispatch to the format table.

Each function only decides *which* format and *where*; the formats do the
bytes and :mod:`kerasafe.storage` makes every write atomic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import warnings

from . import _keras, errors, formats, remote, storage
from . import manifest as manifest_mod
from .formats import architecture
from .formats.base import ARCHITECTURE, WEIGHTS
from .formats.guard import reading
from .formats.savedmodel import ServingModel


def _check_model(model, what: str) -> None:
    if not (hasattr(model, "weights") and hasattr(model, "get_config")):
        raise errors.KerasafeError(None, f"a Keras model to {what}", type(model).__name__, "pass a keras.Model")


def _write(fmt, model, path, manifest, *, weights_only: bool, include_optimizer: bool) -> pathlib.Path:
    target = pathlib.Path(os.fspath(path))
    if fmt.holds == WEIGHTS or weights_only:
        arch = _keras.serialize_model(model)
        if not include_optimizer:
            arch["compile_config"] = None
        manifest["architecture"] = arch
    commit = storage.atomic_directory if fmt.is_directory else storage.atomic_file
    with commit(target) as tmp:
        try:
            if weights_only:
                fmt.write_weights(model, tmp, manifest)
            else:
                fmt.write(model, tmp, manifest, include_optimizer=include_optimizer)
        except errors.KerasafeError as exc:  # the user knows the name they asked for, not our temporary one
            raise exc.naming(tmp, target) from None
    return target


# tf.keras 2's model.save(save_format=...) values, as the tutorials pass them, and the format each means.
SAVE_FORMATS = {"h5": "h5", "keras": "keras", "tf": "savedmodel"}


def _save_format(path, format, save_format):
    if save_format is None:
        return format
    if format is not None:
        raise errors.KerasafeError(path, "format= or save_format=, not both", f"format={format!r}, save_format={save_format!r}",
                                   "pass one of them")
    if save_format not in SAVE_FORMATS:
        raise errors.KerasafeError(path, f"save_format among {sorted(SAVE_FORMATS)} (tf.keras 2's values)", repr(save_format),
                                   "pass one of those, or format= with a kerasafe format name")
    return SAVE_FORMATS[save_format]


def save(model, path, *, labels=None, preprocessing=None, metadata=None, include_optimizer=True, format=None,
         save_format=None, storage_options=None) -> pathlib.Path | str:
    """Save a whole model; the format follows the name (or ``format=``).

    ``.keras``, ``.h5``/``.hdf5``, ``.weights.h5``, ``.safetensors``, ``.json``,
    ``.yaml``/``.yml``; a name without suffix is a SavedModel directory; an
    unknown suffix gets ``.keras`` content with a warning. ``save_format=`` takes
    tf.keras 2's values as the tutorials wrote them: ``"h5"``, ``"keras"``, ``"tf"``
    (a SavedModel directory). ``labels``,
    ``preprocessing`` and ``metadata`` travel inside the file (taken from
    ``model.kerasafe`` when not given). The write is atomic: a crash leaves the
    previous file intact. ``path`` may be an fsspec URL (``s3://bucket/m.keras``, ``memory://...``;
    ``storage_options`` for the store): the object appears in one step, whole (:mod:`kerasafe.remote`).

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> p = ks.save(m, os.path.join(tempfile.mkdtemp(), "m.keras"), labels=["no", "yes"])
        >>> ks.load(p).kerasafe.labels
        ('no', 'yes')
    """
    _check_model(model, "save")
    path = remote.local_path(path)
    if remote.is_url(path):
        if formats.for_save(path, _save_format(path, format, save_format)).is_directory:
            remote.check_directory_target(path, storage_options)  # before the (slow) export, not after
        with remote.uploaded(path, storage_options) as local:  # the same name: the same format
            save(model, local, labels=labels, preprocessing=preprocessing, metadata=metadata,
                 include_optimizer=include_optimizer, format=format, save_format=save_format)
        return path
    fmt = formats.for_save(path, _save_format(path, format, save_format))
    if include_optimizer:
        # Saved slot variables must match what a load rebuilds; an optimizer that has
        # not stepped yet has none, and Keras would warn and drop the state on load.
        _keras.ensure_optimizer_built(model)
    manifest = manifest_mod.build(
        model, labels=labels, preprocessing=preprocessing, metadata=metadata, include_optimizer=include_optimizer
    )
    return _write(fmt, model, path, manifest, weights_only=False, include_optimizer=include_optimizer)


def save_weights(model, path, *, format=None, save_format=None, storage_options=None) -> pathlib.Path | str:
    """Save the weights (and, for kerasafe's own reading, the architecture) of ``model``.

    ``.weights.h5`` is Keras 3's layout (optimizer state included); any other
    ``.h5``/``.hdf5`` name gets Keras 2's layout, as the tutorials'
    ``save_weights("model.h5")`` expects; ``.safetensors`` works too.
    ``save_format="h5"`` (tf.keras 2's spelling) writes Keras 2's layout under any name.

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> p = ks.save_weights(m, os.path.join(tempfile.mkdtemp(), "model.h5"))
        >>> ks.load_weights(m, p) is m
        True
    """
    _check_model(model, "save weights of")
    path = remote.local_path(path)
    if remote.is_url(path):
        with remote.uploaded(path, storage_options) as local:
            save_weights(model, local, format=format, save_format=save_format)
        return path
    if save_format is not None:
        if save_format != "h5" or format is not None:
            raise errors.UnsupportedOperationError(
                path, "save_format='h5' alone (tf.keras 2's Keras 2 weights layout)", f"format={format!r}, save_format={save_format!r}",
                "save to name.weights.h5 or name.h5 without save_format ('tf' meant a TensorFlow checkpoint, which kerasafe reads but does not write)")
        format = "legacy-weights.h5"
    fmt = formats.for_save_weights(path, format)
    manifest = manifest_mod.build(model)
    return _write(fmt, model, path, manifest, weights_only=True, include_optimizer=True)


def _vet(path, trusted) -> bool:
    """Scan ``path`` (ks.scan); refuse it unless every finding is one the caller trusts by name.

    Returns whether a trusted finding needs code from the file to run (Lambda bytecode, a TensorFlow graph).
    """
    from .scanning import scan

    report = scan(path, trusted=trusted)
    if report["verdict"] != "safe":
        left = [f for f in report["findings"] if f["severity"] in ("high", "error") and not f["trusted"]]
        listed = "; ".join(f"{f['rule']} {f['location']}: {f['message']}" + (f" [trust {f['trust']!r}]" if f["trust"] else "")
                           for f in left[:5])
        raise errors.UnsafeContentError(report["path"], "a file whose findings are all names you trust",
                                        f"{len(left)} other finding(s): {listed}",
                                        "pass those names in trusted=[...] if you vouch for them, or do not load the file")
    return any(f["trusted"] and f["rule"] in ("KS101", "KS105") for f in report["findings"])


def load(path, *, weights=None, compile=True, safe_mode=True, custom_objects=None, trusted=None, storage_options=None):
    """Load a model from any supported file or SavedModel directory, judged by content.

    ``weights=`` joins an architecture (``.json``/``.yaml``) or a model with a
    weights file of any supported kind. The result carries ``model.kerasafe``
    (labels, preprocessing, metadata, writer facts). ``safe_mode=True`` refuses
    anything that would run code from the file. ``trusted=[names]`` scans the file
    first (:func:`kerasafe.scan`) and loads it only if every finding is a name in
    the list (``"mypackage.MyLayer"``, ``"Lambda"``, ``"tensorflow-graph"``); the
    error of a refused file lists the rest. ``path`` and ``weights`` may be fsspec URLs
    (``storage_options`` for the store).

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> _ = ks.save(m, os.path.join(d, "arch.json")); _ = ks.save_weights(m, os.path.join(d, "w.h5"))
        >>> ks.load(os.path.join(d, "arch.json"), weights=os.path.join(d, "w.h5")).count_params()
        8
    """
    path, weights = remote.local_path(path), remote.local_path(weights)
    if remote.is_url(path) or remote.is_url(weights):
        with contextlib.ExitStack() as stack:
            local = stack.enter_context(remote.downloaded(path, storage_options)) if remote.is_url(path) else path
            local_weights = stack.enter_context(remote.downloaded(weights, storage_options)) if remote.is_url(weights) else weights
            model = load(local, weights=local_weights, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects,
                         trusted=trusted)
        info = getattr(model, "kerasafe", None)
        if isinstance(info, manifest_mod.ModelInfo) and remote.is_url(path):
            model = manifest_mod.attach(model, dataclasses.replace(info, path=path))
        return model
    p, fmt = formats.locate(path, "a saved model")
    if trusted is not None and _vet(path, trusted):
        safe_mode = False  # the caller trusts by name the code this file carries
    with reading(p, f"a readable {fmt.description}"):
        model, manifest = fmt.read(p, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)
    if not isinstance(model, (_keras.keras().Model, ServingModel)):
        raise errors.CorruptFileError(p, "a model (Sequential, Functional or a Model subclass)", f"a {type(model).__name__}",
                                      "pass the file of a whole model; a layer's config alone is no model")
    if weights is not None:
        weights_manifest = _load_weights_into(model, weights, by_name=False, skip_mismatch=False)
        manifest = manifest or weights_manifest
    elif fmt.holds == ARCHITECTURE:
        warnings.warn(f"{p}: architecture only; the model has freshly initialised weights (pass weights=...)", stacklevel=2)
    return manifest_mod.attach(model, manifest_mod.ModelInfo.from_manifest(manifest, path=p, format=fmt.name))


def _load_weights_into(model, path, *, by_name: bool, skip_mismatch: bool) -> dict | None:
    p, fmt = formats.locate(path, "a weights file")
    if fmt.holds == ARCHITECTURE:
        raise errors.UnsupportedOperationError(
            p, "a file that holds weights", f"an {fmt.description} (no weights)", "pass the weights file (.h5, .weights.h5, .keras, .safetensors)"
        )
    if not model.built:
        raise errors.KerasafeError(p, "a built model to receive weights", "an unbuilt model", "call the model on data or model.build(shape) first")
    _keras.ensure_optimizer_built(model)
    with reading(p, f"a readable {fmt.description} that fits the model"):
        return fmt.read_weights(model, p, by_name=by_name, skip_mismatch=skip_mismatch)


def load_weights(model, path, *, by_name=False, skip_mismatch=False, storage_options=None):
    """Load weights from any supported file into ``model`` and return ``model``.

    Order decides which variable gets which array, or layer names with
    ``by_name=True``; shapes that do not fit raise
    :class:`kerasafe.errors.WeightsMismatchError` unless ``skip_mismatch=True``.

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> p = ks.save_weights(m, os.path.join(tempfile.mkdtemp(), "w.weights.h5"))
        >>> ks.load_weights(m, p).name == m.name
        True
    """
    _check_model(model, "load weights into")
    path = remote.local_path(path)
    if remote.is_url(path):
        with remote.downloaded(path, storage_options) as local:
            _load_weights_into(model, local, by_name=by_name, skip_mismatch=skip_mismatch)
        return model
    _load_weights_into(model, path, by_name=by_name, skip_mismatch=skip_mismatch)
    return model


def to_json(model) -> str:
    """The architecture as Keras 3 JSON (what ``model.to_json()`` gives).

    Example:
        >>> import keras, kerasafe as ks
        >>> '"class_name": "Sequential"' in ks.to_json(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        True
    """
    return formats.JSON.dumps(architecture.serialize(model))


def from_json(text: str, *, custom_objects=None):
    """A model (fresh weights) from architecture JSON written by ``to_json`` or Keras.

    Example:
        >>> import keras, kerasafe as ks
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> ks.from_json(ks.to_json(m)).count_params()
        8
    """
    model, _ = architecture.model_from_config(architecture.parse_json(text), custom_objects=custom_objects)
    return model


def to_yaml(model) -> str:
    """The architecture as YAML (Keras 3 removed ``model.to_yaml``; this brings it back).

    Example:
        >>> import keras, kerasafe as ks
        >>> "class_name: Sequential" in ks.to_yaml(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
        True
    """
    return formats.YAML.dumps(architecture.serialize(model))


def from_yaml(text: str, *, custom_objects=None):
    """A model from architecture YAML; read safely (python tags other than tuple are refused).

    Example:
        >>> import keras, kerasafe as ks
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> ks.from_yaml(ks.to_yaml(m)).count_params()
        8
    """
    model, _ = architecture.model_from_config(architecture.parse_yaml(text), custom_objects=custom_objects)
    return model


def convert(src, dst, *, weights=None, storage_options=None) -> pathlib.Path | str:
    """Load ``src`` (joined with ``weights`` if given) and save it as ``dst``'s format.

    Labels, preprocessing and metadata carry over; so does optimizer state where
    both formats hold it.

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> _ = ks.save(m, os.path.join(d, "m.h5"), labels=["a", "b"])
        >>> ks.inspect(ks.convert(os.path.join(d, "m.h5"), os.path.join(d, "m.safetensors")))["labels"]
        ['a', 'b']
    """
    model = load(src, weights=weights, compile=True, storage_options=storage_options)
    return save(model, dst, storage_options=storage_options)
