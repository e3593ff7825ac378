"""Rewrites that make a model exportable without changing what it computes (run in the export child).

Two classes of layer break exports, measured with the test suite's zoo (Keras 3.15, TF 2.21):

- Recurrent layers (LSTM, GRU, SimpleRNN, ConvLSTM, also inside Bidirectional): TensorFlow
  runs them as a while loop over TensorList ops, which LiteRT's interpreter and OpenVINO's
  converter lack. With a fixed number of time steps the loop can be unrolled (Keras's own
  ``unroll=True``): the same weights, the same arithmetic, step by step. Done for LiteRT and
  OpenVINO (tf2onnx converts the loop, so ONNX keeps it).
- Tensors a layer keeps as plain attributes rather than variables (Normalization's mean and
  variance, computed from its adapted state): a traced function captures them, and tf2onnx turns
  captured tensors into graph inputs that onnxruntime then asks the caller for. Made numpy
  arrays, they are traced as constants inside the graph. Done for every format.

Example:
    >>> import keras, numpy as np
    >>> from kerasafe.export.rewrite import exportable
    >>> m = keras.Sequential([keras.Input((3, 2)), keras.layers.LSTM(4)])
    >>> same, done = exportable(m, "litert")
    >>> done, same.layers[0].get_config()["unroll"]
    (['lstm (LSTM): unrolled over 3 time steps'], True)
"""

from __future__ import annotations

import sys

import numpy as np

# Formats whose runtime cannot run TensorFlow's recurrent loop (TensorList ops).
UNROLL_FOR = ("litert", "openvino")
# Unrolling copies the step once per time step: past this the graph grows too large to be worth it.
MAX_UNROLLED_STEPS = 512


def _set_unroll(config: dict) -> bool:
    """Set every ``unroll`` in a layer config (nested configs too: Bidirectional's layers); True if any."""
    found = False
    for key, value in config.items():
        if key == "unroll" and value is False:
            config[key] = found = True
        elif isinstance(value, dict):
            found = _set_unroll(value) or found
    return found


def _steps(layer) -> int | None:
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):  # a layer never called, or called on several inputs (shared)
        return None
    return shape[1] if len(shape) > 2 else None


def _unrolled(model, done: list):
    import keras

    def clone(layer):
        config = layer.get_config()
        steps = _steps(layer)
        if steps is not None and steps <= MAX_UNROLLED_STEPS and _set_unroll(config):
            done.append(f"{layer.name} ({type(layer).__name__}): unrolled over {steps} time steps")
        return type(layer).from_config(config)

    if not any(_set_unroll(layer.get_config()) for layer in model.layers):  # no recurrent layer: nothing to copy
        return model
    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except Exception:  # noqa: BLE001 - a subclassed model cannot be cloned: exported as it is
        done.clear()
        return model
    copy.set_weights(model.get_weights())
    return copy


def _walk(layer):
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _walk(inner)


def _embed_constants(model, done: list) -> None:
    tf = sys.modules.get("tensorflow")
    if tf is None:  # captured tensors are TensorFlow's (the export child's backend)
        return
    for layer in _walk(model):
        for name, value in list(vars(layer).items()):
            if isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable) and not name.startswith("_"):
                setattr(layer, name, np.asarray(value))
                done.append(f"{layer.name} ({type(layer).__name__}): {name} embedded as a constant")


def exportable(model, fmt: str):
    """``model`` or a copy of it that ``fmt`` can run, computing the same; and a list of what was rewritten."""
    done: list[str] = []
    if fmt in UNROLL_FOR:
        model = _unrolled(model, done)
    _embed_constants(model, done)
    return model, done
