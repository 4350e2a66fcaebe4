"""MACC per layer of a .tflite model, read from its tensor shapes.

Same conventions as `mcuvision.model.keras_macc` (the Keras count), so the two agree on a converted model:
- CONV_2D: out_h * out_w * out_c * k_h * k_w * in_c (filter OHWI; in_c is per group);
- DEPTHWISE_CONV_2D: out_h * out_w * out_c * k_h * k_w (filter 1HWC);
- FULLY_CONNECTED: rows * in * out (filter [out, in]).
`total` is conv + depthwise + dense, the figure ST quotes as MACC. Every other op is counted
as its own kind (ADD, MUL, MEAN, LOGISTIC, MINIMUM, MAXIMUM, QUANTIZE, ...), one operation per
output element, except MEAN (global average pool), which sums its input elements. These are
reported beside the total, never inside it.
"""
from __future__ import annotations

import math

from mcuvision.convert import tflite_graph
from mcuvision.convert.tflite_graph import schema

MAIN_KINDS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "dense"}


def _shape(graph, index: int) -> tuple[int, ...]:
    tensor = graph.tensors[index]
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))


def op_macc(name: str, graph, op) -> int:
    out = _shape(graph, op.outputs[0])
    if name == "CONV_2D":
        o, kh, kw, i = _shape(graph, op.inputs[1])
        return math.prod(out[:-1]) * out[-1] * kh * kw * i
    if name == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = _shape(graph, op.inputs[1])
        return math.prod(out) * kh * kw
    if name == "FULLY_CONNECTED":
        units, features = _shape(graph, op.inputs[1])
        return math.prod(out) // units * features * units
    if name == "MEAN":
        return math.prod(_shape(graph, op.inputs[0]))
    return math.prod(out)


def count(model: schema.ModelT) -> dict:
    """{"total", "by_kind", "per_layer": [{"index", "op", "kind", "output", "macc"}]} for one image."""
    graph = model.subgraphs[0]
    per_layer, by_kind = [], {"conv": 0, "depthwise": 0, "dense": 0}
    for index, (name, op) in enumerate(zip(tflite_graph.operator_names(model), graph.operators)):
        kind = MAIN_KINDS.get(name, name.lower())
        macc = int(op_macc(name, graph, op))
        by_kind[kind] = by_kind.get(kind, 0) + macc
        per_layer.append({"index": index, "op": name, "kind": kind,
                          "output": tflite_graph._tensor_info(graph.tensors[op.outputs[0]]).name, "macc": macc})
    total = by_kind["conv"] + by_kind["depthwise"] + by_kind["dense"]
    other = sum(v for k, v in by_kind.items() if k not in ("conv", "depthwise", "dense"))
    return {"total": total, "other": other, "by_kind": by_kind, "per_layer": per_layer}
