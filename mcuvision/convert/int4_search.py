"""Mixed int4/int8 weights for the QDQ ONNX model (the card's "Int8/Int4" row), searched as ST does.

Weight tensors are ranked largest first (ties by name). Starting from all of them in int4, a
binary search finds how few of the ranked tensors, taken from the top, must move back to int8 for
the accuracy on a held-out split to stay within `tolerance_points` of the int8 QDQ model's; an
optional greedy pass then tries the tensors still in int8 one at a time in int4, largest first,
keeping each switch that stays within tolerance. Activations stay int8 throughout.

Candidates are made by rewriting weight initializers of the int8 QDQ model (graph surgery), not by
re-running onnxruntime's quantizer: activation ranges do not depend on the weights' precision, so
one calibration serves every candidate, and a rewrite costs milliseconds instead of seconds. The
rewrite uses the same arithmetic as onnxruntime's quantizer (symmetric per-channel weights,
int32 biases at input scale x weight scale; int4 on onnxruntime's [-8, 7] grid) and proves it per
tensor first: recomputed in int8, a weight and its bias must come out bit-identical to the int8
model's, or that tensor stays int8. (tests/test_int4_search.py also checks the int4 result
against onnxruntime's quantizer given per-channel int4 overrides: identical initializers.)

int4 DequantizeLinear exists from ONNX opset 21, so the int8 model is first moved to opset 21 with
onnx's version converter, which rewrites the ops whose signature changed on the way (ReduceMean's
axes, ...), rather than just bumping the opset number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import ml_dtypes
import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from mcuvision.convert.onnx_graph import weights_bytes
from mcuvision.convert.quantization import preprocessed
from mcuvision.errors import PipelineError

INT4_OPSET = 21  # first opset whose QuantizeLinear/DequantizeLinear take int4
INT4_IR_VERSION = 10  # first IR version with the INT4 tensor type
WEIGHT_CONSUMERS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op -> weight input index
QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a quantized initializer


class SurgeryError(PipelineError, RuntimeError):
    """The int8 QDQ model is not laid out as the int4 rewrite expects; no mixed model is made."""


# ---------------------------------------------------------------------------------------------
# The search, independent of ONNX: int4 sets in, accuracies out.

@dataclass(frozen=True)
class Evaluation:
    step: str              # "search" (binary search) or "refine" (greedy pass)
    int8_tensors: int      # how many of the candidate tensors are int8 in this model
    int4_share_pct: float
    accuracy: float
    within_tolerance: bool
    tensor: str | None = None  # the tensor the refine step tried in int4


@dataclass(frozen=True)
class SearchOutcome:
    int4: tuple[str, ...]  # in rank order
    accuracy: float
    trace: tuple[Evaluation, ...]


def rank(sizes: Mapping[str, int]) -> list[str]:
    """Largest first; equal sizes by name, so the order never depends on graph order."""
    return sorted(sizes, key=lambda name: (-sizes[name], name))


def share_pct(names: Iterable[str], sizes: Mapping[str, int], total: int | None = None) -> float:
    """Percent of weight elements in `names`; `total` defaults to all of `sizes`."""
    total = sum(sizes.values()) if total is None else total
    return 100.0 * sum(sizes[n] for n in names) / total if total else 0.0


def search(sizes: Mapping[str, int], evaluate: Callable[[frozenset[str]], float], baseline: float,
           tolerance_points: float, max_evaluations: int, refine: bool = True, total: int | None = None,
           log: Callable[[str], None] = print) -> SearchOutcome:
    """Pick the int4 tensors among `sizes`; `evaluate` gives the accuracy (0..1) of a model with that
    int4 set; `total` is the weight count shares are out of, when some weights are not candidates.

    The all-int8 end is the int8 model itself (accuracy `baseline`) and is never evaluated, so
    every point the binary search keeps is known to be within tolerance, even when the budget of
    `max_evaluations` runs out mid-way.
    """
    ranked = rank(sizes)
    trace: list[Evaluation] = []

    def within(accuracy: float) -> bool:
        # A hair of slack so that an accuracy exactly at the limit is not lost to float rounding.
        return 100.0 * (baseline - accuracy) <= tolerance_points + 1e-9

    def measure(int4: Iterable[str], step: str, tensor: str | None = None) -> tuple[bool, float]:
        int4 = frozenset(int4)
        accuracy = float(evaluate(int4))
        ok = within(accuracy)
        share = share_pct(int4, sizes, total)
        trace.append(Evaluation(step, len(ranked) - len(int4), round(share, 4), accuracy, ok, tensor))
        log(f"w4w8: evaluation {len(trace)} ({step}, {len(ranked) - len(int4)} of {len(ranked)} tensors int8"
            f"{', trying ' + tensor if tensor else ''}): int4 {share:.1f}% of weights, "
            f"accuracy {accuracy:.4f} vs int8 {baseline:.4f} -> {'kept' if ok else 'too low'}")
        return ok, accuracy

    # lo: int8 count known too low (or untested, -1); hi: int8 count known within tolerance.
    lo, hi, best = -1, len(ranked), baseline
    while hi - lo > 1 and len(trace) < max_evaluations:
        mid = 0 if lo < 0 else (lo + hi) // 2  # all-int4 first, then halving
        ok, accuracy = measure(ranked[mid:], "search")
        if ok:
            hi, best = mid, accuracy
        else:
            lo = mid
    int4 = list(ranked[hi:])
    if refine:
        for name in ranked[:hi]:
            if len(trace) >= max_evaluations:
                break
            ok, accuracy = measure([*int4, name], "refine", name)
            if ok:
                int4.append(name)
                best = accuracy
    chosen = set(int4)
    return SearchOutcome(tuple(n for n in ranked if n in chosen), best, tuple(trace))


# ---------------------------------------------------------------------------------------------
# The rewrite: int8 QDQ model -> the same model with chosen weights in int4.

# Grid a scale spans, as onnxruntime's quantizer: int8 symmetric keeps -128 unused, int4 uses all 16.
SCALE_RANGE = {8: (-127, 127), 4: (-8, 7)}


def quantize_symmetric(weights: np.ndarray, axis: int | None, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric (zero point 0) quantization per channel along `axis` (None: per tensor).

    The same float32/float64 steps as onnxruntime's quantizer, so that 8 bits reproduce its int8
    weights bit for bit and 4 bits its int4 ones: scale = 2 * max|w| / 15 on the grid [-8, 7], so
    the largest positive weight clips by at most half a step while all 16 levels are used.
    """
    qmin, qmax = SCALE_RANGE[bits]
    weights = weights.astype(np.float32)
    reduce = tuple(i for i in range(weights.ndim) if i != axis) if axis is not None else None
    low = np.minimum(weights.min(axis=reduce), np.float32(0))
    high = np.maximum(weights.max(axis=reduce), np.float32(0))
    absmax = np.maximum(np.abs(low), np.abs(high)).astype(np.float64)
    scale = np.atleast_1d(2.0 * absmax / float(qmax - qmin))
    scale[scale < np.finfo(np.float32).tiny] = 1.0  # an all-zero channel: any scale, 1 as onnxruntime
    scale = scale.astype(np.float32)
    shape = [-1 if i == axis else 1 for i in range(weights.ndim)] if axis is not None else [1] * weights.ndim
    quantized = np.clip(np.round(weights / scale.reshape(shape)), -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return quantized, scale if axis is not None else scale.reshape(())


def quantize_bias(bias: np.ndarray, input_scale: np.ndarray, weight_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias at scale input_scale x weight_scale: the scale of the integer accumulator it is added to."""
    scale = (input_scale.astype(np.float32) * weight_scale.astype(np.float32)).astype(np.float32)
    info = np.iinfo(np.int32)
    quantized = np.clip(np.round(bias.astype(np.float64) / scale.astype(np.float64)), info.min, info.max)
    return quantized.astype(np.int32), scale.reshape(-1)


@dataclass
class _Slot:
    """One quantized weight of the int8 model: its float values and the initializers that hold it."""
    name: str
    weights: np.ndarray
    axis: int | None
    quantized: str
    scale: str
    zero_point: str
    input_scale: np.ndarray
    bias: np.ndarray | None = None
    bias_quantized: str | None = None
    bias_scale: str | None = None
    int4: list[onnx.TensorProto] = field(default_factory=list)  # replacement initializers, made once

    @property
    def size(self) -> int:
        return int(self.weights.size)


def prepared_float_weights(float_model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Float initializers of the graph onnxruntime quantized: its pre-quantization pass folds
    BatchNorm into the convolutions, so the weights behind the int8 model are not float.onnx's own."""
    model = preprocessed(float_model)
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer
            if init.data_type == onnx.TensorProto.FLOAT}


def to_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < opset:
        shapes = list(model.graph.value_info)
        model = version_converter.convert_version(model, opset)
        # The converter infers every intermediate shape into the file; keep only what was there.
        del model.graph.value_info[:]
        model.graph.value_info.extend(shapes)
    model.ir_version = max(model.ir_version, INT4_IR_VERSION)
    return model


class Int4Rewriter:
    """Makes copies of the int8 QDQ model (moved to opset 21) with any set of weights in int4."""

    def __init__(self, float_model: onnx.ModelProto, int8_model: onnx.ModelProto):
        self.base = to_opset(onnx.ModelProto.FromString(int8_model.SerializeToString()), INT4_OPSET)
        self.inits = {init.name: init for init in self.base.graph.initializer}
        found = self._find_slots(prepared_float_weights(float_model))
        # A weight whose int8 form this code cannot reproduce stays int8 rather than get an int4
        # form that onnxruntime would not have made (e.g. a scale widened for an int32 bias).
        self.skipped = sorted(slot.name for slot in found if not self._reproduces_int8(slot))
        self.slots = {slot.name: slot for slot in found if slot.name not in self.skipped}
        self.total = sum(slot.size for slot in found)
        if not self.slots:
            raise SurgeryError("no int8 weight of the QDQ model could be recomputed from the float model "
                               f"({len(found)} found): the int4 rewrite would not match onnxruntime's quantizer")
        for slot in self.slots.values():
            slot.int4 = self._int4_initializers(slot)

    @property
    def sizes(self) -> dict[str, int]:
        return {name: slot.size for name, slot in self.slots.items()}

    def model(self, int4: Iterable[str]) -> onnx.ModelProto:
        replacements = {t.name: t for name in int4 for t in self.slots[name].int4}
        model = onnx.ModelProto()
        model.CopyFrom(self.base)
        for init in model.graph.initializer:
            if init.name in replacements:
                init.CopyFrom(replacements[init.name])
        return model

    def _array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def _find_slots(self, floats: dict[str, np.ndarray]) -> list[_Slot]:
        graph = self.base.graph
        producer = {out: node for node in graph.node for out in node.output}
        uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        slots = []
        for node in graph.node:
            index = WEIGHT_CONSUMERS.get(node.op_type)
            if index is None or len(node.input) <= index:
                continue
            dq = producer.get(node.input[index])
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.inits:
                continue
            if self.inits[dq.input[0]].data_type != onnx.TensorProto.INT8:
                continue
            if any(uses.get(name, 0) != 1 for name in dq.input):
                # Shared initializers would change another op too; leave this weight in int8.
                continue
            slots.append(self._slot(node, dq, producer, floats))
        return slots

    def _slot(self, node: onnx.NodeProto, dq: onnx.NodeProto, producer: dict, floats: dict) -> _Slot:
        name = dq.input[0].removesuffix(QUANTIZED_SUFFIX)
        if name not in floats:
            raise SurgeryError(f"no float weights named {name!r} behind {dq.input[0]!r}: the int8 model was not "
                               "made from this float model by quantization.qdq_onnx")
        scale = self._array(dq.input[1])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) if scale.ndim else None
        if axis is not None and axis < 0:
            axis += floats[name].ndim
        activation = producer.get(node.input[0])
        if activation is None or activation.op_type != "DequantizeLinear":
            raise SurgeryError(f"the input of {node.name or node.op_type} is not dequantized: not a QDQ model")
        slot = _Slot(name, floats[name], axis, dq.input[0], dq.input[1], dq.input[2],
                     self._array(activation.input[1]))
        bias_dq = producer.get(node.input[2]) if node.op_type != "MatMul" and len(node.input) > 2 else None
        if bias_dq is not None and bias_dq.op_type == "DequantizeLinear":
            bias_name = bias_dq.input[0].removesuffix(QUANTIZED_SUFFIX)
            if bias_name not in floats:
                raise SurgeryError(f"no float bias named {bias_name!r} behind {bias_dq.input[0]!r}")
            slot.bias, slot.bias_quantized, slot.bias_scale = floats[bias_name], bias_dq.input[0], bias_dq.input[1]
        return slot

    def _reproduces_int8(self, slot: _Slot) -> bool:
        """Recomputed in int8, the weight and its bias equal the int8 model's, bit for bit."""
        quantized, scale = quantize_symmetric(slot.weights, slot.axis, 8)
        same = (np.array_equal(quantized, self._array(slot.quantized))
                and np.array_equal(scale, self._array(slot.scale)))
        if same and slot.bias is not None:
            bias, bias_scale = quantize_bias(slot.bias, slot.input_scale, scale)
            same = (np.array_equal(bias, self._array(slot.bias_quantized).reshape(-1))
                    and np.array_equal(bias_scale, self._array(slot.bias_scale)))
        return same

    def _int4_initializers(self, slot: _Slot) -> list[onnx.TensorProto]:
        quantized, scale = quantize_symmetric(slot.weights, slot.axis, 4)
        tensors = [numpy_helper.from_array(quantized.astype(ml_dtypes.int4), slot.quantized),
                   numpy_helper.from_array(scale, slot.scale),
                   numpy_helper.from_array(np.zeros(scale.shape, ml_dtypes.int4), slot.zero_point)]
        if slot.bias is not None:
            bias, bias_scale = quantize_bias(slot.bias, slot.input_scale, scale)
            tensors += [numpy_helper.from_array(bias.reshape(slot.bias.shape), slot.bias_quantized),
                        numpy_helper.from_array(bias_scale, slot.bias_scale)]
        return tensors


# ---------------------------------------------------------------------------------------------

@dataclass
class MixedPrecision:
    """The mixed model and how it was found.

    Shares are in percent of weight ELEMENTS of the quantized weight tensors only (the Conv, Gemm
    and MatMul weights the int8 model stores in int8); int32 biases, scales and zero points count
    in neither. `weights_bytes` counts every initializer as stored, int4 packed two per byte.
    """
    model: onnx.ModelProto
    int4_tensors: tuple[str, ...]
    int4_share_pct: float
    int8_share_pct: float
    weights_bytes: int
    int8_weights_bytes: int
    accuracy: float
    int8_accuracy: float
    evaluations: int
    trace: list[dict]
    opset: int = INT4_OPSET


def w4w8(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, accuracy: Callable[[onnx.ModelProto], float],
         tolerance_points: float, max_evaluations: int, refine: bool = True,
         log: Callable[[str], None] = print, int8_accuracy: float | None = None) -> MixedPrecision:
    """Search the int4 weights of `int8_model`; `accuracy(model)` scores a model on the held-out split.

    `float_model` must be the float ONNX model `int8_model` was quantized from (same calibration);
    `evaluations` counts the candidates scored, not the one scoring of the int8 model, which is
    skipped when the caller already has `int8_accuracy` on the same split.
    """
    rewriter = Int4Rewriter(float_model, int8_model)
    sizes = rewriter.sizes
    if rewriter.skipped:
        log(f"w4w8: {len(rewriter.skipped)} weight tensors stay int8 (int8 form not reproducible): "
            f"{', '.join(rewriter.skipped)}")
    int8_accuracy = float(accuracy(int8_model) if int8_accuracy is None else int8_accuracy)
    log(f"w4w8: {len(sizes)} weight tensors, {rewriter.total} weights; int8 QDQ accuracy {int8_accuracy:.4f}")
    outcome = search(sizes, lambda int4: accuracy(rewriter.model(int4)), int8_accuracy, tolerance_points,
                     max_evaluations, refine, rewriter.total, log)
    model = rewriter.model(outcome.int4)
    int4_share = share_pct(outcome.int4, sizes, rewriter.total)
    return MixedPrecision(model=model, int4_tensors=outcome.int4, int4_share_pct=round(int4_share, 4),
                          int8_share_pct=round(100.0 - int4_share, 4), weights_bytes=weights_bytes(model),
                          int8_weights_bytes=weights_bytes(int8_model), accuracy=outcome.accuracy,
                          int8_accuracy=int8_accuracy, evaluations=len(outcome.trace),
                          trace=[vars(e) for e in outcome.trace])
