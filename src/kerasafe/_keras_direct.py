"""Loading Keras state straight from a file's byte offsets (the fast ``.keras`` read path).

Kept apart from ``_keras`` (the rest of kerasafe's contact with Keras internals) so each
stays readable in one sitting. Every name here leans on a private Keras API, named
where it is used, checked against Keras 3.15.

Example:
    >>> from kerasafe import _keras_direct
    >>> with _keras_direct.variables_filled_by_loading() as end_scope:
    ...     pass
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json

from . import _keras
from ._keras import backend_name, saving_lib


def adopt(array):
    """The array as the backend will hold it, without a copy where the backend allows.

    Keras's JAX variables keep ``jnp.asarray(value)``, which copies a NumPy array; on
    the CPU ``jax.device_put`` of a 64-byte aligned array (formats._direct.aligned_empty)
    uses its memory in place, so a loaded model never has a second copy of a weight in
    memory. Keras's PyTorch ``convert_to_tensor`` copies a NumPy array (``np.array(x)``)
    before ``torch.as_tensor``; ``torch.from_numpy`` shares it. Only floating-point
    arrays: JAX narrows 64-bit integers when x64 is off, and PyTorch has no bfloat16
    NumPy type.
    """
    backend = backend_name()
    if array.nbytes < (64 << 10) or backend not in ("jax", "torch"):
        return array
    if backend == "jax" and (array.dtype.kind == "f" or array.dtype.name == "bfloat16"):
        return importlib.import_module("jax").device_put(array)
    if backend == "torch" and array.dtype.kind == "f" and array.flags.writeable:
        return importlib.import_module("torch").from_numpy(array)
    return array


@functools.cache
def _direct_store_class():
    lib = saving_lib()

    class DirectStore(lib.H5IOStore):
        # A subclass only because Keras's _load_state accepts nothing but its own store
        # types. It answers Keras's get/keys/[] from a table of dataset offsets and reads
        # each array when Keras asks for it, so one array at a time is in flight.
        def __init__(self, h5, refs, reader, groups):
            self.h5_file, self.mode, self._reader, self._paths = h5, "r", reader, groups
            self._tf213 = "_layer_checkpoint_dependencies" in h5  # tf.keras 2.13's layout
            self._groups: dict[str, dict] = {}
            for name, ref in refs.items():
                group, _, key = name.rpartition("/")
                self._groups.setdefault(group, {})[key] = ref
            self._group: dict = {}

        def __bool__(self):
            return True

        def get(self, path):
            group = f"{path}/vars" if path else "vars"
            if group not in self._groups and self._tf213:
                group = group.replace("layers", "_layer_checkpoint_dependencies")
            self._group = self._groups.get(group, {})
            return self

        def __len__(self):
            return len(self._group)

        def keys(self):
            return self._group.keys()

        def __contains__(self, key):
            return key in self._group

        def __getitem__(self, key):
            return adopt(self._reader.read(self._group[key], self.h5_file))

        def has_path(self, path):
            # Keras asks this for every container; answered from the one walk over the file.
            return path in self._paths

        def close(self):
            pass

    return DirectStore


@contextlib.contextmanager
def variables_filled_by_loading():
    """Build models whose variables get their first value from the file, not from initializers.

    Variables created inside Keras's StatelessScope are left unallocated until
    assigned, so a model being loaded never holds a second, random copy of its weights
    (for a 1 GiB model, 1 GiB of initializer work and memory). On JAX assigning such a
    variable sets it; a PyTorch variable cannot be assigned before it exists, so there
    each one's first ``assign`` creates it from the value instead
    (:func:`_create_on_first_assign`). TensorFlow's optimizers key their slots by the
    variable's TensorFlow handle, so there each gets a handle with no value yet
    (:func:`_handle_without_value`). Whatever the file did not fill is initialized
    normally on the way out. Under a tf.distribute strategy, whose variables are
    created through it, this does nothing.
    """
    backend = backend_name()
    if backend not in ("jax", "torch", "tensorflow") or (backend == "tensorflow" and importlib.import_module("tensorflow").distribute.has_strategy()):
        yield lambda: None
        return
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    before = len(global_state.get_global_attribute("uninitialized_variables") or [])
    scope = StatelessScope(initialize_variables=False)  # the default would initialize every variable on exit
    entered = [True]

    def pending():
        return (global_state.get_global_attribute("uninitialized_variables") or [])[before:]

    def end_scope():
        if entered[0]:
            scope.__exit__(None, None, None)
            entered[0] = False
            for variable in pending():
                if backend == "torch":
                    _create_on_first_assign(variable)
                elif backend == "tensorflow":
                    _handle_without_value(variable)

    scope.__enter__()
    try:
        yield end_scope  # the caller ends the scope once the model is built, before loading values
    finally:
        end_scope()
        for variable in pending():
            variable.__dict__.pop("assign", None)
            if variable._value is None:
                variable._deferred_initialize()
            elif backend == "tensorflow" and variable._initializer is not None:
                if not variable._value.is_initialized():
                    variable._value.assign(variable._initializer(variable.shape, dtype=variable.dtype))
                variable._initializer = None
        all_pending = global_state.get_global_attribute("uninitialized_variables") or []
        global_state.set_global_attribute("uninitialized_variables", all_pending[:before])


def _handle_without_value(variable) -> None:
    """Give an unallocated TensorFlow variable a handle that holds no value yet.

    TensorFlow's ``UninitializedVariable`` (what tf.train.Checkpoint restores into) has
    an identity, a shape and a dtype, so optimizers can be built on it, and its first
    assign allocates it: no initializer runs and no random array is made for the file
    to overwrite. Keras's ``_initialize`` adopts any ``tf.Variable`` as is.
    """
    from tensorflow.python.ops.resource_variable_ops import UninitializedVariable

    tf = importlib.import_module("tensorflow")
    with tf.init_scope():
        variable._initialize(UninitializedVariable(
            shape=variable.shape, dtype=tf.as_dtype(variable.dtype), trainable=variable.trainable, name=variable.name,
            aggregation=variable._map_aggregation(variable.aggregation), synchronization=variable._map_synchronization(variable.synchronization),
        ))


def _create_on_first_assign(variable) -> None:
    """Make ``variable.assign(value)`` create the unallocated variable from ``value``.

    Keras's PyTorch variables assign into the tensor they hold, and an unallocated one
    holds none (it would copy into a throwaway placeholder). Until
    its first assign, this one instance's ``assign`` calls Keras's ``_initialize``, as
    Keras does for a variable created from a value. The tensor then shares the array
    read from the file: no copy.
    """
    def assign(value):
        del variable.__dict__["assign"]  # later assigns are Keras's own
        if variable._value is not None:
            return variable.assign(value)
        value = variable._convert_to_tensor(value, dtype=variable.dtype)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"The shape of the target variable and the shape of the target value in `variable.assign(value)` must match. "
                             f"variable.shape={variable.shape}, Received: value.shape={value.shape}. Target variable: {variable}")
        variable._initialize(value)
        return value

    variable.__dict__["assign"] = assign


def model_from_config_json(config_json, custom_objects, compile, safe_mode, end_scope):
    """Keras's ``_model_from_config``, with the model's variables created inside
    :func:`variables_filled_by_loading` (``end_scope`` ends it) and compiled after,
    since an optimizer allocates its step counter when it is constructed."""
    model = saving_lib()._model_from_config(config_json, custom_objects, False, safe_mode)
    end_scope()
    _compile_from_config(model, json.loads(config_json).get("compile_config") if compile else None, custom_objects, safe_mode)
    return model


def model_from_config_dict(config: dict, custom_objects, compile, safe_mode, end_scope):
    """:func:`model_from_config_json` for a config already parsed (a manifest's ``architecture``)."""
    from ._keras import model_from_config

    model = model_from_config(config, custom_objects=custom_objects, compile=False, safe_mode=safe_mode)
    end_scope()
    _compile_from_config(model, config.get("compile_config") if compile else None, custom_objects, safe_mode)
    return model


def _compile_from_config(model, compile_config, custom_objects, safe_mode) -> None:
    if not compile_config:
        return
    from keras.src.saving import object_registration, serialization_lib

    with object_registration.CustomObjectScope(custom_objects or {}), serialization_lib.SafeModeScope(safe_mode):
        model.compile_from_config(compile_config)
    model.compiled = True


def direct_store(h5, refs, reader, groups: set):
    """A store Keras's ``_load_state`` reads from, answering from offsets (formats._direct);
    ``groups``: every group's path (``_direct.layout``)."""
    return _direct_store_class()(h5, refs, reader, groups)


def load_state(obj, store, *, inner_path: str = "", assets_store=None, skip_mismatch: bool = False) -> None:
    """Keras's own walk over ``obj``'s state (a model or one layer at ``inner_path``); ValueError on a misfit."""
    lib = saving_lib()
    failed, messages = set(), {}
    _keras.cache_attr_skipsets()
    lib._load_state(
        obj, weights_store=store, assets_store=assets_store, inner_path=inner_path,
        skip_mismatch=skip_mismatch, visited_saveables=set(), failed_saveables=failed, error_msgs=messages,
    )
    if failed:
        lib._raise_loading_failure(messages, warn_only=skip_mismatch)


def load_layers_by_name(model, store, *, skip_mismatch: bool = False) -> None:
    """Each layer of ``model`` from the group ``layers/<its name>`` of ``store``, where there is one."""
    for layer in model.layers:
        if f"layers/{layer.name}" in store.h5_file:
            load_state(layer, store, inner_path=f"layers/{layer.name}", skip_mismatch=skip_mismatch)
