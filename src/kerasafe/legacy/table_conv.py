"""Convolution and pooling layers: the Keras 2 -> Keras 3 table.

tf.keras 2 wrote a few arguments Keras 3's convolutions do not take: ``conv_op``
(an internal hook, always None in a config), ``groups`` on the transposed,
separable and depthwise convolutions (always 1 there: tf.keras refused others),
and the separable convolution's unused ``kernel_*`` arguments (its kernels have
their own ``depthwise_*``/``pointwise_*`` ones). LocallyConnected layers have no
Keras 3 class and are rebuilt by kerasafe's stand-in with the same weights.
"""

from __future__ import annotations

from .rules import Replacement, Rule, keras_object

_CONV = Rule(neutral={"conv_op": (None,)})
_ONE_GROUP = Rule(neutral={"conv_op": (None,), "groups": (1,)})
# tf.keras named a depthwise convolution's kernel attribute depthwise_kernel; Keras 3 calls it kernel.
_DEPTHWISE = Rule(neutral={"conv_op": (None,), "groups": (1,)}, checkpoint_names={"depthwise_kernel": "kernel"})
# SeparableConv passed these to its base class, which never used them for a separable kernel.
_SEPARABLE = Rule(neutral={"conv_op": (None,), "groups": (1,)}, ignored=("kernel_initializer", "kernel_regularizer", "kernel_constraint"))
_POOL = Rule(neutral={"pool_function": (None,)})


def _average_pooling(rank: int):
    def rewrite(config: dict, name: str) -> dict | Replacement:
        if str(config.get("padding", "valid")).lower() != "same":
            return config
        # Keras 3 on PyTorch counts the zeros of uneven "same" padding in the average: kerasafe's stand-in does not.
        keep = ("name", "trainable", "dtype", "pool_size", "strides", "data_format")
        return Replacement(keras_object(f"kerasafe>AveragePooling{rank}DSame", {k: v for k, v in config.items() if k in keep}))
    return Rule(neutral={"pool_function": (None,)}, rewrite=rewrite)

RULES = {
    **{name: _CONV for name in ("Conv1D", "Conv2D", "Conv3D")},
    **{name: _ONE_GROUP for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")},
    "DepthwiseConv1D": _DEPTHWISE,
    "DepthwiseConv2D": _DEPTHWISE,
    **{name: _SEPARABLE for name in ("SeparableConv1D", "SeparableConv2D")},
    **{name: _POOL for name in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")},
    **{f"AveragePooling{rank}D": _average_pooling(rank) for rank in (1, 2, 3)},
    "LocallyConnected1D": Rule(keras3_class="kerasafe>LocallyConnected1D"),
    "LocallyConnected2D": Rule(keras3_class="kerasafe>LocallyConnected2D"),
}
