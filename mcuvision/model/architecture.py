"""ST EfficientNet LC v1 in Keras 3.

EfficientNet-B0 scheme scaled for STM32 (see shared/reference/st_facts.md): width 0.45,
depth 1.0, expansion 3 (stage 1 keeps 1), relu6 instead of swish, squeeze-and-excitation
whose excitation logits are clipped to [-4, 4] before the sigmoid so that int8 quantization
of that tensor keeps a useful range. Every convolution keeps its bias, as ST's model does,
which is what makes the parameter counts match the model card.

Input decision: the model takes RAW pixels 0..255 (float32 tensor named "image") and its
first layer is `Rescaling(1/255)`. Training, evaluation and the int8 TFLite model (uint8
input) therefore all feed the same raw pixels, and no pipeline stage can forget or double
the scaling. The Rescaling layer has no weights, so parameter counts are unaffected.

Dropout: ST's training scripts set every Dropout layer to the training dropout. Here the
`dropout` argument sets only the head Dropout; the drop-connect Dropouts before residual adds
are set separately by `drop_connect` (rate drop_connect * block_index / 16, as EfficientNet).
"""
from __future__ import annotations

import math
import numbers

import keras
from keras import layers

from mcuvision.model.layers import Clip  # also re-exported: importing this module registers the layer

# (expansion, kernel, first stride, base output channels, repeats) of EfficientNet-B0's
# seven stages; the base channels are scaled by `width`, the repeats by `depth`.
_STAGES = (
    (1, 3, 1, 16, 1),
    (None, 3, 2, 24, 2),
    (None, 5, 2, 40, 2),
    (None, 3, 2, 80, 3),
    (None, 5, 1, 112, 3),
    (None, 5, 2, 192, 4),
    (None, 3, 1, 320, 1),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
# EfficientNet divides drop_connect by the B0 block count (16) whatever the depth scaling.
_BASE_BLOCKS = 16
# Excitation logits are clipped to this range before the sigmoid (the card's quantization fix).
_SE_CLIP = 4.0


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by `width` and round to a multiple of `divisor`, as EfficientNet."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def _check_args(num_classes, res, dropout) -> None:
    """Reject bad configuration with a message that names the key, the value and what is allowed."""
    if isinstance(res, bool) or not isinstance(res, numbers.Integral) or res <= 0 or res % 32:
        raise ValueError(
            f"model.res={res!r} is not allowed: the input side must be a positive multiple "
            "of 32 (e.g. 128, 224)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(
            f"dataset.num_classes={num_classes!r} (the class folders found, when it is null) is not allowed: "
            "it must be an integer >= 2"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"train.dropout={dropout!r} is not allowed: it must satisfy 0 <= dropout < 1")


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, activation: bool = True):
    """Conv (with bias, as ST) -> BatchNorm -> optional relu6."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=True, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(6.0, name=f"{name}_relu6")(x)
    return x


def _squeeze_excite(x, in_channels: int, se_ratio: float, name: str):
    """SE whose bottleneck is sized from the block's INPUT channels, logits clipped to [-4, 4]."""
    expanded = x.shape[-1]
    squeezed = max(1, int(in_channels * se_ratio))
    # keepdims=True is ST's "pool then reshape to (1, 1, E)" in one layer; a Reshape would
    # convert to SHAPE/STRIDED_SLICE/PACK/RESHAPE per block because the batch is dynamic.
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Conv2D(squeezed, 1, use_bias=True, name=f"{name}_se_reduce")(s)
    s = layers.ReLU(6.0, name=f"{name}_se_relu6")(s)
    s = layers.Conv2D(expanded, 1, use_bias=True, name=f"{name}_se_expand")(s)
    s = Clip(-_SE_CLIP, _SE_CLIP, name=f"{name}_se_clip")(s)
    s = layers.Activation("sigmoid", name=f"{name}_se_sigmoid")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])


def _mbconv(x, out_channels: int, expansion: int, kernel: int, stride: int,
            se_ratio: float, drop_rate: float, name: str):
    in_channels = x.shape[-1]
    inputs = x
    if expansion != 1:
        x = _conv_bn(x, in_channels * expansion, 1, 1, name=f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=True, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_relu6")(x)
    if se_ratio > 0:
        x = _squeeze_excite(x, in_channels, se_ratio, name)
    x = _conv_bn(x, out_channels, 1, 1, name=f"{name}_project", activation=False)
    if stride == 1 and in_channels == out_channels:
        if drop_rate > 0:
            # Drop the whole residual branch per sample (stochastic depth).
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_model(num_classes: int, res: int, dropout: float = 0.2, width: float = 0.45,
                depth: float = 1.0, expansion: int = 3, se_ratio: float = 0.25,
                drop_connect: float = 0.2, any_side: bool = False) -> keras.Model:
    """Build ST EfficientNet LC v1 for `res` x `res` RGB images holding raw pixels 0..255
    (float32, NHWC); the output is (batch, num_classes) float32 softmax probabilities.

    `any_side=True` leaves the input's height and width open, for training at several sides
    (train.low_res); the layers and weights are the same, so `set_weights` copies them into a
    model built for `res` (what is saved and exported). Raises ValueError on a bad argument.
    """
    _check_args(num_classes, res, dropout)

    side = None if any_side else res
    inputs = keras.Input((side, side, 3), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = _conv_bn(x, round_filters(_STEM_FILTERS, width), 3, 2, name="stem")

    block_index = 0
    for stage, (exp, kernel, stride, base_out, repeats) in enumerate(_STAGES, start=1):
        out_channels = round_filters(base_out, width)
        for r in range(round_repeats(repeats, depth)):
            x = _mbconv(
                x, out_channels,
                expansion=expansion if exp is None else exp,
                kernel=kernel,
                stride=stride if r == 0 else 1,
                se_ratio=se_ratio,
                drop_rate=drop_connect * block_index / _BASE_BLOCKS,
                name=f"block{stage}{chr(ord('a') + r)}",
            )
            block_index += 1

    x = _conv_bn(x, round_filters(_HEAD_FILTERS, width), 1, 1, name="top")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    # float32 softmax even under a mixed-precision policy: float16 probabilities underflow.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="st_efficientnet_lc_v1")
