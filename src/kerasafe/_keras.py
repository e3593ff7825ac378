"""The one place kerasafe imports Keras, and every use of Keras's private modules.

``import kerasafe`` must stay light (no framework import), so Keras is imported
on first use through :func:`keras`. Keras's private saving helpers are used for
the parts of its file layouts that only Keras itself defines (the walk that
names every variable in a ``.weights.h5``); keeping all of them here means one
file to fix when Keras moves them.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib


def keras():
    """The ``keras`` module, imported on first call."""
    from . import _backend

    _backend.choose()  # before Keras's first import: its own fallback (TensorFlow) may not be installed
    import keras as _k

    _register_legacy_functions(_k)
    return _k


@functools.cache
def _register_legacy_functions(k) -> None:
    """Functions old Keras had under names Keras 3 gave another meaning (legacy.model_config.LEGACY_ACTIVATIONS),
    and the layers that stand in for old ones Keras 3 lacks (legacy.stand_ins, legacy.tf_ops)."""

    from .legacy import stand_ins, tf_ops  # noqa: F401 - stand_ins registers its classes on import

    tf_ops.register(k)

    @k.saving.register_keras_serializable(package="kerasafe", name="keras2_hard_sigmoid")
    def keras2_hard_sigmoid(x):
        """hard_sigmoid as Keras 1, Keras 2 and tf.keras 2 computed it: clip(0.2 x + 0.5, 0, 1)."""
        return k.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def backend_name() -> str:
    return keras().backend.backend()


def saving_lib():
    keras()
    from keras.src.saving import saving_lib as lib

    return lib


# Keras 3.15's get_attr_skipset stores each set under "saving_attr_skipset_<type>" but looks
# it up under "saving_attr_skiplist_<type>", so every layer of every save and load builds a
# throwaway Layer() and lists its attributes: 1.7 s of a 2,000-layer load, profiled. Storing
# Keras's own set under the name it looks up makes its cache work; a set depends only on the
# type. (FeatureSpace's "Cross" and "Feature" are left to Keras: building them imports more.)
_SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_attr_skipsets() -> None:
    """Compute Keras's per-type attribute skip sets once, where its state walk looks for them."""
    lib = saving_lib()
    from keras.src.backend.common import global_state

    for obj_type in _SAVEABLE_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key) is None:
            try:
                global_state.set_global_attribute(key, lib.get_attr_skipset(obj_type))
            except (ValueError, TypeError, ImportError, AttributeError):
                return  # a Keras that names its types differently computes them as it always did


def legacy_h5():
    keras()
    from keras.src.legacy.saving import legacy_h5_format

    return legacy_h5_format


def legacy_saving_utils():
    keras()
    from keras.src.legacy.saving import saving_utils

    return saving_utils


def snake_case(class_name: str) -> str:
    """A class name as Keras names it in a weights file's groups ("BatchNormalization" -> "batch_normalization")."""
    keras()
    from keras.src.utils import naming

    return naming.to_snake_case(class_name)


def serialization_lib():
    keras()
    from keras.src.saving import serialization_lib as lib

    return lib


def to_numpy(variable):
    return keras().ops.convert_to_numpy(variable)


def model_from_config(config: dict, *, custom_objects=None, compile=True, safe_mode=True):
    """Build a model from a Keras 3 serialized dict (the ``config.json`` schema)."""
    config = dict(config)
    if not compile:
        config["compile_config"] = None
    ser = serialization_lib()
    with ser.ObjectSharingScope():
        return ser.deserialize_keras_object(config, custom_objects, safe_mode=safe_mode)


def legacy_model_from_config(config: dict, *, custom_objects=None, safe_mode=True):
    """Keras 3's reader for Keras 2 style model configs, under the caller's safe mode.

    tf.keras 2's TensorFlow-op layers are built as kerasafe's stand-in (kerasafe.legacy.tf_ops).
    """
    from .legacy.tf_ops import tf_op_layer_class

    stand_in = tf_op_layer_class()
    objects = {"TFOpLambda": stand_in, "SlicingOpLambda": stand_in, **(custom_objects or {})}
    with serialization_lib().SafeModeScope(safe_mode):
        return legacy_saving_utils().model_from_config(config, custom_objects=objects)


class tensorflow_left_alone:
    """While writing, keep Keras from importing TensorFlow just to ask whether it exists.

    Keras's serializers test ``isinstance(obj, tf.TensorShape)`` behind
    ``tf.available``, which imports TensorFlow whenever it is installed: seconds of
    start-up and log noise on JAX or PyTorch. No object can be a TensorFlow type
    while TensorFlow is not imported, so the answer "not available" is exact then.
    Used only around serialization: layers that need TensorFlow must still find it.
    """

    def __enter__(self):
        import sys

        from keras.src.utils import module_utils

        self._lazy = module_utils.tensorflow
        self._changed = "tensorflow" not in sys.modules and self._lazy._available is None
        if self._changed:
            self._lazy._available = False
        return self

    def __exit__(self, *exc):
        if self._changed and self._lazy.module is None:
            self._lazy._available = None
        return False


def serialize_model(model) -> dict:
    """The Keras 3 serialized dict of ``model`` (what ``config.json`` holds)."""
    ser = serialization_lib()
    with ser.ObjectSharingScope(), tensorflow_left_alone():
        return ser.serialize_keras_object(model)


def compile_config(model) -> dict | None:
    """Keras 3's serialized compile config of ``model`` (None when not compiled)."""
    with tensorflow_left_alone():
        config = model.get_compile_config()
        return None if config is None else serialization_lib().serialize_dict(config)


@dataclasses.dataclass
class StateEntry:
    """One group of Keras 3's weights layout: ``<path>/vars`` with its attributes and arrays."""

    path: str  # "" is the root group
    attrs: dict
    arrays: list  # (name, host array) in Keras's order


def _host_view(value):
    """The variable's bytes as a NumPy array, without a copy where the backend allows it."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    tensor = getattr(value, "value", value)  # a Keras Variable's backend tensor
    try:
        return np.asarray(tensor)  # JAX, TensorFlow and PyTorch tensors on the CPU: no copy
    except (TypeError, RuntimeError, ValueError):  # on an accelerator, or needing grad detached
        return np.asarray(to_numpy(tensor))


def host_copy(value, into=None):
    """A NumPy copy of a variable that training cannot change afterwards.

    A view of the framework's buffer is not enough: the next optimizer step may
    overwrite or donate it. ``into``, an array of the same shape and dtype from an
    earlier snapshot whose write is done, is filled instead of allocating: copying
    into memory already mapped is about twice as fast as into fresh pages.
    """
    import numpy as np

    source = _host_view(value)
    if into is None or into.shape != source.shape or into.dtype != source.dtype or not into.flags.writeable:
        into = np.empty_like(source)
    if source.nbytes < _PARALLEL_COPY_BYTES or not source.flags.c_contiguous:
        np.copyto(into, source)
        return into
    # A large copy in slices on two threads (copyto releases the GIL): about 1.4x faster
    # than one thread here, and this copy is what training waits for.
    src, dst = source.reshape(-1), into.reshape(-1)
    bounds = np.linspace(0, src.size, 5, dtype=np.int64)
    list(_copy_pool().map(lambda i: np.copyto(dst[bounds[i]:bounds[i + 1]], src[bounds[i]:bounds[i + 1]]), range(4)))
    return into


_PARALLEL_COPY_BYTES = 64 << 20


@functools.cache
def _copy_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="kerasafe-copy")


@functools.cache
def _capture_store_class():
    lib = saving_lib()

    class CaptureStore(lib.H5IOStore):
        # A subclass only because Keras's _save_state accepts nothing but its own store
        # types; it opens no file and keeps host copies in the order Keras walks them.
        def __init__(self, reuse=(), copy=True):
            self.entries: list[StateEntry] = []
            self._copy = copy
            self._spare = {(e.path, k): a for e in reuse for k, a in e.arrays}
            self._pending = ("", {})
            self._current = None

        def __bool__(self):
            return True

        def make(self, path, metadata=None):
            self._pending, self._current = (path, dict(metadata or {})), None
            if metadata:  # H5IOStore creates a group for a named object even without variables
                self._open()
            return self

        def _open(self):
            self._current = StateEntry(*self._pending, [])
            self.entries.append(self._current)

        def __setitem__(self, key, value):
            if self._current is None:
                self._open()
            spare = self._spare.pop((self._current.path, str(key)), None)
            array = host_copy(value, into=spare) if self._copy else _host_view(value)
            self._current.arrays.append((str(key), array))

        def __len__(self):
            return len(self._current.arrays) if self._current else 0

        def keys(self):
            return [k for k, _ in self._current.arrays] if self._current else []

        def __contains__(self, key):
            return key in self.keys()

        def close(self):
            pass

    return CaptureStore


def capture_state(model, *, skip_optimizer=False, reuse=(), copy=True) -> tuple[list[StateEntry], dict[str, bytes]]:
    """Host copies of everything Keras's ``.keras`` writer stores: weight groups and asset files.

    This is the only part of a save that must run while training waits; writing the
    copies to disk can then happen anywhere (see ``formats.keras_zip.write_snapshot``).
    ``reuse``: the entries of an earlier capture that nothing reads any more, whose
    arrays are overwritten instead of allocating new ones. ``copy=False``: views of the
    variables' memory where the backend allows, for a save that finishes before the
    model can change (no second copy of the model in memory).
    """
    lib = saving_lib()
    store = _capture_store_class()(reuse, copy)
    assets = lib.DiskIOStore("assets", mode="w")
    skip = {id(model.optimizer)} if (skip_optimizer and getattr(model, "optimizer", None)) else set()
    try:
        cache_attr_skipsets()
        with tensorflow_left_alone():
            lib._save_state(model, weights_store=store, assets_store=assets, inner_path="", visited_saveables=skip)
        root = pathlib.Path(assets.working_dir)
        files = {f"assets/{p.relative_to(root).as_posix()}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    finally:
        assets.close()
    return store.entries, files


def ensure_optimizer_built(model) -> None:
    """Create the optimizer's slot variables so saved state has somewhere to go."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built and model.trainable_variables:
        opt.build(model.trainable_variables)


class preserve_compile_config:
    """Keep ``model``'s compile config as it was across a Keras call that mutates it.

    Keras's legacy HDF5 writer pops "optimizer" from the live compile config
    (``saving_utils.model_metadata``), so every later save of the same model would
    lose its optimizer. kerasafe must not change the user's model by saving it.
    """

    def __init__(self, model):
        self._holder = getattr(model, "_compile_config", None)
        self._saved = None

    def __enter__(self):
        if self._holder is not None and isinstance(getattr(self._holder, "config", None), dict):
            self._saved = dict(self._holder.config)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            self._holder.config = self._saved
        return False


def finalize_loaded_state(model) -> None:
    """Let layers recompute what derives from their weights after a direct assign.

    Keras calls ``finalize_state`` inside ``load_own_variables`` (Normalization turns
    its adapted mean/variance variables into the tensors it computes with); formats
    that assign variables themselves must do the same.
    """
    for layer in model._flatten_layers(include_self=False):
        finalize = getattr(layer, "finalize_state", None)
        if callable(finalize):
            finalize()


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow on other backends.

    Keras's version also seeds TensorFlow whenever it is installed, which imports it
    (seconds of start-up and log noise) even on JAX; the rest is the same.
    """
    k = keras()
    if k.backend.backend() == "tensorflow":
        k.utils.set_random_seed(seed)
        return
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if k.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def global_random_seed() -> int | None:
    """The seed last given to ``keras.utils.set_random_seed`` in this process, or None."""
    keras()
    from keras.src.backend.common import global_state
    from keras.src.utils import rng_utils

    seed = global_state.get_global_attribute(rng_utils.GLOBAL_RANDOM_SEED)
    return seed if isinstance(seed, int) else None


def train_validation_split(arrays, validation_split):
    """Keras's own split for ``fit(validation_split=)``: the last fraction, before any shuffling."""
    keras()
    from keras.src.trainers.data_adapters import array_slicing

    return array_slicing.train_validation_split(arrays, validation_split=validation_split)


def class_weight_to_sample_weights(y, class_weight):
    """Keras's own mapping of ``fit(class_weight=)`` onto per-sample weights (one-hot or sparse labels)."""
    keras()
    from keras.src.trainers.data_adapters import data_adapter_utils

    return data_adapter_utils.class_weight_to_sample_weights(y, class_weight)


def build_metrics(model, x_batch, y_batch) -> None:
    """Create the compiled metrics' variables now, as Keras does at the start of ``fit`` on JAX/PyTorch.

    TensorFlow's trainer creates them only when it traces the first step, too late
    for a resumed epoch whose running sums must be put back before that step.
    """
    model._symbolic_build(data_batch=(x_batch, y_batch))


def global_seed_state():
    """The state of Keras's global SeedGenerator (used by keras.random without a seed), or None."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    gen = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
    return None if gen is None else to_numpy(gen.state).tolist()


def set_global_seed_state(value) -> None:
    if value is None:
        return
    import numpy as np
    from keras.src.random import seed_generator

    gen = seed_generator.global_seed_generator()
    gen.state.assign(np.asarray(value, dtype=str(gen.state.dtype)))


def framework_random_state() -> dict | None:
    """The framework's own global generator where Keras draws from it, as JSON-able data.

    PyTorch: Dropout and other layers built without a seed take Keras's "unseeded"
    path, torch's global generator (CPU, and CUDA where present). JAX and
    TensorFlow draw from Keras's SeedGenerators only, which are saved as variables.
    """
    if backend_name() != "torch":
        return None
    import base64

    import torch

    state = {"cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return {"torch": state}


def set_framework_random_state(value: dict | None) -> None:
    if not value or "torch" not in value or backend_name() != "torch":
        return
    import base64

    import numpy as np
    import torch

    def tensor(text):
        return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())

    torch.set_rng_state(tensor(value["torch"]["cpu"]))
    if "cuda" in value["torch"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(t) for t in value["torch"]["cuda"]])
