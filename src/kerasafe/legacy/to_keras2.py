"""Keras 3 -> Keras 2: the configs kerasafe writes into ``.h5`` files, in terms tf.keras 2 reads too.

Each table entry names the Keras version it bridges and is tested with the text
it came from (tests/test_translation.py). The other direction (old files on
Keras 3) is the rest of this package.

Example:
    >>> from kerasafe.legacy.to_keras2 import canonical_training_config
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
