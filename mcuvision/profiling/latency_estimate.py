"""A board's estimated inference time: which model, what it is calibrated on, its error bar, external RAM.

Three kinds of board (board_latency.json, written by benchmarks/fit_latency.py):
- per kind (STM32H747I-DISCO, STM32MP157F-DK2): fitted on several architectures; the ± is the
  hold-out bar (holdout.py: a percentile of the errors with each architecture left out).
- transferred (STM32F769I-DISCO): the H747's per-kind shape times one scale fitted on the card's two
  LC v1 points; no ± (two points cannot measure one), its errors on ST's unseen models are quoted.
- one coefficient (the board file): fitted on the card's two LC v1 points; no ±.
Uncalibrated boards (no published time) say so.

External RAM (MCUs): when the activations do not fit the board's internal RAM (the TFLite Micro
verdict), a board with a fitted (or transferred) external-memory term adds it and says so; any
other MCU board says that its estimate has no such term.
"""
from __future__ import annotations

from mcuvision.config.board import BoardConfig
from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import external_memory

LC_ONLY = "ST EfficientNet LC v1 only, 2 points (seed card)"


def one_coefficient_ms(board: BoardConfig, macc: int, value: float | None = None) -> float:
    """The board file's one-coefficient time in ms for `macc` MACC (`value` overrides its coefficient)."""
    coefficient = board.latency.value if value is None else value
    if board.latency.model == "cycles_per_macc":
        return macc * coefficient / (board.clock_mhz * 1000.0)
    return macc / 1.0e6 * coefficient


def _per_kind_error(entry: dict) -> dict:
    bar = entry["error_bar"]
    unseen = list(entry.get("unseen_pct", {}).values())
    return {"bar_pct": bar["pct"], "percentile": bar["percentile"], "basis": bar["basis"],
            "median_abs_pct": entry["median_abs_pct"], "max_abs_pct": entry["max_abs_pct"],
            "points": entry["points"], "architectures": entry["architectures"],
            "architecture_out": entry["architecture_out"],
            "coverage": f"{entry['coverage_covered']} of {entry['coverage_checked']}",
            "unseen": {"count": len(unseen), "covered": sum(abs(e) <= bar["pct"] for e in unseen),
                       "min_pct": min(unseen) if unseen else None, "max_pct": max(unseen) if unseen else None},
            "note": f"{bar['percentile']:g}th percentile of the absolute error with every resolution of the held-out "
                    f"architecture left out of the fit ({entry['points']} published times, "
                    f"{len(entry['architectures'])} architectures)"}


def _external(board: BoardConfig, entry: dict | None, external: bool, traffic_bytes: int | None) -> dict | None:
    if board.engine == "mpu" or board.ram_fit == "external":
        return None  # the model runs from DDR, as every calibration point did
    if not external:
        return {"applies": False, "extra_ms": 0.0, "basis": "activations fit internal RAM"}
    term = (entry or {}).get("external_memory")
    if term is None or traffic_bytes is None:
        return {"applies": True, "extra_ms": None,
                "basis": "activations exceed internal RAM: no external-RAM term for this board (none fitted), "
                         "the estimate is likely low"}
    extra = external_memory.extra_ms(term["cycles_per_byte"], traffic_bytes, board.clock_mhz)
    return {"applies": True, "extra_ms": round(extra, 3), "cycles_per_byte": term["cycles_per_byte"],
            "basis": f"activations exceed internal RAM: +{extra:.1f} ms for external RAM, {term['basis']}"}


def estimate(board: BoardConfig, macc: int, work: dict | None = None, traffic_bytes: int | None = None,
             activations_external: bool = False) -> dict:
    """The latency block of a board estimate; times in ms, errors in %.

    macc: conv + depthwise + dense MACC (the one-coefficient model's input); work: board_latency.work
    counts (needed for a fitted or transferred board); traffic_bytes: board_latency.activation_traffic;
    activations_external: the activations do not fit the board's internal RAM. Returns
    {"estimated_ms", "estimated_ms_one_coefficient", "latency_method", "calibrated_on", "latency_error"
    (None where no ± is supported), "latency_bar_pct", "latency_coefficients", "latency_checks",
    "external_memory"}. Sources: board_latency.json and the board file.
    """
    entry = bl.board_model(board.name) if work is not None else None
    one = one_coefficient_ms(board, macc)
    if entry is not None:
        kinds = bl.kinds_of(entry)
        cycles = [entry["cycles_per_unit"][k] for k in kinds]
        ms = float(bl.predict_ms(cycles, bl.as_matrix([work], kinds)[0], board.clock_mhz))
    else:
        ms = one
    if entry is not None and entry["method"] == "per-kind":
        method, error = "per-kind", _per_kind_error(entry)
        on = f"{entry['points']} published times of {len(entry['architectures'])} architectures: " \
             + ", ".join(entry["architectures"])
    elif entry is not None:
        method, error = "transferred", None
        on = (f"the STM32H747I-DISCO's per-kind shape (Cortex-M7 too) x {entry['scale']:.3f}, the scale fitted on "
              f"{LC_ONLY}; no error bar from 2 points")
    elif board.latency.calibrated:
        method, error = "one coefficient", None
        points = len(board.latency.calibration)
        on = f"{LC_ONLY if points == 2 else f'{points} points of the board file'}; no error bar from {points} points"
    else:
        method, error, on = "one coefficient", None, f"uncalibrated: {board.latency.assumption}"
    memory = _external(board, entry, activations_external, traffic_bytes)
    if memory and memory["extra_ms"]:
        ms += memory["extra_ms"]
    checks = entry.get("unseen_pct") if entry is not None else None
    return {"estimated_ms": round(ms, 3), "estimated_ms_one_coefficient": round(one, 3), "latency_method": method,
            "calibrated_on": on, "latency_error": error, "latency_bar_pct": error["bar_pct"] if error else None,
            "latency_coefficients": entry["cycles_per_unit"] if entry else None, "latency_checks": checks,
            "external_memory": memory}
