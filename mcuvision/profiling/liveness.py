"""The whole-tensor peak for this op order: the most activation bytes live at once.

Read from the flatbuffer, for the operator order the model is stored in (the order every
TFLite runtime executes it). A non-constant tensor is live from the op that produces it (graph
inputs: from the start) to the last op that reads it (graph outputs: to the end); an op's inputs
and outputs are live together, each as one whole buffer. It is the floor for a planner that gives
every tensor its own whole buffer, as TFLite Micro's does, whose arena head can only equal or
exceed it. It bounds no other runtime: ST Edge AI Core can place an op's output over input it has
already consumed and fold PAD or QUANTIZE away, so it can need less (its published activation RAM
is about half this peak on ST's MobileNets, less than whole buffers allow), and its scratch
buffers can make it need more (ST EfficientNet LC v1 at 128: 181 KiB against a 128 KiB peak).
`aligned_bytes` rounds each tensor up to TFLite Micro's 16-byte buffer alignment.
"""
from __future__ import annotations

import math

from mcuvision.convert import tflite_graph
from mcuvision.convert.tflite_graph import schema

ALIGNMENT = 16  # TFLite Micro's MicroArenaBufferAlignment()
_ITEM_BYTES = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4,
               "int64": 8, "float64": 8}


def _is_constant(model: schema.ModelT, tensor: schema.TensorT) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def tensor_bytes(tensor: schema.TensorT) -> int:
    info = tflite_graph._tensor_info(tensor)
    return math.prod(info.shape) * _ITEM_BYTES[info.dtype]


def live_intervals(model: schema.ModelT) -> dict[int, tuple[int, int, int]]:
    """Activation tensor index -> (first op, last op, bytes)."""
    graph = model.subgraphs[0]
    last_op = len(graph.operators) - 1
    first: dict[int, int] = {i: 0 for i in graph.inputs}
    last: dict[int, int] = {i: last_op for i in graph.outputs}
    for index, op in enumerate(graph.operators):
        for t in op.outputs:
            if t >= 0:
                first.setdefault(t, index)
        for t in op.inputs:
            if t >= 0:
                last[t] = max(last.get(t, index), index)
    out = {}
    for t in set(first) | set(last):
        tensor = graph.tensors[t]
        if _is_constant(model, tensor):
            continue
        start, end = first.get(t, 0), last.get(t, first.get(t, 0))
        out[t] = (start, max(start, end), tensor_bytes(tensor))
    return out


def peak(model: schema.ModelT) -> dict:
    """Peak live bytes over the op order, exact and 16-byte aligned, and where it happens."""
    graph = model.subgraphs[0]
    intervals = live_intervals(model)
    names = tflite_graph.operator_names(model)
    best = {"bytes": -1}
    for op in range(len(graph.operators)):
        live = [t for t, (a, b, _) in intervals.items() if a <= op <= b]
        exact = sum(intervals[t][2] for t in live)
        if exact > best["bytes"]:
            best = {"bytes": exact, "op_index": op, "op": names[op],
                    "aligned_bytes": sum(-(-intervals[t][2] // ALIGNMENT) * ALIGNMENT for t in live),
                    "live_tensors": [tflite_graph._tensor_info(graph.tensors[t]).name for t in sorted(live)]}
    aligned = max(sum(-(-b // ALIGNMENT) * ALIGNMENT for t, (a, e, b) in intervals.items() if a <= op <= e)
                  for op in range(len(graph.operators)))
    return {"peak_bytes": best["bytes"], "peak_aligned_bytes": aligned, "peak_op_index": best["op_index"],
            "peak_op": best["op"], "peak_live_tensors": best["live_tensors"],
            "activation_tensors": len(intervals), "alignment": ALIGNMENT}
