"""Weights-only HDF5: Keras 3's ``.weights.h5`` layout, and Keras 2's layout under any ``.h5`` name.

- Keras 3 (``model.save_weights("x.weights.h5")``): groups ``layers/<name>/vars/<i>``,
  ``optimizer/vars/<i>``, ``vars``; optimizer state included.
- Keras 2 (``model.save_weights("model.h5")`` in the tutorials): root attribute
  ``layer_names``, one group per layer with a ``weight_names`` attribute.

kerasafe adds its manifest (with the model's architecture) as the root
attribute ``kerasafe``; Keras ignores it, and ``ks.load`` uses it to rebuild
the whole model from one file.
"""

from __future__ import annotations


from .. import _keras, errors
from ..legacy import weights as legacy_weights
from . import _hdf5
from .base import WEIGHTS, Format, apply_manifest, stored_model_to_fill, summary
from .hdf5_model import legacy_weights_skeleton, load_legacy_weights, read_legacy_weights_direct
from .keras_zip import DirectWeights, keras3_weights_overview, load_keras3_weights, weights_file


class _WeightsH5(Format):
    holds = WEIGHTS

    def write(self, model, target, manifest, *, include_optimizer):
        self.write_weights(model, target, manifest)

    def read(self, path, *, compile, safe_mode, custom_objects):
        with _hdf5.open_h5(path, expected="an HDF5 weights file") as f:
            manifest = _hdf5.read_manifest(f, path)  # read_weights checks the file before reading any weights
        with stored_model_to_fill(manifest, path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects) as model:
            _keras.ensure_optimizer_built(model)
            self.read_weights(model, path, by_name=False, skip_mismatch=False)
        return model, manifest

    def verify(self, path):
        with _hdf5.open_h5(path) as f:
            recorded = (_hdf5.read_manifest(f, path) or {}).get("hashes") or {}
        return _hdf5.verify_hashes(path, recorded)


class Keras3WeightsFormat(_WeightsH5):
    name = "weights.h5"
    description = "Keras 3 weights file (.weights.h5)"
    suffixes = (".weights.h5",)

    def recognise(self, path, head):
        if not _hdf5.is_hdf5(head):
            return False
        with _hdf5.open_h5(path) as f:
            if "model_config" in f.attrs or "layer_names" in f.attrs:
                return False
            return "layers" in f or "vars" in f or _hdf5.attr_text(f, "kerasafe") is not None

    def read(self, path, *, compile, safe_mode, custom_objects):
        # One walk over the file (DirectWeights) does the checks and finds the offsets.
        with weights_file(path) as (h5, window):
            manifest = _hdf5.read_manifest(h5, path)
            weights = DirectWeights(h5, window, path, (manifest or {}).get("hashes") or None)
            with stored_model_to_fill(manifest, path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects) as model:
                _keras.ensure_optimizer_built(model)
                load_keras3_weights(model, weights, path, by_name=False, skip_mismatch=False)
        return model, manifest

    def write_weights(self, model, target, manifest):
        # The same HDF5 layout Keras's save_weights writes, streamed front to back from views
        # of the variables (formats/_hdf5.stream_h5): no copy of the model, no read-back to hash.
        state, _ = _keras.capture_state(model, copy=False)

        def build(h5, placed):
            _hdf5.write_state(h5, state, placed=placed)
            _hdf5.write_manifest(h5, dict(manifest, hashes=_hdf5.state_hashes(state)))

        _hdf5.write_h5_file(target, build)

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        # Each array read from its offset (formats._direct) and checked against the manifest's
        # per-dataset hash as it arrives; the one walk over the file refuses external links.
        with weights_file(path) as (h5, window):
            manifest = _hdf5.read_manifest(h5, path)
            expected = (manifest or {}).get("hashes") or None
            try:
                load_keras3_weights(model, DirectWeights(h5, window, path, expected), path, by_name=by_name, skip_mismatch=skip_mismatch)
                if manifest is None:  # tf.keras 2.13+ wrote it: state such as an adapted summary needs finishing
                    _keras.finalize_loaded_state(model)
            except errors.WeightsMismatchError:
                if manifest is not None or by_name:
                    raise
                # tf.keras 2.13+ wrote this layout too, naming its own attributes: read it the old way.
                try:
                    legacy_weights.load_keras3_layout(model, h5, skip_mismatch=skip_mismatch)
                except ValueError as exc:
                    raise errors.WeightsMismatchError(path, "weights that fit the model's variables", str(exc)[:240],
                                                      "load them into the model they were saved from, or pass skip_mismatch=True") from None
                _keras.finalize_loaded_state(model)
        return manifest

    def inspect(self, path):
        with _hdf5.open_h5(path) as f:
            _hdf5.reject_external_links(f, path)  # inspect walks nothing load would refuse
            manifest = _hdf5.read_manifest(f, path)
            result = summary(path, self, has_architecture=bool(manifest and manifest.get("architecture")))
            result.update(keras3_weights_overview(f, (manifest or {}).get("architecture")))
        return apply_manifest(result, manifest)


class LegacyWeightsFormat(_WeightsH5):
    name = "legacy-weights.h5"
    description = "Keras 2 weights file (save_weights('model.h5'))"
    suffixes = (".h5", ".hdf5")

    def recognise(self, path, head):
        if not _hdf5.is_hdf5(head):
            return False
        with _hdf5.open_h5(path) as f:
            return "layer_names" in f.attrs and "model_config" not in f.attrs

    def write_weights(self, model, target, manifest):
        # Keras's layout, streamed from views of the variables (as .weights.h5 is).
        def build(h5, placed):
            hashes = legacy_weights_skeleton(h5, placed, model)
            _hdf5.write_manifest(h5, dict(manifest, hashes=hashes))

        _hdf5.write_h5_file(target, build)

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        with _hdf5.open_h5(path, expected="a Keras 2 weights file") as f:
            refs = _hdf5.reject_external_links(f, path)
            manifest = _hdf5.read_manifest(f, path)
            # kerasafe's own file: straight from the offsets if the names fit
            if manifest is not None and not by_name and read_legacy_weights_direct(model, f, refs, path, "", manifest.get("hashes") or {}):
                return manifest
            load_legacy_weights(model, f, path, by_name=by_name, skip_mismatch=skip_mismatch)
            return manifest

    def inspect(self, path):
        with _hdf5.open_h5(path) as f:
            _hdf5.reject_external_links(f, path)  # inspect walks nothing load would refuse
            manifest = _hdf5.read_manifest(f, path)
            result = summary(
                path, self, keras_version=_hdf5.attr_text(f, "keras_version"), backend=_hdf5.attr_text(f, "backend"),
                has_architecture=bool(manifest and manifest.get("architecture")),
            )
            result["layers"] = _hdf5.legacy_layer_table(f)
            result["total_params"], result["weights_bytes"], result["dtypes"] = _hdf5.weights_summary(f)
        return apply_manifest(result, manifest)
