"""A directory: a TensorFlow SavedModel that also carries the whole Keras model.

``ks.save(model, "mysavedmodel")`` writes what TF Serving serves (Keras's own
``model.export``: ``saved_model.pb``, ``variables/``) and puts the full
``.keras`` archive, manifest included, under ``assets.extra/kerasafe/``
(the SavedModel convention for files the graph does not use). ``ks.load`` of
such a directory returns the trainable Keras model, with no TensorFlow needed.
"""

from __future__ import annotations

import importlib.util

from .. import _keras, errors, legacy
from . import savedmodel_graph, tf_checkpoint, tf_optimizer_state
from .base import MODEL, Format, summary
from .keras_zip import KerasZipFormat

EMBEDDED = ("assets.extra", "kerasafe", "model.keras")


def embedded_model(path):
    return path.joinpath(*EMBEDDED)


class SavedModelFormat(Format):
    name = "savedmodel"
    description = "TensorFlow SavedModel directory"
    holds = MODEL
    is_directory = True

    def recognise(self, path, head):
        return path.is_dir() and ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists())

    def write(self, model, target, manifest, *, include_optimizer):
        if importlib.util.find_spec("tensorflow") is None:
            raise errors.MissingDependencyError(
                target, "TensorFlow to write a SavedModel directory", "no tensorflow installed",
                "pip install 'kerasafe[tensorflow]', or save to a file name such as model.keras",
            )
        if _keras.backend_name() == "torch" and importlib.util.find_spec("torch_xla") is None:
            # Keras goes torch.export -> StableHLO -> TensorFlow, the middle step in torch_xla;
            # without it the export fails deep inside with an unrelated-looking message.
            raise errors.MissingDependencyError(
                target, "torch_xla, through which Keras exports a SavedModel from the PyTorch backend", "no torch_xla installed",
                "pip install torch_xla (the build matching your torch), save to model.keras, or save with KERAS_BACKEND=jax or tensorflow",
            )
        try:
            model.export(str(target), format="tf_saved_model", verbose=False)
        except Exception as exc:  # export failures come from deep inside TF; say which model step failed
            raise errors.UnsupportedOperationError(
                target, "a model Keras can export as a SavedModel", f"export failed ({str(exc).splitlines()[0][:200]})",
                "save to model.keras instead, or export with the TensorFlow backend",
            ) from None
        inner = embedded_model(target)
        inner.parent.mkdir(parents=True, exist_ok=True)
        KerasZipFormat().write(model, inner, manifest, include_optimizer=include_optimizer)

    def _embedded(self, path):
        inner = embedded_model(path)
        if not inner.is_file():
            raise errors.UnsupportedOperationError(
                path, "a SavedModel that carries its Keras model (written by kerasafe)",
                "a SavedModel without one (plain TensorFlow or Keras export)",
                "serve it with TensorFlow, or load the model it was exported from",
            )
        return inner

    def read(self, path, *, compile, safe_mode, custom_objects):
        if not embedded_model(path).is_file():
            if (path / "keras_metadata.pb").is_file():
                return self._read_tf_keras(path, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)
            if safe_mode:
                # Loading a graph-only SavedModel runs its graph (resource initializers, any op it holds,
                # file writes included) inside TensorFlow: that is code from the file.
                raise errors.UnsafeContentError(
                    path, "a SavedModel that holds a Keras model (read as data, nothing in it runs)",
                    "a TensorFlow graph only (no Keras metadata): loading it runs that graph's initializers",
                    "pass safe_mode=False only if you trust where it came from")
            return ServingModel.load(path), None
        return KerasZipFormat().read(self._embedded(path), compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)

    def _read_tf_keras(self, path, *, compile, safe_mode, custom_objects):
        """A tf.keras 2 SavedModel: the model rebuilt from keras_metadata.pb, weights from variables/ (no TensorFlow)."""
        from .hdf5_model import compile_from_training_config

        from .. import _keras_direct

        nodes = tf_checkpoint.keras_metadata_nodes(path / "keras_metadata.pb")
        stored = tf_checkpoint.keras_metadata_model(path / "keras_metadata.pb", nodes)
        # An adapted vocabulary is in the graph only; put it in the config, where Keras 3 keeps it.
        config = savedmodel_graph.fill_vocabularies(stored["model_config"], savedmodel_graph.adapted_vocabularies(path, nodes))
        with _keras_direct.variables_filled_by_loading() as built:  # no initializer runs for what the file fills
            model = legacy.build_model(config, path, custom_objects=custom_objects, safe_mode=safe_mode)
            built()
            tf_checkpoint.TFCheckpointFormat().read_weights(model, path / "variables" / "variables", by_name=False, skip_mismatch=False)
        if compile and stored["training_config"] and compile_from_training_config(model, stored["training_config"], path, custom_objects):
            tf_optimizer_state.restore_optimizer(model, path / "variables" / "variables")
        return model, None

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        if not embedded_model(path).is_file() and (path / "variables" / "variables.index").is_file():
            return tf_checkpoint.TFCheckpointFormat().read_weights(model, path / "variables" / "variables", by_name=by_name, skip_mismatch=skip_mismatch)
        return KerasZipFormat().read_weights(model, self._embedded(path), by_name=by_name, skip_mismatch=skip_mismatch)

    def inspect(self, path):
        inner = embedded_model(path)
        if inner.is_file():
            result = KerasZipFormat().inspect(inner)
            result.update(path=str(path), format=self.name, format_description=self.description)
        else:
            result = summary(path, self, has_architecture=(path / "keras_metadata.pb").exists())
            if (path / "variables" / "variables.index").is_file():
                weights = tf_checkpoint.TFCheckpointFormat().inspect(path / "variables" / "variables")
                result.update({k: weights[k] for k in ("layers", "total_params", "weights_bytes", "dtypes")})
        result["serving"] = {"saved_model": True, "variables": (path / "variables").is_dir()}
        return result

    def verify(self, path):
        inner = embedded_model(path)
        return KerasZipFormat().verify(inner) if inner.is_file() else {}


class ServingModel:
    """A SavedModel with no Keras model in it (Keras 3 ``model.export``, plain TensorFlow), for inference.

    Calls the ``serving_default`` signature through TensorFlow, NumPy in and out, with
    ``predict`` as a Keras model has it. There is no architecture to train or convert.
    """

    def __init__(self, path, function, input_names, output_names):
        self.path, self._function = path, function
        self.input_names, self.output_names = input_names, output_names

    @classmethod
    def load(cls, path) -> ServingModel:
        try:
            import tensorflow as tf
        except ImportError:
            raise errors.MissingDependencyError(
                path, "TensorFlow to run a SavedModel that carries no Keras model", "no tensorflow installed",
                "pip install 'kerasafe[tensorflow]'",
            ) from None
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise errors.UnsupportedOperationError(
                path, "a SavedModel with a 'serving_default' signature", f"signatures {sorted(loaded.signatures)}",
                "call it with TensorFlow (tf.saved_model.load) and the signature you need",
            )
        inputs = sorted(signature.structured_input_signature[1])
        outputs = sorted(signature.structured_outputs)
        model = cls(path, signature, inputs, outputs)
        model._keep = loaded  # the signature needs its SavedModel object alive
        return model

    def __call__(self, *inputs):
        import numpy as np
        import tensorflow as tf

        if len(inputs) != len(self.input_names):
            raise errors.KerasafeError(self.path, f"{len(self.input_names)} input(s) {self.input_names}", f"{len(inputs)}", "pass one array per input")
        spec = self._function.structured_input_signature[1]
        feed = {name: tf.convert_to_tensor(np.asarray(x), dtype=spec[name].dtype) for name, x in zip(self.input_names, inputs)}
        result = {k: v.numpy() for k, v in self._function(**feed).items()}
        return result[self.output_names[0]] if len(self.output_names) == 1 else [result[k] for k in self.output_names]

    def predict(self, x, batch_size=256, verbose=0):
        """Outputs for ``x`` in batches, as ``keras.Model.predict`` returns them."""
        import numpy as np

        parts = [self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if parts and isinstance(parts[0], list):
            return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]
        return np.concatenate(parts) if parts else np.empty((0,))
