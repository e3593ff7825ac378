"""``.h5`` / ``.hdf5``: the legacy full-model HDF5 layout (Keras 2 / tf.keras 2 / Keras 3).

Root attributes ``model_config``, ``training_config``, ``keras_version``,
``backend``; groups ``model_weights`` and ``optimizer_weights``. kerasafe adds
its manifest as the root attribute ``kerasafe``, which every Keras ignores.
"""

from __future__ import annotations


from .. import _keras, errors
from . import _hdf5
from .base import MODEL, Format, apply_manifest, summary


def _first_line(exc: Exception) -> str:
    return str(exc).strip().split("\n")[0][:240]


def load_legacy_weights(model, group, path, *, by_name: bool, skip_mismatch: bool) -> None:
    """Load a Keras 2 style weights group (``layer_names``/``weight_names``) into ``model``."""
    legacy = _keras.legacy_h5()
    try:
        if by_name:
            legacy.load_weights_from_hdf5_group_by_name(group, model, skip_mismatch=skip_mismatch)
        else:
            legacy.load_weights_from_hdf5_group(group, model, skip_mismatch=skip_mismatch)
    except (ValueError, KeyError) as exc:
        raise errors.WeightsMismatchError(
            path, "weights that fit the model's layers", _first_line(exc), "load them into the model they were saved from, or pass by_name=True / skip_mismatch=True"
        ) from None


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
        legacy = _keras.legacy_h5()
        with _hdf5.open_h5(target, "w") as f, _keras.preserve_compile_config(model):
            legacy.save_model_to_hdf5(model, f, include_optimizer=include_optimizer)
            f.flush()
            _hdf5.write_manifest(f, dict(manifest, hashes=_hdf5.dataset_hashes(f)))

    def read(self, path, *, compile, safe_mode, custom_objects):
        legacy = _keras.legacy_h5()
        with _hdf5.open_h5(path, expected="a full-model HDF5 file") as f:
            _hdf5.reject_external_links(f, path)
            manifest = _hdf5.read_manifest(f, path)
            if "model_weights" not in f:
                raise errors.CorruptFileError(
                    path, "an HDF5 model with a 'model_weights' group", f"groups {list(f)[:6]}", "save the model again"
                )
            try:
                model = legacy.load_model_from_hdf5(f, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
            except (ValueError, KeyError) as exc:
                raise errors.CorruptFileError(
                    path, "a model Keras can rebuild from this HDF5 file", _first_line(exc), "check custom_objects, or save the model again"
                ) from None
        return model, manifest

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        with _hdf5.open_h5(path, expected="a full-model HDF5 file") as f:
            _hdf5.reject_external_links(f, path)
            group = f.get("model_weights")
            if group is None:
                raise errors.CorruptFileError(path, "an HDF5 model with a 'model_weights' group", f"groups {list(f)[:6]}", "save the model again")
            load_legacy_weights(model, group, path, by_name=by_name, skip_mismatch=skip_mismatch)
            return _hdf5.read_manifest(f, path)

    def inspect(self, path):
        with _hdf5.open_h5(path) as f:
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


