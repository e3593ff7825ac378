"""Old weight layouts onto Keras 3's variables: by position (HDF5) or by attribute path (TensorFlow checkpoints).

An HDF5 file lists each layer's arrays in the order old Keras kept the layer's
weights (trainable ones, then the others), which is Keras 3's order too; a
TensorFlow checkpoint names each array by the attributes that led to it
(``cell/kernel``, ``forward_layer/cell/bias``), which are Keras 3's attribute names
too, except where a table entry (Rule.checkpoint_names) says otherwise. Keras 1
kept recurrent weights per gate and convolution kernels in Theano's order
(:func:`keras1_weights`). Arrays whose shape differs from the variable's only in
axes of size 1 (tf.keras kept BatchNormalization's parameters at full rank with a
virtual batch) are reshaped; anything else is a mismatch, named.

Example:
    >>> import numpy as np
    >>> fit_shape(np.zeros((1, 1, 4)), (4,), "bn/gamma").shape
    (4,)
"""

from __future__ import annotations

import numpy as np

from .rules import table


def fits(saved_shape: tuple, shape: tuple) -> bool:
    """Whether an array of ``saved_shape`` goes into a variable of ``shape`` (equal but for axes of size 1)."""
    return [int(d) for d in saved_shape if d != 1] == [int(d) for d in shape if d != 1]


def fit_shape(array, shape: tuple, name: str):
    """``array`` in ``shape`` when it differs only by axes of size 1; ValueError naming ``name`` otherwise."""
    array = np.asarray(array)
    shape = tuple(int(d) for d in shape)
    if array.shape == shape:
        return array
    if fits(array.shape, shape):
        return array.reshape(shape)
    raise ValueError(f"{name}: the file's array has shape {array.shape}, the layer's variable {shape}")


def old_order(layer) -> list:
    """A layer's variables in the order old Keras wrote them to HDF5 (trainable first, as Keras's legacy writer)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def keeps_old_weights_as_state(layer) -> bool:
    """Whether old Keras kept arrays as weights for this class that Keras 3 keeps as state (Rule.state)."""
    rule = table().get(type(layer).__name__)
    return rule is not None and rule.state is not None


def put_state(layer, names: list[str], values: list) -> None:
    """Give old weights that Keras 3 keeps as state to ``layer`` (or check them against its configuration)."""
    table()[type(layer).__name__].state(layer, names, [np.asarray(v) for v in values])


def place(layer, names: list[str], values: list, *, keras1: bool = False, theano: bool = False) -> list[tuple]:
    """(variable, array) pairs for one layer's saved arrays, in the file's order; ValueError when they do not fit."""
    inner = getattr(layer, "layer", layer)  # TimeDistributed / Bidirectional hold the real layer
    if keras1:
        values = keras1_weights(type(inner).__name__, names, values,
                                channels_first=getattr(inner, "data_format", None) == "channels_first", theano=theano)
    rule = table().get(type(layer).__name__)
    if rule is not None and rule.weights is not None:
        values = rule.weights(layer, names, values)
    variables = old_order(layer)
    if len(variables) != len(values):
        raise ValueError(f"layer '{layer.name}' has {len(variables)} weights, the file {len(values)} ({', '.join(names[:4])})")
    return [(v, fit_shape(a, v.shape, f"layer '{layer.name}' weight {v.path}")) for v, a in zip(variables, values)]


def checkpoint_variable(layer, attribute_path: str):
    """The variable of a Keras 3 ``layer`` that a tf.keras 2 checkpoint names by ``attribute_path``, or None.

    The path is the chain of attributes tf.keras tracked (``forward_layer/cell/kernel``,
    ``cell/cells/0/bias``); Keras 3 layers keep the same attributes, except the ones a
    table renames. A kerasafe wrapper (TimeMajor) holds the old layer as ``layer``.
    """
    obj = layer
    parts = attribute_path.split("/")
    for i, part in enumerate(parts):
        rule = table().get(type(obj).__name__)
        part = (rule.checkpoint_names.get(part, part) if rule is not None else part)
        if isinstance(obj, list | tuple):
            nxt = obj[int(part)] if part.isdigit() and int(part) < len(obj) else None
        else:
            nxt = getattr(obj, part, None)
            if nxt is None and type(obj).__name__ == "TimeMajor":
                return checkpoint_variable(obj.layer, "/".join(parts[i:]))
        if nxt is None:
            return None
        obj = nxt
    return obj if hasattr(obj, "assign") and hasattr(obj, "shape") else None

# Keras 1 kept a recurrent layer's weights per gate ("gru_1_W_z:0", "gru_1_U_z:0", "gru_1_b_z:0", ...);
# Keras 2+ concatenate them along the last axis, gates in this order.
KERAS1_GATES = {"GRU": ("z", "r", "h"), "LSTM": ("i", "f", "c", "o")}


KERAS1_CONVOLUTIONS = ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Convolution1D", "Convolution2D", "Convolution3D")


def keras1_weights(class_name: str, names: list[str], values: list, *, channels_first: bool = False,
                   theano: bool = False) -> list:
    """A Keras 1 layer's weight arrays in the order and layout Keras 3's layer of that class holds them.

    Example:
        >>> import numpy as np
        >>> names = [f"gru_1_{k}_{g}:0" for g in "zrh" for k in "WUb"]
        >>> out = keras1_weights("GRU", names, [np.zeros((4, 2)), np.zeros((2, 2)), np.zeros(2)] * 3)
        >>> [a.shape for a in out]
        [(4, 6), (2, 6), (6,)]
    """
    import numpy as np

    if class_name in KERAS1_CONVOLUTIONS and values:
        kernel = np.asarray(values[0])
        if channels_first and kernel.ndim >= 3:
            # dim_ordering "th" stored (out, in, *spatial); Keras 3 keeps (*spatial, in, out).
            kernel = np.transpose(kernel, (*range(2, kernel.ndim), 1, 0))
        if theano:
            # Theano convolved (kernel flipped); Keras 3 correlates, as TensorFlow did.
            kernel = kernel[tuple([slice(None, None, -1)] * (kernel.ndim - 2))]
        return [np.ascontiguousarray(kernel), *values[1:]]
    gates = KERAS1_GATES.get(class_name)
    if gates is None:
        return list(values)

    by_name = {}
    for name, value in zip(names, values):
        parts = name.split(":")[0].split("_")
        by_name[(parts[-2], parts[-1])] = value
    try:
        return [np.concatenate([by_name[(kind, gate)] for gate in gates], axis=-1) for kind in ("W", "U", "b")]
    except KeyError as exc:
        raise ValueError(f"Keras 1 {class_name} weights {names[:3]}...: no {exc.args[0]}") from None


# More names than any model has layers or weights, and longer than any name: a damaged or hostile list.
MAX_NAMES, MAX_NAME_CHARS = 1_000_000, 4096


def name_list(obj, attr: str) -> list[str]:
    """An HDF5 name-list attribute (``layer_names``, ``weight_names``) as a list of str; ValueError naming what else it holds.

    Keras split long lists into ``attr0``, ``attr1``, ... (64 KiB each). A list must be a
    1-D array of strings: one string (walked per character), a number or an empty value is refused.

    Example:
        >>> import h5py, io, numpy as np
        >>> with h5py.File(io.BytesIO(), "w") as f:
        ...     f.attrs["layer_names"] = np.array([b"dense", b"out"])
        ...     name_list(f, "layer_names")
        ['dense', 'out']
    """
    import h5py

    chunks = [attr] if attr in obj.attrs else []
    while attr not in obj.attrs and f"{attr}{len(chunks)}" in obj.attrs:
        chunks.append(f"{attr}{len(chunks)}")
    names: list[str] = []
    for key in chunks:
        value = obj.attrs[key]
        if isinstance(value, np.ndarray) and value.size == 0:
            continue  # Keras writes a layer without weights as np.array([]) (float64)
        if isinstance(value, h5py.Empty) or not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "SOU":
            raise ValueError(f"attribute '{key}' holds {type(value).__name__} {getattr(value, 'dtype', '')}, not a list of names")
        if len(names) + len(value) > MAX_NAMES:
            raise ValueError(f"attribute '{key}' lists more than {MAX_NAMES:,} names")
        for raw in value:
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if len(name) > MAX_NAME_CHARS:
                raise ValueError(f"attribute '{key}' holds a name of {len(name):,} characters")
            names.append(name)
    return names



def load_h5_layers(model, group, *, by_name: bool = False, skip_mismatch: bool = False, keras_version: str = "2",
                   theano: bool = False) -> list[str]:
    """Fill ``model`` from an old HDF5 weights group (``layer_names``, one group per layer with ``weight_names``).

    By position: the file's layers that have weights, in order, onto the model's; by name:
    each model layer from the file's group of the same name. ``skip_mismatch`` leaves a
    layer that does not fit as it is (its name is returned). ValueError names what does not fit.
    """
    import warnings

    keras1 = keras_version.split(".")[0] == "1"
    saved = [n for n in name_list(group, "layer_names") if n in group and name_list(group[n], "weight_names")]
    # A layer old Keras gave weights that Keras 3 keeps as state counts where the file lists it by name.
    holds = [layer for layer in model.layers if old_order(layer) or (keeps_old_weights_as_state(layer) and layer.name in saved)]
    if by_name:
        by_layer = {layer.name: layer for layer in holds}
        pairs = [(by_layer[name], name) for name in saved if name in by_layer]
    else:
        layers = holds
        if len(saved) != len(layers):
            raise ValueError(f"the file has {len(saved)} layers with weights ({', '.join(saved[:4])}...), the model {len(layers)}")
        pairs = list(zip(layers, saved))
    skipped, assignments = [], []
    for layer, name in pairs:
        weight_names = name_list(group[name], "weight_names")
        if not old_order(layer):
            put_state(layer, weight_names, [group[name][w][()] for w in weight_names])
            continue
        try:
            assignments += place(layer, weight_names, [group[name][w][()] for w in weight_names], keras1=keras1, theano=theano)
        except ValueError as exc:
            if not skip_mismatch:
                raise
            warnings.warn(f"skipped layer '{layer.name}': {exc}", stacklevel=3)
            skipped.append(layer.name)
    if "top_level_model_weights" in group:  # a subclassed model's own variables (Keras 3 writes them)
        own = [v for v in model._trainable_variables + model._non_trainable_variables if v in model.weights]
        names = name_list(group["top_level_model_weights"], "weight_names")
        if len(names) != len(own):
            raise ValueError(f"the file has {len(names)} top-level weights, the model {len(own)}")
        assignments += [(v, fit_shape(group["top_level_model_weights"][n][()], v.shape, v.path)) for v, n in zip(own, names)]
    for variable, value in assignments:  # all checked before any is assigned
        variable.assign(value)
    return skipped


def _attribute(obj, name: str):
    rule = table().get(type(obj).__name__)
    name = rule.checkpoint_names.get(name, name) if rule is not None else name
    if isinstance(obj, list | tuple):
        return obj[int(name)] if name.isdigit() and int(name) < len(obj) else None
    found = getattr(obj, name, None)
    if found is None and type(obj).__name__ == "TimeMajor":  # kerasafe's wrapper holds the old layer
        return _attribute(obj.layer, name)
    return found


def load_keras3_layout(model, h5, *, skip_mismatch: bool = False) -> None:
    """Fill ``model`` from a ``.weights.h5`` that tf.keras 2.13+ wrote (``layers/<name>/<attributes>/vars/<i>``).

    Keras 3 reads the same layout by walking its own attributes; this walk follows the
    file's instead (the table's renames, kerasafe's wrappers, arrays kept at full rank),
    for the layers Keras's walk could not fill.
    """
    import h5py

    from .. import _keras

    assignments, used = [], {}
    layers = h5.get("layers")
    for layer in model.layers:
        # Keras names a container's entries by class, numbered within each class (its saving_lib).
        base = _keras.snake_case(getattr(layer, "_kerasafe_old_class", type(layer).__name__))
        used[base] = used.get(base, -1) + 1
        name = base if used[base] == 0 else f"{base}_{used[base]}"
        group = layers.get(name) if layers is not None else None
        if not old_order(layer):
            continue
        if group is None:
            if skip_mismatch:
                continue
            raise ValueError(f"the file has no weights for layer '{layer.name}' (group layers/{name})")
        found: dict[int, tuple] = {}

        def visit(name, obj, layer=layer, found=found):
            parts = name.split("/")
            if not isinstance(obj, h5py.Dataset) or len(parts) < 2 or parts[-2] != "vars" or not parts[-1].isdigit():
                return
            target = layer
            for part in parts[:-2]:
                target = _attribute(target, part) if target is not None else None
            own = (list(target._trainable_variables) + list(target._non_trainable_variables)) if target is not None else []
            index = int(parts[-1])
            if index >= len(own):
                raise ValueError(f"layer '{layer.name}': the file's {name} has no variable to go to")
            found[id(own[index])] = (own[index], fit_shape(obj[()], own[index].shape, f"layer '{layer.name}' {name}"))

        group.visititems(visit)
        missing = [v for v in layer.weights if id(v) not in found]
        if missing and not skip_mismatch:
            raise ValueError(f"layer '{layer.name}': the file has no value for {missing[0].path}")
        assignments += found.values()
    for variable, value in assignments:
        variable.assign(value)
