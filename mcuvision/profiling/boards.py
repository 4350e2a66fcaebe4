"""Board estimates: inference time with its measured error, RAM and flash fit per runtime.

Latency (mcuvision/profiling/latency_estimate.py): per kind of work where a board is fitted in
board_latency.json, the H747's shape transferred to the F769, else the board file's one coefficient
(t_ms = MACC * cycles_per_macc / (clock_MHz * 1000) for MCUs, MACC / 1e6 * ms_per_mmacc for
MPUs/NPUs, least squares on relative error through the card's points: x_i = MACC_i / published_ms_i,
a = sum(x_i) / sum(x_i^2)). Energy per inference: mcuvision/profiling/energy.py.

RAM fit, per runtime, against the memory named by `ram_fit` (flash: weights + the board's code
flash vs `flash_fit`):
- TFLite Micro: arena total (measured) + the board's runtime RAM allowance; the flat keys
  `fits_ram`, `ram_needed_kib`, `ram_margin_kib` are this verdict (stable names, diffed by DVC);
- ST Edge AI Core: its report's activations + runtime RAM when the vendor backend ran; otherwise
  no verdict (None): its allocator overlaps buffers, and on published figures it needed from
  about half to 1.4 times the whole-tensor peak, so neither figure here bounds it.
"""
from __future__ import annotations

from mcuvision.config.board import BoardConfig
from mcuvision.profiling import board_latency, energy, latency_estimate

KIB = 1024.0


predict_ms = latency_estimate.one_coefficient_ms


def fitted_value(board: BoardConfig) -> float | None:
    """Relative-error least-squares coefficient through the calibration points (None without any)."""
    if not board.latency.calibration:
        return None
    unit = predict_ms(board, 1, 1.0)  # ms per MACC for a coefficient of 1
    xs = [p.macc * unit / p.published_ms for p in board.latency.calibration]
    return sum(xs) / sum(x * x for x in xs)


def calibration_errors(board: BoardConfig) -> list[dict]:
    """Residual (%) of the one-coefficient model on each point it was fitted on: not its error on
    other models (see one_coefficient_error), so the report does not print it as one."""
    rows = []
    for p in board.latency.calibration:
        model_ms = predict_ms(board, p.macc)
        rows.append({"resolution": p.resolution, "macc": p.macc, "published_ms": p.published_ms,
                     "model_ms": round(model_ms, 3),
                     "error_pct": round(100.0 * (model_ms - p.published_ms) / p.published_ms, 2), "source": p.source})
    return rows


def _budget(board: BoardConfig, kind: str) -> float:
    if kind == "ram":
        return board.arena_ram_kib if board.ram_fit == "internal" else board.external_ram_kib
    return board.flash_kib if board.flash_fit == "internal" else board.external_flash_kib


def stedgeai_peak_ratio() -> tuple[float, float] | None:
    """(min, max) of ST's published activation RAM over the whole-tensor peak, on the points kept
    in board_latency.json (ST's model zoo and the seed card); None without such points."""
    ratios = [p["published_activation_kib"] * KIB / p["whole_tensor_peak_bytes"] for p in board_latency.load()["points"]
              if p.get("published_activation_kib") and p.get("whole_tensor_peak_bytes")]
    return (min(ratios), max(ratios)) if ratios else None


def _verdict(basis: str, needed_kib: float | None, budget_kib: float) -> dict:
    if needed_kib is None:
        return {"basis": basis, "needed_kib": None, "fits": None, "margin_kib": None}
    return {"basis": basis, "needed_kib": round(needed_kib, 2), "fits": needed_kib <= budget_kib,
            "margin_kib": round(budget_kib - needed_kib, 2)}


def ram_verdicts(board: BoardConfig, arena_total_bytes: int, vendor: dict | None = None) -> dict:
    """RAM fit per runtime: {"tflite_micro": verdict, "stedgeai": verdict}, budgets in KiB.

    A verdict is {"basis", "needed_kib", "fits", "margin_kib"}; `fits` is None (no claim either
    way) for ST Edge AI Core when its report (`vendor`, from stedgeai.run) is absent.
    """
    budget = _budget(board, "ram")
    out = {"tflite_micro": _verdict("TFLite Micro arena (measured) + the board file's runtime RAM allowance",
                                    arena_total_bytes / KIB + board.runtime_ram_kib, budget)}
    if vendor:
        runtime = vendor["runtime_ram_bytes"]
        needed = vendor["activation_ram_bytes"] / KIB + (board.runtime_ram_kib if runtime is None else runtime / KIB)
        out["stedgeai"] = _verdict("ST Edge AI Core report (vendor tool estimate): activations + runtime RAM",
                                   needed, budget)
    else:
        ratio = stedgeai_peak_ratio()
        seen = (f"; on published figures it needed {ratio[0]:.2f}x to {ratio[1]:.2f}x the whole-tensor peak"
                if ratio else "")
        out["stedgeai"] = _verdict("not modelled: no ST Edge AI Core report (set vendor_backend: stedgeai); its "
                                   f"allocator overlaps buffers{seen}", None, budget)
    return out


def estimate(board: BoardConfig, macc: int, arena_total_bytes: int, weights_bytes: int,
             work: dict | None = None, vendor: dict | None = None, traffic_bytes: int | None = None) -> dict:
    """Everything the report says about one board; nothing here is measured on the board.

    macc: conv + depthwise + dense MACC; work: board_latency.work counts (the fitted or transferred
    model is used when given and the board is in board_latency.json); arena_total_bytes: TFLite Micro's
    arena total; weights_bytes: constant tensors; vendor: stedgeai.run's figures, if it ran;
    traffic_bytes: board_latency.activation_traffic (for the external-RAM term). Times in ms, memory
    in KiB, energy in µJ (latency_estimate.estimate and energy.energy say what each block holds).
    """
    ram = ram_verdicts(board, arena_total_bytes, vendor)
    tflm = ram["tflite_micro"]
    external = board.ram_fit == "internal" and tflm["fits"] is False
    latency = latency_estimate.estimate(board, macc, work, traffic_bytes, external)
    errors = calibration_errors(board)
    fitted_value_ = fitted_value(board)
    flash_needed = weights_bytes / KIB + board.code_flash_kib
    flash_budget = _budget(board, "flash")
    return {
        "display_name": board.display_name, "series": board.series, "engine": board.engine,
        "execution_engine": board.execution_engine, "clock_mhz": board.clock_mhz, **latency,
        "energy": energy.energy(board.power, latency["estimated_ms"], latency["latency_bar_pct"]),
        "latency_model": board.latency.model, "latency_value": board.latency.value,
        "latency_value_fitted": None if fitted_value_ is None else round(fitted_value_, 5),
        "calibrated": board.latency.calibrated, "assumption": board.latency.assumption or None,
        "calibration": errors,
        "ram_fit": board.ram_fit, "ram_needed_kib": tflm["needed_kib"], "ram_budget_kib": _budget(board, "ram"),
        "fits_ram": tflm["fits"], "ram_margin_kib": tflm["margin_kib"], "ram_fit_by_runtime": ram,
        "flash_fit": board.flash_fit, "flash_needed_kib": round(flash_needed, 2), "flash_budget_kib": flash_budget,
        "fits_flash": flash_needed <= flash_budget, "flash_margin_kib": round(flash_budget - flash_needed, 2),
        "runtime_ram_kib": board.runtime_ram_kib, "code_flash_kib": board.code_flash_kib,
        **({"vendor": vendor} if vendor else {}),
    }
