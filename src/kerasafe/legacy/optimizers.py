"""Optimizer translation: where each older Keras kept an optimizer's state, and where Keras 3 keeps it.

Three eras wrote optimizer state in three layouts:

- Keras 1 and standalone Keras 2 (HDF5 ``optimizer_weights``): unnamed arrays
  ("Variable_3:0", "training/Adam/Variable_3:0") in the optimizer's ``weights`` order,
  ``iterations`` first, then every variable's first slot, then every variable's second.
- tf.keras 2.11+ (HDF5): arrays named "<Optimizer>/<slot>/<layer>/<variable>:0".
- tf.keras 2.11+ (TensorFlow checkpoints): "optimizer/_variables/N" in creation order.

Keras 3 names a slot "<variable path with _>_<kind>" (checked on 3.15); the kinds
below are Keras 3's names.

Example:
    >>> from kerasafe.legacy.optimizers import optimizer_slot
    >>> optimizer_slot("Adam/m/dense/kernel:0")
    ('Adam', 'momentum', 'dense/kernel')
"""

from __future__ import annotations

# tf.keras 2 (TF 2.11+ optimizers) names each optimizer slot "<Optimizer>/<slot>/<layer>/<variable>:0";
# Keras 3 keeps the same state under "<variable path>_<slot>". Slot names per optimizer:
TF_KERAS_OPTIMIZER_SLOTS = {
    "Adam": {"m": "momentum", "v": "velocity", "vhat": "velocity_hat"},
    "AdamW": {"m": "momentum", "v": "velocity", "vhat": "velocity_hat"},
    "Nadam": {"m": "momentum", "v": "velocity"},
    "Adamax": {"m": "momentum", "u": "norm"},
    "RMSprop": {"velocity": "velocity", "momentum": "momentum", "average_gradient": "average_gradient"},
    "SGD": {"m": "momentum"},
    "Adagrad": {"accumulator": "accumulator"},
    "Adadelta": {"accumulated_grad": "accumulated_grad", "accumulated_delta_var": "accumulated_delta_var"},
}


# tf.keras 2's legacy optimizers (TF 2.0-2.10, and tf.keras.optimizers.legacy after) named a slot
# "<Optimizer>/<layer>/<variable>/<slot>:0", with their own slot names:
TF_KERAS_LEGACY_OPTIMIZER_SLOTS = {
    "Adam": {"m": "momentum", "v": "velocity", "vhat": "velocity_hat"},
    "Nadam": {"m": "momentum", "v": "velocity"},
    "Adamax": {"m": "momentum", "v": "norm"},
    "RMSprop": {"rms": "velocity", "momentum": "momentum", "mg": "average_gradient"},
    "SGD": {"momentum": "momentum"},
    "Adagrad": {"accumulator": "accumulator"},
    "Adadelta": {"accum_grad": "accumulated_grad", "accum_var": "accumulated_delta_var"},
}


def optimizer_slot(weight_name: str) -> tuple[str, str, str] | None:
    """(optimizer class, Keras 3 slot name, "layer/variable") of a tf.keras 2 optimizer weight name, or None.

    Example:
        >>> optimizer_slot("Adam/m/dense/kernel:0")
        ('Adam', 'momentum', 'dense/kernel')
        >>> optimizer_slot("RMSprop/dense/kernel/rms:0")  # a legacy optimizer's name
        ('RMSprop', 'velocity', 'dense/kernel')
    """
    parts = weight_name.split(":")[0].split("/")
    if len(parts) < 4:
        return None
    slot = TF_KERAS_OPTIMIZER_SLOTS.get(parts[0], {}).get(parts[1])
    if slot:
        return (parts[0], slot, "/".join(parts[2:]))
    slot = TF_KERAS_LEGACY_OPTIMIZER_SLOTS.get(parts[0], {}).get(parts[-1])
    return (parts[0], slot, "/".join(parts[1:-1])) if slot else None


# Optimizer config keys: Keras 2 names -> Keras 3, and tf.keras 2 keys Keras 3 optimizers refuse.
OPTIMIZER_ARGUMENT_RENAMES = {"lr": "learning_rate"}
TF_KERAS_ONLY_OPTIMIZER_ARGUMENTS = ("is_legacy_optimizer", "jit_compile")


def upgrade_optimizer_config(config: dict) -> dict:
    """An optimizer config from Keras 1/2/tf.keras 2 training_config, as Keras 3 deserializes it.

    tf.keras 2.11+ names its optimizers "Custom>Adam"; Keras 2 wrote ``lr`` and
    ``decay``. Keras 2's decay (lr / (1 + decay * iterations)) is Keras 3's
    InverseTimeDecay with decay_steps=1, so it is kept as that schedule.

    Example:
        >>> new = upgrade_optimizer_config({"class_name": "SGD", "config": {"lr": 0.1, "decay": 0.01}})
        >>> new["config"]["learning_rate"]["class_name"], new["config"]["learning_rate"]["config"]["decay_rate"]
        ('InverseTimeDecay', 0.01)
    """
    class_name = str(config.get("class_name", "")).split(">")[-1]
    if class_name in LOSS_SCALE_OPTIMIZERS:
        return _upgrade_loss_scale_config(config.get("config") or {})
    inner = {OPTIMIZER_ARGUMENT_RENAMES.get(k, k): v for k, v in (config.get("config") or {}).items()
             if k not in TF_KERAS_ONLY_OPTIMIZER_ARGUMENTS}
    decay = inner.pop("decay", 0.0) or 0.0
    if decay:
        inner["learning_rate"] = {"module": "keras.optimizers.schedules", "class_name": "InverseTimeDecay", "registered_name": None,
                                  "config": {"initial_learning_rate": inner.get("learning_rate", 0.01), "decay_steps": 1,
                                             "decay_rate": decay, "staircase": False}}
    return {"module": "keras.optimizers", "class_name": class_name, "config": inner, "registered_name": None}


# tf.keras 2's mixed-precision wrappers: V3 around the 2.11+ optimizers, the plain name around the
# legacy ones (TF 2.4-2.10), V1 the experimental one of TF 2.1-2.3 (a "loss_scale" object in its config).
LOSS_SCALE_OPTIMIZERS = ("LossScaleOptimizer", "LossScaleOptimizerV3", "LossScaleOptimizerV1")


def _upgrade_loss_scale_config(config: dict) -> dict:
    """A tf.keras 2 LossScaleOptimizer config as Keras 3 builds it.

    Keras 3's LossScaleOptimizer is always dynamic; a fixed scale is Keras 3's
    ``loss_scale_factor`` on the inner optimizer (the same arithmetic: the loss times
    the scale, the gradients divided by it). TF 2.3 and before kept the scale as a
    ``loss_scale`` object; tf.keras refused a dynamic multiplier other than 2, so does this.

    Example:
        >>> fixed = {"inner_optimizer": {"class_name": "SGD", "config": {}}, "dynamic": False, "initial_scale": 128.0}
        >>> _upgrade_loss_scale_config(fixed)["config"]["loss_scale_factor"]
        128.0
    """
    inner_config = config.get("inner_optimizer", config.get("optimizer"))
    if not isinstance(inner_config, dict):
        raise ValueError(f"a LossScaleOptimizer without an inner optimizer config (found {type(inner_config).__name__})")
    inner = upgrade_optimizer_config(inner_config)
    dynamic = config.get("dynamic", True)
    scale, growth = config.get("initial_scale", 2.0**15), config.get("dynamic_growth_steps", 2000)
    old = config.get("loss_scale")
    if isinstance(old, dict):
        kind, args = old.get("class_name"), old.get("config") or {}
        if kind == "FixedLossScale":
            dynamic, scale = False, args.get("loss_scale_value", scale)
        elif kind == "DynamicLossScale" and args.get("multiplier", 2) == 2:
            scale, growth = args.get("initial_loss_scale", scale), args.get("increment_period", growth)
        elif kind == "DynamicLossScale":
            raise ValueError(f"a dynamic loss scale with multiplier {args.get('multiplier')} (Keras 3 and tf.keras 2.4+ double and halve it)")
        else:
            raise ValueError(f"a loss scale tf.keras itself no longer reads ({kind})")
    if not dynamic:
        return dict(inner, config=dict(inner["config"], loss_scale_factor=scale))
    return {"module": "keras.optimizers", "class_name": "LossScaleOptimizer", "registered_name": None,
            "config": {"inner_optimizer": inner, "initial_scale": scale, "dynamic_growth_steps": growth}}


def slot_holder(optimizer):
    """The optimizer that keeps the slots and the learning rate (a LossScaleOptimizer's inner one)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def unscoped_name(weight_name: str, optimizer_class: str) -> str:
    """A LossScaleOptimizer's inner optimizer array named as a bare optimizer's ("<Optimizer>/...").

    tf.keras's legacy LossScaleOptimizer wrote them in its ``cond`` scope
    ("cond_1/Adam/iter:0"); LossScaleOptimizerV3 without the inner optimizer's name
    ("m/dense/kernel:0").

    Example:
        >>> unscoped_name("cond_1/Adam/dense/kernel/m:0", "Adam"), unscoped_name("m/dense/kernel:0", "Adam")
        ('Adam/dense/kernel/m:0', 'Adam/m/dense/kernel:0')
    """
    parts = weight_name.split("/")
    if optimizer_class in parts[:-1]:
        return "/".join(parts[parts.index(optimizer_class):])
    return f"{optimizer_class}/{weight_name}"


# A TensorFlow checkpoint of a tf.keras 2.11+ optimizer lists its state as "optimizer/_variables/N"
# in creation order: iterations first, then each optimizer's slots either per variable
# ("interleaved": m0, v0, m1, v1, ...) or per kind ("grouped": all velocities, then all momentums).
# The kinds are named as Keras 3 names them; only the kinds the optimizer has are present.
TF_KERAS_CHECKPOINT_SLOT_ORDER = {
    "Adam": ("interleaved", ("momentum", "velocity", "velocity_hat")),
    "AdamW": ("interleaved", ("momentum", "velocity", "velocity_hat")),
    "Nadam": ("interleaved", ("momentum", "velocity")),
    "Adamax": ("interleaved", ("momentum", "norm")),
    "Adadelta": ("interleaved", ("accumulated_grad", "accumulated_delta_var")),
    "SGD": ("interleaved", ("momentum",)),
    "RMSprop": ("grouped", ("velocity", "momentum", "average_gradient")),
    "Adagrad": ("interleaved", ("accumulator",)),
}


def checkpoint_slot_order(optimizer_class: str, kinds_present: list[str], variables: int) -> list[tuple[int, str]] | None:
    """For each saved slot after iterations, (trainable variable index, kind); None if the optimizer is unknown.

    Example:
        >>> checkpoint_slot_order("Adam", ["momentum", "velocity"], 2)
        [(0, 'momentum'), (0, 'velocity'), (1, 'momentum'), (1, 'velocity')]
    """
    if optimizer_class not in TF_KERAS_CHECKPOINT_SLOT_ORDER:
        return None
    layout, kinds = TF_KERAS_CHECKPOINT_SLOT_ORDER[optimizer_class]
    kinds = [k for k in kinds if k in kinds_present]
    if layout == "interleaved":
        return [(i, k) for i in range(variables) for k in kinds]
    return [(i, k) for k in kinds for i in range(variables)]


# Every slot kind the tables above name (Keras 3's names).
SLOT_KINDS = ("momentum", "velocity", "velocity_hat", "norm", "average_gradient", "accumulator",
              "accumulated_grad", "accumulated_delta_var")


# Keras 1 and standalone Keras 2 (before tf.keras) kept ``optimizer.weights`` as
# [iterations] + one list per kind below, each in the model's trainable-variable order
# ("blocked"). Keras 2.0 RMSprop/Adagrad/Adadelta had no iterations; Keras 2.1.3+ Adam
# always adds velocity_hat, shaped (1,) (nothing in it) unless amsgrad=True; Nadam keeps
# its momentum-schedule product (Keras 3's ``u_product``) right after iterations.
KERAS2_OPTIMIZER_WEIGHTS = {
    "Adam": ("momentum", "velocity", "velocity_hat"),
    "Nadam": ("momentum", "velocity"),
    "Adamax": ("momentum", "norm"),
    "SGD": ("momentum",),
    "RMSprop": ("velocity",),
    "Adagrad": ("accumulator",),
    "Adadelta": ("accumulated_grad", "accumulated_delta_var"),
}


def _base(name: str) -> str:
    return name.split(":")[0].split("/")[-1]


def slot_variable(optimizer, variable, kind: str):
    """Keras 3's slot of ``kind`` for ``variable`` (None when the optimizer has no such slot)."""
    wanted = f"{variable.path.replace('/', '_')}_{kind}"
    return next((v for v in optimizer.variables if v.name == wanted), None)


def keras2_optimizer_targets(optimizer, trainable: list, names: list[str], shapes: list[tuple]) -> tuple[list, list[str]]:
    """Match standalone Keras 1/2 optimizer arrays to Keras 3 variables by position and shape.

    Returns ``(targets, dropped)``: ``targets[i]`` is the variable for array ``i`` or None
    when it is to be skipped (an empty amsgrad slot); ``dropped`` names what does not map
    (then nothing should be restored).

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
        >>> optimizer = keras.optimizers.SGD(momentum=0.9)
        >>> optimizer.build(model.trainable_variables)
        >>> targets, dropped = keras2_optimizer_targets(optimizer, model.trainable_variables,
        ...     ["iterations:0", "Variable:0", "Variable_1:0"], [(), (3, 2), (2,)])
        >>> [t.name for t in targets], dropped
        (['iteration', 'm_d_kernel_momentum', 'm_d_bias_momentum'], [])
    """
    kinds = KERAS2_OPTIMIZER_WEIGHTS.get(type(optimizer).__name__)
    if kinds is None:
        return [], [f"{type(optimizer).__name__} (no table of its Keras 2 weights)"]
    targets: list = []
    position = 0
    if names and _base(names[0]) == "iterations":
        targets.append(optimizer.iterations)
        position = 1
    if type(optimizer).__name__ == "Nadam" and position < len(names) and _base(names[position]) == "m_schedule":
        targets.append(getattr(optimizer, "_u_product", None))
        position += 1
    rest = len(names) - position
    present = [k for k in kinds if trainable and slot_variable(optimizer, trainable[0], k) is not None]
    blocks = rest // len(trainable) if trainable and rest % len(trainable) == 0 else -1
    if blocks not in (len(present), len(present) + 1) or blocks > len(kinds):
        return [], [f"{rest} slot arrays for {len(trainable)} variables ({type(optimizer).__name__} keeps {len(present)} per variable)"]
    for kind in kinds[:blocks]:
        for variable in trainable:
            target = slot_variable(optimizer, variable, kind)
            if target is None and kind == "velocity_hat" and shapes[len(targets)] == (1,):
                target = None  # amsgrad=False: Keras 2 kept a placeholder of shape (1,)
            elif target is None:
                return [], [f"{names[len(targets)]} ({kind} of {variable.path})"]
            targets.append(target)
    dropped = [f"{n} {tuple(s)} vs {tuple(t.shape)}" for n, s, t in zip(names, shapes, targets)
               if t is not None and tuple(t.shape) != tuple(s)]
    return targets, dropped
