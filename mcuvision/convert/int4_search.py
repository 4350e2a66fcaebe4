"""Mixed int4/int8 weights for the QDQ ONNX model (the card's "Int8/Int4" row).

The search, in three passes, every one scored on validation images (which the model never trained
on) against the int8 QDQ model's own outputs:

1. Sensitivity: each weight tensor alone in int4, the KL divergence of the outputs from the int8
   model's, on a few views. Candidates are ordered by that damage per weight element, least first
   (what a knapsack that buys int4 share with output damage would take first).
2. Search: a binary search on how long a prefix of that order can go int4 while the whole model's
   risk stays within one budget, `tolerance_points`. The risk is the share of search views (each
   image as is and mirrored) that the int8 model classifies right and the candidate wrong, in top-1
   points: lucky gains elsewhere do not pay for it, so it grows with the damage instead of
   wandering around zero as a top-1 difference does (the search that greedily accepted 32 top-1
   differences within tolerance kept 80% int4 at -1.0 point on its images and lost 4.0 on a test
   split). One family of nested candidates, one budget for the whole model: no step can pile damage
   on damage that each step alone would not show.
3. Check: the chosen model's top-1 drop against int8 on validation images the search never saw.
   Beyond the tolerance, the search steps back to its next smaller accepted prefix and checks
   again; the record keeps what the search promised and what the check then showed.

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
# The search, independent of ONNX: int4 sets in, risks out.

@dataclass(frozen=True)
class Evaluation:
    step: str              # "search" (binary search) or "check" (images the search never saw)
    int4_tensors: int      # how many of the candidate tensors are int4 in this model
    int4_share_pct: float
    risk_points: float     # search: lost_points on the search views; check: top-1 drop on the check images
    within_tolerance: bool


@dataclass(frozen=True)
class SearchOutcome:
    int4: tuple[str, ...]  # a prefix of the order searched
    risk_points: float     # lost_points of that model on the search views (0 for the int8 model)
    trace: tuple[Evaluation, ...]


def order(sizes: Mapping[str, int], sensitivity: Mapping[str, float]) -> list[str]:
    """Candidates by output damage per weight element (`sensitivity[name] / sizes[name]`), least first;
    a damage at or below zero (the KL divergence of a change too small to see) counts as zero, and
    ties go largest first, then by name, so that the order never depends on graph order."""
    return sorted(sizes, key=lambda n: (max(sensitivity[n], 0.0) / sizes[n], -sizes[n], n))


def share_pct(names: Iterable[str], sizes: Mapping[str, int], total: int | None = None) -> float:
    """Percent of weight elements in `names`; `total` defaults to all of `sizes`."""
    total = sum(sizes.values()) if total is None else total
    return 100.0 * sum(sizes[n] for n in names) / total if total else 0.0


def lost_points(int8_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> float:
    """Percent of images (float (n, classes) probabilities, int labels (n,)) that the int8 model
    classifies right and the candidate wrong: an upper bound on the candidate's top-1 drop that a
    gain elsewhere cannot offset. 0 for no image."""
    right = int8_probs.argmax(axis=1) == labels
    return 100.0 * float(np.mean(right & (probs.argmax(axis=1) != labels))) if len(labels) else 0.0


def drop_points(int8_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of the int8 model minus the candidate's, in points (positive: the candidate is worse)."""
    if not len(labels):
        return 0.0
    return 100.0 * float(np.mean(int8_probs.argmax(axis=1) == labels) - np.mean(probs.argmax(axis=1) == labels))


def kl_divergence(reference: np.ndarray, probs: np.ndarray) -> float:
    """Mean KL(reference || probs) over images, in nats; probabilities clipped at 1e-7 (an int8 output
    of exactly 0 would make it infinite)."""
    p, q = np.clip(reference, 1e-7, 1.0), np.clip(probs, 1e-7, 1.0)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def search(ranked: list[str], sizes: Mapping[str, int], risk: Callable[[frozenset[str]], float],
           tolerance_points: float, max_evaluations: int, total: int | None = None,
           log: Callable[[str], None] = print) -> SearchOutcome:
    """The longest prefix of `ranked` whose `risk` (points, e.g. lost_points) stays within
    `tolerance_points`, by binary search over the prefix length, assuming the risk grows with it.

    The empty prefix is the int8 model itself (risk 0) and is never evaluated, so every prefix the
    search keeps is known to be within tolerance, even when `max_evaluations` runs out mid-way.
    `total` is the weight count shares are out of, when some weights are not candidates.
    """
    trace: list[Evaluation] = []
    lo, hi, kept = 0, len(ranked) + 1, 0.0  # lo: longest prefix known within; hi: shortest known over
    while hi - lo > 1 and len(trace) < max_evaluations:
        k = len(ranked) if hi == len(ranked) + 1 else (lo + hi) // 2  # all-int4 first, then halving
        points = float(risk(frozenset(ranked[:k])))
        ok = points <= tolerance_points + 1e-9  # a hair of slack: a risk exactly at the limit is kept
        share = share_pct(ranked[:k], sizes, total)
        trace.append(Evaluation("search", k, round(share, 4), round(points, 4), ok))
        log(f"w4w8: evaluation {len(trace)} ({k} of {len(ranked)} tensors int4, {share:.1f}% of weights): "
            f"{points:.2f} points lost against int8 (budget {tolerance_points:g}) -> {'kept' if ok else 'too many'}")
        if ok:
            lo, kept = k, points
        else:
            hi = k
    return SearchOutcome(tuple(ranked[:lo]), kept, tuple(trace))


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

@dataclass(frozen=True)
class Scored:
    """Images the int8 QDQ model was run on: uint8 (n, H, W, 3) pixels, int labels (n,) and its float
    probabilities (n, classes)."""
    images: np.ndarray
    labels: np.ndarray
    int8_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int) -> "Scored":
        """`count` of the images, evenly spread (all when fewer), so that a subset keeps every class."""
        if count >= len(self):
            return self
        chosen = np.linspace(0, len(self) - 1, count).round().astype(int)
        return Scored(self.images[chosen], self.labels[chosen], self.int8_probs[chosen])


@dataclass
class MixedPrecision:
    """The mixed model and how it was found.

    Shares are in percent of weight ELEMENTS of the quantized weight tensors only (the Conv, Gemm
    and MatMul weights the int8 model stores in int8); int32 biases, scales and zero points count
    in neither. `weights_bytes` counts every initializer as stored, int4 packed two per byte.
    `search_lost_points`: what the search promised (lost_points on its views, within the tolerance);
    `check_drop_points`: the top-1 drop against int8 on the check images, which the search never saw.
    """
    model: onnx.ModelProto
    int4_tensors: tuple[str, ...]
    int4_share_pct: float
    int8_share_pct: float
    weights_bytes: int
    int8_weights_bytes: int
    search_lost_points: float
    check_drop_points: float
    check_int8_top1: float
    check_top1: float
    stepped_back: int              # accepted prefixes the check refused before the one kept
    evaluations: int
    trace: list[dict]
    sensitivity: dict[str, float]  # weight tensor -> KL divergence (nats) with it alone in int4
    opset: int = INT4_OPSET


def _top1(probs: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else 0.0


def w4w8(float_model: onnx.ModelProto, int8_model: onnx.ModelProto,
         predict: Callable[[onnx.ModelProto, np.ndarray], np.ndarray], searched: Scored, check: Scored,
         tolerance_points: float, max_evaluations: int, sensitivity_images: int,
         log: Callable[[str], None] = print) -> MixedPrecision:
    """Search the int4 weights of `int8_model` (see the module's docstring for the three passes).

    `float_model` must be the float ONNX model `int8_model` was quantized from (same calibration);
    `predict(model, images)` gives a model's probabilities; `searched` holds the search views,
    `check` the images kept out of the search, both with the int8 model's outputs already made.
    `evaluations` counts the models the search and the check scored, not the sensitivity pass (one
    model per weight tensor, on `sensitivity_images` of the search views).
    Raises SurgeryError when no weight of the int8 model can be rewritten.
    """
    rewriter = Int4Rewriter(float_model, int8_model)
    sizes = rewriter.sizes
    if rewriter.skipped:
        log(f"w4w8: {len(rewriter.skipped)} weight tensors stay int8 (int8 form not reproducible): "
            f"{', '.join(rewriter.skipped)}")
    probe = searched.head(sensitivity_images)
    log(f"w4w8: sensitivity of {len(sizes)} weight tensors ({rewriter.total} weights), each alone in int4, "
        f"on {len(probe)} views")
    sensitivity = {name: round(kl_divergence(probe.int8_probs, predict(rewriter.model([name]), probe.images)), 8)
                   for name in sorted(sizes)}
    ranked = order(sizes, sensitivity)

    def lost(int4: frozenset[str]) -> float:
        return lost_points(searched.int8_probs, predict(rewriter.model(int4), searched.images), searched.labels)

    outcome = search(ranked, sizes, lost, tolerance_points, max_evaluations, rewriter.total, log)
    trace = [vars(e) for e in outcome.trace]
    # The check: the longest accepted prefix first, then each shorter accepted one, until one holds.
    accepted = sorted({e.int4_tensors: e.risk_points for e in outcome.trace if e.within_tolerance}.items(),
                      reverse=True)
    int8_top1 = _top1(check.int8_probs, check.labels)
    chosen, top1 = (0, 0.0), int8_top1  # the int8 model when no accepted prefix holds
    for k, promised in accepted:
        top1 = _top1(predict(rewriter.model(ranked[:k]), check.images), check.labels)
        ok = int8_top1 - top1 <= tolerance_points + 1e-9
        trace.append(vars(Evaluation("check", k, round(share_pct(ranked[:k], sizes, rewriter.total), 4),
                                     round(int8_top1 - top1, 4), ok)))
        log(f"w4w8: check on {len(check)} validation images the search never saw ({k} tensors int4): top-1 "
            f"{top1:.2f}% vs int8 {int8_top1:.2f}% -> {'holds' if ok else 'beyond tolerance, one step back'}")
        if ok:
            chosen = (k, promised)
            break
    else:
        top1 = int8_top1
    int4 = ranked[:chosen[0]]
    stepped_back = sum(1 for e in trace if e["step"] == "check" and not e["within_tolerance"])
    model = rewriter.model(int4)
    int4_share = share_pct(int4, sizes, rewriter.total)
    return MixedPrecision(model=model, int4_tensors=tuple(int4), int4_share_pct=round(int4_share, 4),
                          int8_share_pct=round(100.0 - int4_share, 4), weights_bytes=weights_bytes(model),
                          int8_weights_bytes=weights_bytes(int8_model), search_lost_points=round(chosen[1], 4),
                          check_drop_points=round(int8_top1 - top1, 4), check_int8_top1=round(int8_top1, 4),
                          check_top1=round(top1, 4), stepped_back=stepped_back, evaluations=len(trace),
                          trace=trace, sensitivity=sensitivity)
