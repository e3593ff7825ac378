"""Keras-version translation: tables of renames between what one Keras wrote and another reads.

Each table entry names the Keras version it bridges and is tested with the text
it came from (tests/test_translation.py). The legacy rescue work grows this
module; today it holds what kerasafe's own HDF5 writer needs.

Example:
    >>> from kerasafe.translation import canonical_training_config
    >>> canonical_training_config({"loss": {"reg": "mse"}, "metrics": ["mae"]})["loss"]
    {'reg': 'mean_squared_error'}
"""

from __future__ import annotations

# Keras 3 (checked on 3.15) writes the short names a user compiled with into an HDF5
# file's training_config, then cannot read them back: its legacy loader looks them up
# as "keras.metrics.mse" and raises. The full names load in Keras 3 and in tf.keras 2.
LOSS_AND_METRIC_ALIASES = {
    "mse": "mean_squared_error",
    "MSE": "mean_squared_error",
    "mae": "mean_absolute_error",
    "MAE": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "MAPE": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "MSLE": "mean_squared_logarithmic_error",
}


def _rename(value):
    if isinstance(value, str):
        return LOSS_AND_METRIC_ALIASES.get(value, value)
    if isinstance(value, list):
        return [_rename(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _rename(v) for k, v in value.items()}
    return value


def canonical_training_config(config: dict) -> dict:
    """A copy of an HDF5 ``training_config`` whose loss and metric names every Keras reads."""
    out = dict(config)
    for key in ("loss", "metrics", "weighted_metrics"):
        if out.get(key) is not None:
            out[key] = _rename(out[key])
    return out


# --- Keras 3 -> Keras 2 (tf.keras 2.x): so the .h5 files kerasafe writes open in both ------------

# Arguments Keras 3 layers write that tf.keras 2 layers refuse ("Unrecognized keyword
# arguments"), each with the value at which dropping it changes nothing. A layer that
# uses another value cannot be expressed for Keras 2 and is reported, never dropped.
KERAS3_ONLY_LAYER_ARGUMENTS = {
    "InputLayer": {"optional": False},
    "Dense": {"quantization_config": None, "lora_rank": None, "lora_alpha": None},
    "EinsumDense": {"quantization_config": None, "lora_rank": None, "lora_alpha": None},
    "Embedding": {"quantization_config": None, "lora_rank": None, "lora_alpha": None},
    "Resizing": {
        "pad_to_aspect_ratio": False, "fill_mode": "constant", "fill_value": 0.0, "data_format": "channels_last", "antialias": False,
    },
}
# Keras 3 renamed these arguments; tf.keras 2 knows only the old names.
KERAS3_RENAMED_LAYER_ARGUMENTS = {"InputLayer": {"batch_shape": "batch_input_shape"}}
# Keras 3's VarianceScaling family (GlorotUniform, HeNormal, ...) gained these.
KERAS3_ONLY_INITIALIZER_ARGUMENTS = {"input_axes": None, "output_axes": None}
# tf.keras 2 rebuilds an HDF5 file's optimizer with its legacy classes, which take none of these.
KERAS3_ONLY_OPTIMIZER_ARGUMENTS = {
    "weight_decay": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
    "loss_scale_factor": None, "gradient_accumulation_steps": None,
}
_DTYPE_POLICIES = {"DTypePolicy", "FloatDTypePolicy"}


def _drop_neutral(config: dict, table: dict, what: str, problems: list[str]) -> dict:
    out = dict(config)
    for arg, neutral in table.items():
        if arg in out:
            if out[arg] == neutral:
                del out[arg]
            else:
                problems.append(f"{what} uses {arg}={out[arg]!r}, which Keras 2 does not have")
    return out


def _is_keras_object(value) -> bool:
    return isinstance(value, dict) and "class_name" in value and isinstance(value.get("config"), dict)


def _node_to_keras2(node, layer_name: str, problems: list[str]):
    """Keras 3's ``{"args": [...], "kwargs": {...}}`` call record -> Keras 2's list of inbound tensors."""
    if isinstance(node, list):
        return node  # already Keras 2
    kwargs = dict(node.get("kwargs") or {})
    entries: list = []

    def collect(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            entries.append([*value["config"]["keras_history"], kwargs])
        elif isinstance(value, list | tuple):
            for v in value:
                collect(v)
        else:
            problems.append(f"layer '{layer_name}' is called with a constant argument, which Keras 2 configs cannot hold")

    for arg in node.get("args") or []:
        collect(arg)
    if "__keras_tensor__" in str(kwargs):
        problems.append(f"layer '{layer_name}' takes a tensor as keyword argument, which Keras 2 configs cannot hold")
    return entries


def _layer_to_keras2(obj: dict, problems: list[str], nested: bool = False) -> dict:
    cls = obj.get("class_name")
    config = dict(obj.get("config") or {})
    name = config.get("name", cls)
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") in _DTYPE_POLICIES:
        config["dtype"] = dtype["config"]["name"]
    for old, new in KERAS3_RENAMED_LAYER_ARGUMENTS.get(cls, {}).items():
        if old in config:
            config[new] = config.pop(old)
    config = _drop_neutral(config, KERAS3_ONLY_LAYER_ARGUMENTS.get(cls, {}), f"{cls} '{name}'", problems)
    for key, value in list(config.items()):
        if _is_keras_object(value) and key.endswith("initializer"):
            inner = _drop_neutral(value["config"], KERAS3_ONLY_INITIALIZER_ARGUMENTS, f"{cls} '{name}' {key}", problems)
            config[key] = dict(value, config=inner)
    out = dict(obj, config=config)
    if isinstance(obj.get("inbound_nodes"), list):
        out["inbound_nodes"] = [_node_to_keras2(n, name, problems) for n in obj["inbound_nodes"]]
    if isinstance(config.get("layers"), list):
        in_functional = cls in ("Functional", "Model")
        config["layers"] = [_layer_to_keras2(layer, problems, nested=in_functional) for layer in config["layers"]]
        if cls == "Sequential" and nested:
            return _sequential_as_functional(out, problems)
        if in_functional:
            _check_nested_models_are_outputs_only(config, problems)
            _shift_references(config, {l["config"]["name"] for l in config["layers"] if l.get("kerasafe_was_sequential")})
            for layer in config["layers"]:
                layer.pop("kerasafe_was_sequential", None)
    return out


def _check_nested_models_are_outputs_only(config: dict, problems: list[str]) -> None:
    """A nested model that feeds other layers cannot be written for both Kerases.

    Both number a nested model's calls by node index, and they disagree: tf.keras 2
    counts the nested model's own input as node 0, Keras 3 (3.15) does not when it
    reads an HDF5 config, so no index works for both. As a model output the two agree.
    """
    models = {l["config"]["name"] for l in config["layers"] if l.get("class_name") in ("Functional", "Model", "Sequential")}
    for layer in config["layers"]:
        for node in layer.get("inbound_nodes", []):
            for entry in node if isinstance(node, list) else []:
                if isinstance(entry, list) and entry and entry[0] in models:
                    problems.append(
                        f"nested model '{entry[0]}' feeds layer '{layer['config'].get('name')}'; "
                        "tf.keras 2 and Keras 3 number such calls differently"
                    )
                    return


def _sequential_as_functional(obj: dict, problems: list[str]) -> dict:
    """A nested Sequential, written as the Functional model it is.

    A model nested in a Functional one is referred to by node index. tf.keras 2 counts
    a nested Sequential's own input as node 0 (so the outer call is node 1); Keras 3
    does not for Sequential, but does for Functional. Written as Functional, both
    read the same index; the layers and weights are the same.
    """
    config = obj["config"]
    layers = list(config["layers"])
    if not layers or layers[0].get("class_name") != "InputLayer":
        shape = config.get("build_input_shape")
        if shape is None:
            problems.append(f"nested Sequential '{config.get('name')}' was never built with an input shape")
            return obj
        layers.insert(0, {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "dtype": "float32", "name": f"{config['name']}_input"}})
    def index_of(layer):  # see above: a nested model's outer call is its node 1
        return 1 if layer.get("kerasafe_was_sequential") or layer.get("class_name") in ("Functional", "Model") else 0

    chained, previous = [], None
    for layer in layers:
        layer = dict(layer)
        layer_name = layer["config"]["name"]
        layer["name"] = layer_name
        if previous is None:
            layer["inbound_nodes"] = []
        else:
            layer["inbound_nodes"] = [[[previous["name"], index_of(previous), 0, {}]]]
        chained.append(layer)
        previous = layer
    last_index = index_of(previous)
    for layer in chained:
        layer.pop("kerasafe_was_sequential", None)
    functional = {
        "name": config["name"],
        "trainable": config.get("trainable", True),
        "layers": chained,
        "input_layers": [[chained[0]["name"], 0, 0]],
        "output_layers": [[previous["name"], last_index, 0]],
    }
    return {"class_name": "Functional", "config": functional, "name": obj.get("name", config["name"]),
            "inbound_nodes": obj.get("inbound_nodes", []), "kerasafe_was_sequential": True}


def _shift_references(config: dict, names: set[str]) -> None:
    """Add 1 to the node index of every reference to the layers in ``names``."""
    if not names:
        return

    def shift(ref):
        if isinstance(ref, list) and len(ref) >= 3 and isinstance(ref[0], str):
            return [ref[0], ref[1] + 1 if ref[0] in names else ref[1], *ref[2:]]
        if isinstance(ref, list):
            return [shift(r) for r in ref]
        if isinstance(ref, dict):
            return {k: shift(v) for k, v in ref.items()}
        return ref

    for layer in config["layers"]:
        layer["inbound_nodes"] = [shift(node) for node in layer.get("inbound_nodes", [])]
    config["output_layers"] = shift(config["output_layers"])


def model_config_to_keras2(config: dict) -> tuple[dict, list[str]]:
    """A Keras 3 (legacy-HDF5) model config that tf.keras 2 also reads, and what could not be said.

    Keras 3 reads the result too (its HDF5 loader understands Keras 2 configs).
    """
    problems: list[str] = []
    return _layer_to_keras2(config, problems), problems


def training_config_to_keras2(config: dict) -> tuple[dict, list[str]]:
    problems: list[str] = []
    out = canonical_training_config(config)
    opt = out.get("optimizer_config")
    if _is_keras_object(opt):
        out["optimizer_config"] = dict(opt, config=_drop_neutral(opt["config"], KERAS3_ONLY_OPTIMIZER_ARGUMENTS, "optimizer", problems))
    return out, problems


# --- Keras 1.x / 2.x / tf.keras 2 -> what Keras 3's legacy loader reads ------------------------

# Keras 1 layer classes under their Keras 2/3 names.
KERAS1_CLASS_RENAMES = {
    "Convolution1D": "Conv1D", "Convolution2D": "Conv2D", "Convolution3D": "Conv3D",
    "AtrousConvolution2D": "Conv2D", "Deconvolution2D": "Conv2DTranspose",
}

# Keras 1 argument names -> Keras 2/3 ("*" applies to every layer class). Values that
# change meaning (border_mode "valid"/"same" keep theirs; dim_ordering "tf"/"th") are
# mapped in KERAS1_VALUE_RENAMES.
KERAS1_ARGUMENT_RENAMES = {
    "*": {
        "init": "kernel_initializer", "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer",
        "W_constraint": "kernel_constraint", "b_constraint": "bias_constraint", "bias": "use_bias",
        "border_mode": "padding", "subsample": "strides", "dim_ordering": "data_format", "nb_filter": "filters",
        "input_dtype": "__input_dtype__", "inner_init": "recurrent_initializer", "inner_activation": "recurrent_activation",
        "U_regularizer": "recurrent_regularizer", "U_constraint": "recurrent_constraint",
        "dropout_W": "dropout", "dropout_U": "recurrent_dropout", "atrous_rate": "dilation_rate",
    },
    "Dense": {"output_dim": "units"},
    "SimpleRNN": {"output_dim": "units"},
    "GRU": {"output_dim": "units"},
    "LSTM": {"output_dim": "units"},
    "Dropout": {"p": "rate"},
    "SpatialDropout1D": {"p": "rate"},
    "SpatialDropout2D": {"p": "rate"},
    "GaussianNoise": {"sigma": "stddev"},
    "GaussianDropout": {"p": "rate"},
    "MaxPooling1D": {"pool_length": "pool_size", "stride": "strides"},
    "AveragePooling1D": {"pool_length": "pool_size", "stride": "strides"},
    "Conv1D": {"filter_length": "kernel_size", "subsample_length": "strides"},
    # Keras 1's embedding dropout has no Keras 3 meaning at a non-zero value.
    "Embedding": {"dropout": None, "init": "embeddings_initializer", "W_regularizer": "embeddings_regularizer",
                  "W_constraint": "embeddings_constraint"},
}
KERAS1_VALUE_RENAMES = {"data_format": {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}}
# Keras 1 arguments that were hints, not meaning: dropping them changes no output.
# consume_less chose an RNN implementation; input_length a shape Keras 3 infers.
KERAS1_HINTS = ("consume_less", "input_length")
# Keys tf.keras 2.13+ writes around each layer that Keras 3's legacy loader does not take there.
TF_KERAS_LAYER_WRAPPER_KEYS = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")


# Keras 1, Keras 2 and tf.keras 2 defined hard_sigmoid as clip(0.2x + 0.5, 0, 1); Keras 3's
# is clip(x/6 + 0.5, 0, 1). The old one is kept as a function kerasafe registers with
# Keras (_keras.register_legacy_functions), named here as Keras serializes a function.
KERAS2_HARD_SIGMOID = {"module": "builtins", "class_name": "function", "config": "kerasafe>keras2_hard_sigmoid",
                       "registered_name": "function"}
LEGACY_ACTIVATIONS = {"hard_sigmoid": KERAS2_HARD_SIGMOID}
ACTIVATION_ARGUMENTS = ("activation", "recurrent_activation", "inner_activation")


def is_legacy_config(config: dict) -> bool:
    """True for a model config that Keras 1, Keras 2 or tf.keras 2 wrote (not Keras 3).

    Keras 3 writes a ``module`` beside every model's ``class_name``; the older writers
    did not, and Keras 1/2.0 wrote a Sequential's ``config`` as a list.
    """
    version = str(config.get("keras_version") or "")
    return version[:2] in ("1.", "2.") or isinstance(config.get("config"), list) or "module" not in config


def _problem(layer: str, what: str) -> ValueError:
    return ValueError(f"layer '{layer}': {what} has no Keras 3 meaning")


def upgrade_layer_config(class_name: str, config: dict, *, keras1: bool) -> tuple[str, dict]:
    """One layer's (class, config) in the terms Keras 3's legacy loader reads; ValueError names what cannot be."""
    config = dict(config)
    name = config.get("name", class_name)
    if keras1:
        class_name = KERAS1_CLASS_RENAMES.get(class_name, class_name)
        renames = {**KERAS1_ARGUMENT_RENAMES["*"], **KERAS1_ARGUMENT_RENAMES.get(class_name, {})}
        for old, new in renames.items():
            if old not in config:
                continue
            value = config.pop(old)
            if new is None:
                if value not in (None, 0, 0.0):
                    raise _problem(name, f"argument '{old}'={value!r}")
                continue
            config[new] = KERAS1_VALUE_RENAMES.get(new, {}).get(value, value) if isinstance(value, str) else value
        for hint in KERAS1_HINTS:
            config.pop(hint, None)
        if class_name in ("Conv2D", "Conv2DTranspose") and "nb_row" in config:
            config["kernel_size"] = [config.pop("nb_row"), config.pop("nb_col")]
        if class_name == "Merge":
            raise _problem(name, "Keras 1's Merge layer (use Add/Concatenate/... layers)")
    if class_name in ("TFOpLambda", "SlicingOpLambda"):
        from .tf_ops import OPS  # names only: the ops themselves are built when the layer is

        if config.get("function") not in OPS:
            raise _problem(name, f"TensorFlow function '{config.get('function')}' (a {class_name} layer)")
    if class_name == "GRU" and "reset_after" not in config:
        config["reset_after"] = False  # Keras 1/2.0 GRUs applied the reset gate before the matrix product
    for key in ACTIVATION_ARGUMENTS:
        if isinstance(config.get(key), str) and config[key] in LEGACY_ACTIVATIONS:
            config[key] = dict(LEGACY_ACTIVATIONS[config[key]])
    if class_name != "Embedding" and "input_dim" in config:  # (an Embedding's input_dim is its vocabulary)
        input_dim = config.pop("input_dim")
        config.setdefault("batch_input_shape", [None, input_dim])
    inner = config.get("layer")
    if isinstance(inner, dict) and "class_name" in inner:  # TimeDistributed, Bidirectional
        inner_class, inner_config = upgrade_layer_config(inner["class_name"], inner.get("config") or {}, keras1=keras1)
        inner_config.pop("batch_input_shape", None)
        # Keras 3 deserializes a wrapped layer itself, by module: say where the class lives.
        config["layer"] = {"module": "keras.layers", "class_name": inner_class, "config": inner_config, "registered_name": None}
    return class_name, config


def _is_tensor_reference(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:])


def _tf_op_arguments_into_config(layer: dict) -> dict:
    """Move a TF-op layer's constant call arguments (``y=255.0``, ``shape=[...]``) from its call record into its config.

    Keras 3 traces call arguments as tensors when it infers shapes, so constants
    such as a reshape's target shape must be part of the layer, not of the call.
    A second tensor passed by keyword (``x * y`` was recorded as ``multiply(x, y=<y>)``)
    becomes a second input of the node, named in ``tensor_arguments``, because Keras 3's
    loader connects only a node's inputs, never tensors inside its keyword arguments.
    """
    name = (layer.get("config") or {}).get("name", layer.get("name"))
    found, tensor_names = [], []
    for node in layer.get("inbound_nodes") or []:
        for record in list(node):
            if len(record) == 4 and isinstance(record[3], dict):
                arguments = {k: v for k, v in record[3].items() if k != "name"}
                tensors = [k for k, v in arguments.items() if _is_tensor_reference(v)]
                if tensors and len(node) != 1:
                    raise _problem(name, "a TensorFlow op taking a list of tensors and another tensor as a keyword argument")
                node.extend([*arguments.pop(k), {}] for k in tensors)
                found.append(arguments)
                tensor_names.append(tensors)
                record[3] = {}
    if any(a != found[0] for a in found) or any(t != tensor_names[0] for t in tensor_names):
        raise _problem(name, "one TensorFlow-op layer called with different arguments")
    config = dict(layer.get("config") or {}, arguments=found[0] if found else {})
    if tensor_names and tensor_names[0]:
        config["tensor_arguments"] = tensor_names[0]
    return dict(layer, config=config)


def upgrade_legacy_config(config: dict) -> dict:
    """A Keras 1/2/tf.keras 2 model config rewritten for Keras 3's legacy loader.

    Keras 2.0-2.2 wrote a Sequential's ``config`` as a bare list of layers and put the
    input shape on the first layer; Keras 1 used other argument names (tables above);
    tf.keras 2.13+ wraps each layer in keys that loader does not take. Raises
    ValueError naming the layer and argument that have no Keras 3 meaning.

    Example:
        >>> old = {"class_name": "Sequential", "keras_version": "1.1.1", "config": [
        ...     {"class_name": "Dense", "config": {"name": "d", "output_dim": 4, "input_dim": 3, "init": "glorot_uniform"}}]}
        >>> new = upgrade_legacy_config(old)
        >>> [l["class_name"] for l in new["config"]["layers"]], new["config"]["layers"][1]["config"]["units"]
        (['InputLayer', 'Dense'], 4)
    """
    keras1 = str(config.get("keras_version") or "").startswith("1.")
    out = {"class_name": config["class_name"], "config": config["config"]}
    inner = out["config"]
    if isinstance(inner, list):
        inner = {"name": "sequential", "layers": inner}
    inner = dict(inner)
    layers = []
    for layer in inner.get("layers", []):
        layer = {k: v for k, v in layer.items() if k not in TF_KERAS_LAYER_WRAPPER_KEYS}
        if isinstance(layer.get("inbound_nodes"), list):
            # tf.keras 2 wrote a TFOpLambda's one-input call as the bare record [name, node, tensor,
            # kwargs] rather than a list of such records; Keras 3 reads only the list.
            layer["inbound_nodes"] = [[node] if isinstance(node, list) and node and isinstance(node[0], str) else node
                                      for node in layer["inbound_nodes"]]
        if layer.get("class_name") in ("TFOpLambda", "SlicingOpLambda"):
            layer = _tf_op_arguments_into_config(layer)
        class_name, layer_config = upgrade_layer_config(layer["class_name"], layer.get("config") or {}, keras1=keras1)
        layers.append(dict(layer, class_name=class_name, config=layer_config))
    if out["class_name"] == "Sequential" and layers and layers[0]["class_name"] != "InputLayer":
        first = layers[0]["config"]
        shape = first.pop("batch_input_shape", None)
        if shape is not None:  # Keras 3 takes the input shape from an InputLayer only
            # Keras 1's input_dtype is the input's type (int32 token ids), not the layer's.
            dtype = first.pop("__input_dtype__", None) or first.get("dtype", "float32")
            layers.insert(0, {"class_name": "InputLayer", "config": {
                "batch_input_shape": shape, "dtype": dtype, "name": f"{first.get('name', 'input')}_input"}})
    for layer in layers:
        layer["config"].pop("__input_dtype__", None)
    for layer in layers[1:] if out["class_name"] == "Sequential" else []:
        layer["config"].pop("batch_input_shape", None)
    inner["layers"] = layers
    out["config"] = inner
    return out


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
