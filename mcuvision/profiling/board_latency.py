"""Board latency from the work a model does, per kind of operator, fitted on published times.

Why per kind: one cycles-per-MACC coefficient fitted on ST EfficientNet LC v1 overestimated ST's
other int8 models on the STM32H747I-DISCO by +32% to +123%: a depthwise MACC costs
several times a pointwise one, and small operators (squeeze-and-excitation) cost time that the
MACC total does not count.

`work(graph)` counts, for one image, in these units:
- conv: MACC of CONV_2D with a kernel larger than 1x1;
- pointwise: MACC of 1x1 CONV_2D and of FULLY_CONNECTED (a dense layer is a 1x1 conv over one
  pixel; no calibration model has enough dense work to fit it apart, at most 0.03% of its MACC);
- depthwise: MACC of DEPTHWISE_CONV_2D;
- elementwise: elements of every other operator that computes (ADD, MUL, MEAN's input, pooling,
  activations, QUANTIZE, ...), one per element as in `macc.op_macc`. PAD and CONCATENATION are
  left out: they only move data, which ST's runtime folds into the next conv or does in place;
- ops: operators that run (all but RESHAPE-like ones, which move nothing): a cost per layer call.

Time: t_ms = sum_k c_k * work_k / (clock_MHz * 1000), c_k in cycles per unit (MACC, element, op).
`fit` is non-negative least squares (scipy.optimize.nnls) on RELATIVE error, so a 20 ms and a
650 ms published time weigh the same. `leave_one_out` predicts each point from a fit on the
others: that error, not the residual on the fitted points, is what the report prints.

A board may be fitted on fewer kinds (its entry's "kinds"), including DERIVED ones: the
STM32MP157F-DK2 (TensorFlow Lite with XNNPACK on Cortex-A7) on "gemm" (conv + pointwise) and
depthwise MACC.

The fitted coefficients, the work counted on each calibration model, the published times, and ST's
other published times used only as checks ("checks") live in board_latency.json beside this file
(numbers only; ST's models are not in the project);
`python benchmarks/fit_latency.py --zoo ../shared/reference/st_zoo_models --write` refits them.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from mcuvision.convert import tflite_graph
from mcuvision.profiling import macc

KINDS = ("conv", "pointwise", "depthwise", "elementwise", "ops")
UNITS = {"conv": "MACC", "pointwise": "MACC", "depthwise": "MACC", "elementwise": "element", "ops": "op",
         "gemm": "MACC"}
# Kinds made of others: a board whose runtime runs kxk and 1x1 convolutions with one kernel (XNNPACK's
# indirect GEMM on a Cortex-A) is fitted on their sum.
DERIVED = {"gemm": ("conv", "pointwise")}
DATA = Path(__file__).with_name("board_latency.json")
# Operators that move no data (views of a tensor, or shape arithmetic on a few integers).
_FREE = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "STRIDED_SLICE", "PACK"}
# Operators that only move data: ST's runtime folds a PAD into the following conv and writes
# the inputs of a CONCATENATION in place (their elements are not counted; the op call is).
_MOVES = {"PAD", "PADV2", "CONCATENATION"}


def work(model) -> dict[str, int]:
    """Work per kind (see the module docstring) of a .tflite graph (`tflite_graph.load`), one image.

    Returns {kind: count} for every kind in KINDS; counts are MACC, elements or operators.
    """
    graph = model.subgraphs[0]
    out = dict.fromkeys(KINDS, 0)
    for name, op in zip(tflite_graph.operator_names(model), graph.operators):
        if name in _FREE:
            continue
        out["ops"] += 1
        count = int(macc.op_macc(name, graph, op))
        if name == "CONV_2D":
            _, kh, kw, _ = macc._shape(graph, op.inputs[1])
            out["pointwise" if kh * kw == 1 else "conv"] += count
        elif name == "FULLY_CONNECTED":
            out["pointwise"] += count
        elif name == "DEPTHWISE_CONV_2D":
            out["depthwise"] += count
        elif name not in _MOVES:
            out["elementwise"] += count
    return out


def activation_traffic(model) -> int:
    """Bytes of activation tensors read and written by the operators that run, one int8 image.

    Sum over every operator but the RESHAPE-like ones of the sizes (elements = bytes at int8) of its
    non-constant inputs and its outputs: the traffic that goes to external RAM when the activation
    buffer does not fit internal RAM (`external_memory`).
    """
    graph = model.subgraphs[0]
    constant = {i for i, t in enumerate(graph.tensors)
                if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)}
    total = 0
    for name, op in zip(tflite_graph.operator_names(model), graph.operators):
        if name in _FREE:
            continue
        for index in [*op.inputs, *op.outputs]:
            if index >= 0 and index not in constant:
                total += int(np.prod(macc._shape(graph, index), dtype=np.int64))
    return total


def _count(row: dict, kind: str) -> float:
    return float(sum(row[k] for k in DERIVED[kind]) if kind in DERIVED else row[kind])


def as_matrix(rows: list[dict], kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """Work dicts -> array (n_points, n_kinds) in `kinds` order (a DERIVED kind is the sum of its parts).

    Raises KeyError naming a kind missing from a row.
    """
    return np.array([[_count(r, k) for k in kinds] for r in rows], dtype=np.float64).reshape(len(rows), len(kinds))


def _check(work_rows: np.ndarray, published_ms: np.ndarray, clock_mhz: float) -> None:
    if work_rows.ndim != 2 or published_ms.shape != (work_rows.shape[0],):
        raise ValueError(f"work is {work_rows.shape}, published times {published_ms.shape}: "
                         "need (n_points, n_kinds) and (n_points,)")
    if work_rows.shape[0] < work_rows.shape[1]:
        raise ValueError(f"{work_rows.shape[0]} published times cannot fit {work_rows.shape[1]} coefficients")
    if np.any(published_ms <= 0) or np.any(work_rows < 0) or clock_mhz <= 0:
        raise ValueError("published times and the clock must be positive, work counts non-negative")


def fit(work_rows: np.ndarray, published_ms: np.ndarray, clock_mhz: float) -> np.ndarray:
    """Cycles per unit for each kind (array (n_kinds,), all >= 0) from published times.

    work_rows: (n_points, n_kinds) work counts; published_ms: (n_points,) times in ms;
    clock_mhz: the core clock the times were taken at. Minimises sum_i (t_model_i / t_i - 1)^2
    with scipy.optimize.nnls. A kind with no work in any point gets 0. Raises ValueError on
    mismatched shapes, fewer points than kinds, or non-positive times.
    """
    from scipy.optimize import nnls

    work_rows, published_ms = np.asarray(work_rows, np.float64), np.asarray(published_ms, np.float64)
    _check(work_rows, published_ms, clock_mhz)
    cycles = published_ms * clock_mhz * 1000.0
    scale = work_rows.max(axis=0)
    scale[scale == 0] = 1.0  # an unused kind stays at 0 without a division by zero
    solution, _ = nnls(work_rows / scale / cycles[:, None], np.ones(len(cycles)))
    return solution / scale


def predict_ms(cycles_per_unit: np.ndarray, work_rows: np.ndarray, clock_mhz: float) -> np.ndarray:
    """Estimated ms: work (n_kinds,) or (n_points, n_kinds) times cycles per unit, at clock_mhz."""
    return np.asarray(work_rows, np.float64) @ np.asarray(cycles_per_unit, np.float64) / (clock_mhz * 1000.0)


def leave_one_out(work_rows: np.ndarray, published_ms: np.ndarray, clock_mhz: float,
                  groups: list | None = None) -> np.ndarray:
    """Signed error in % of each point predicted by a fit on all the other points, shape (n_points,).

    (predicted - published) / published * 100. With `groups` (one label per point, e.g. the
    architecture), every point of the held-out point's group is left out with it: the error on
    an architecture the fit has not seen at any resolution. Raises ValueError as `fit` does when
    the points left are fewer than the kinds.
    """
    work_rows, published_ms = np.asarray(work_rows, np.float64), np.asarray(published_ms, np.float64)
    labels = np.asarray(groups if groups is not None else np.arange(len(published_ms)), dtype=object)
    if labels.shape != published_ms.shape:
        raise ValueError(f"{labels.size} group labels for {published_ms.size} points")
    errors = []
    for i in range(len(published_ms)):
        keep = labels != labels[i]
        coefficients = fit(work_rows[keep], published_ms[keep], clock_mhz)
        errors.append(100.0 * (predict_ms(coefficients, work_rows[i], clock_mhz) / published_ms[i] - 1.0))
    return np.array(errors)


def summary(errors_pct: np.ndarray) -> dict:
    """Median and worst absolute error (%) of a leave-one-out run, and its number of points."""
    errors = np.abs(np.asarray(errors_pct, np.float64))
    return {"median_abs_pct": round(float(np.median(errors)), 2), "max_abs_pct": round(float(errors.max()), 2),
            "points": int(errors.size)}


@lru_cache(maxsize=1)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load(path: Path = DATA) -> dict:
    """board_latency.json: {"points": [...], "boards": {name: fitted model}, ...} (see the file)."""
    return _load(str(path))


def board_model(name: str, path: Path = DATA) -> dict | None:
    """The fitted model of board `name`, or None when board_latency.json has none for it.

    A board fitted per kind: {"method": "per-kind", "clock_mhz", "kinds", "cycles_per_unit": {kind: c},
    "leave_one_out_pct", "leave_one_architecture_out_pct", "error_bar", "coverage", "fitted_error_pct",
    "architectures", "unseen", ...}; one whose shape comes from another board: {"method": "transferred",
    "from", "scale", ...}. Written by benchmarks/fit_latency.py.
    """
    return load(path)["boards"].get(name)


def kinds_of(entry: dict) -> tuple[str, ...]:
    """The kinds a board's entry is fitted on, in its coefficients' order (KINDS when not stated)."""
    return tuple(entry.get("kinds", KINDS))


def points_for(board: str, path: Path = DATA) -> list[dict]:
    """The calibration points (published times with their work counts) of one board."""
    return [p for p in load(path)["points"] if p["board"] == board]
