"""Multiply-accumulate count of a Keras model, the figure ST's model cards quote as MACC.

Counts the layers that dominate inference cost:
- conv: out_h * out_w * out_c * k_h * k_w * in_c / groups (includes the SE 1x1 convs);
- depthwise: out_h * out_w * channels * depth_multiplier * k_h * k_w;
- dense: in * out.
"other" is an estimate of the elementwise work outside that figure, one operation per element
for Rescaling, Multiply (SE excitation), Add (residuals) and global average pooling (input
elements summed). BatchNorm folds into the preceding conv and activations are comparisons, so
both count 0. `total` leaves "other" out, like ST's conv/depthwise/dense figure.
"""
from __future__ import annotations

import math

import keras


def _layer_macc(layer: keras.layers.Layer) -> tuple[str, int]:
    # Batch dimension is dropped from the symbolic shapes; the count is per image.
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k_h, k_w = layer.kernel_size
        out_h, out_w, out_c = layer.output.shape[1:]
        return "depthwise", out_h * out_w * out_c * k_h * k_w
    if isinstance(layer, keras.layers.Conv2D):
        k_h, k_w = layer.kernel_size
        in_c = layer.input.shape[-1]
        out_h, out_w, out_c = layer.output.shape[1:]
        return "conv", out_h * out_w * out_c * k_h * k_w * in_c // layer.groups
    if isinstance(layer, keras.layers.Dense):
        in_features = layer.input.shape[-1]
        # Leading non-batch dimensions (if any) each apply the Dense once.
        positions = math.prod(layer.output.shape[1:-1])
        return "dense", positions * in_features * layer.units
    if isinstance(layer, (keras.layers.Rescaling, keras.layers.Multiply, keras.layers.Add)):
        return "other", math.prod(layer.output.shape[1:])
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return "other", math.prod(layer.input.shape[1:])
    return "other", 0


def count_macc(model: keras.Model) -> dict:
    """MACC per layer and by kind; `total` is conv + depthwise + dense for one image."""
    per_layer = []
    by_kind = {"conv": 0, "depthwise": 0, "dense": 0, "other": 0}
    for layer in model.layers:
        kind, macc = _layer_macc(layer)
        by_kind[kind] += macc
        per_layer.append({"name": layer.name, "kind": kind, "macc": int(macc)})
    total = by_kind["conv"] + by_kind["depthwise"] + by_kind["dense"]
    return {"total": int(total), "by_kind": by_kind, "per_layer": per_layer}
