"""Board estimates: inference time from the board's latency model, RAM and flash fit with margins.

Latency model, one coefficient per board: t_ms = MACC * cycles_per_macc / (clock_MHz * 1000)
for MCUs, t_ms = MACC / 1e6 * ms_per_mmacc for MPUs/NPUs. The coefficient in the board file is
the least-squares fit on RELATIVE error through the seed card's two published points (both
resolutions weigh the same): with x_i = MACC_i / published_ms_i the fit is
a = sum(x_i) / sum(x_i^2) in the model's units. One parameter through two points leaves a
residual on each, which is the model's honest error; an affine (overhead + slope) model would
pass through both points exactly and could not be checked on them, so it is not used.

Fit: RAM needed = TFLite Micro arena total (measured) + the board's stated runtime RAM
(stack, runtime state outside the arena); flash needed = weights (measured) + the board's
stated code flash. Each is compared with the memory named by `ram_fit` / `flash_fit`.
"""
from __future__ import annotations

from mcuvision.config.board import BoardConfig

KIB = 1024.0


def predict_ms(board: BoardConfig, macc: int, value: float | None = None) -> float:
    coefficient = board.latency_value if value is None else value
    if board.latency_model == "cycles_per_macc":
        return macc * coefficient / (board.clock_mhz * 1000.0)
    return macc / 1.0e6 * coefficient


def fitted_value(board: BoardConfig) -> float | None:
    """Relative-error least-squares coefficient through the calibration points (None without any)."""
    if not board.calibration:
        return None
    unit = predict_ms(board, 1, 1.0)  # ms per MACC for a coefficient of 1
    xs = [p.macc * unit / p.published_ms for p in board.calibration]
    return sum(xs) / sum(x * x for x in xs)


def calibration_errors(board: BoardConfig) -> list[dict]:
    rows = []
    for p in board.calibration:
        model_ms = predict_ms(board, p.macc)
        rows.append({"resolution": p.resolution, "macc": p.macc, "published_ms": p.published_ms,
                     "model_ms": round(model_ms, 3),
                     "error_pct": round(100.0 * (model_ms - p.published_ms) / p.published_ms, 2), "source": p.source})
    return rows


def _budget(board: BoardConfig, kind: str) -> float:
    if kind == "ram":
        return board.arena_ram_kib if board.ram_fit == "internal" else board.external_ram_kib
    return board.flash_kib if board.flash_fit == "internal" else board.external_flash_kib


def estimate(board: BoardConfig, macc: int, arena_total_bytes: int, weights_bytes: int) -> dict:
    """Everything the report says about one board; nothing here is measured on the board."""
    errors = calibration_errors(board)
    fitted = fitted_value(board)
    ram_needed = arena_total_bytes / KIB + board.runtime_ram_kib
    flash_needed = weights_bytes / KIB + board.code_flash_kib
    ram_budget, flash_budget = _budget(board, "ram"), _budget(board, "flash")
    return {
        "display_name": board.display_name, "series": board.series, "engine": board.engine,
        "execution_engine": board.execution_engine, "clock_mhz": board.clock_mhz,
        "estimated_ms": round(predict_ms(board, macc), 3),
        "latency_model": board.latency_model, "latency_value": board.latency_value,
        "latency_value_fitted": None if fitted is None else round(fitted, 5),
        "calibrated": board.calibrated, "assumption": board.assumption or None,
        "calibration": errors,
        "max_abs_calibration_error_pct": max((abs(e["error_pct"]) for e in errors), default=None),
        "ram_fit": board.ram_fit, "ram_needed_kib": round(ram_needed, 2), "ram_budget_kib": ram_budget,
        "fits_ram": ram_needed <= ram_budget, "ram_margin_kib": round(ram_budget - ram_needed, 2),
        "flash_fit": board.flash_fit, "flash_needed_kib": round(flash_needed, 2), "flash_budget_kib": flash_budget,
        "fits_flash": flash_needed <= flash_budget, "flash_margin_kib": round(flash_budget - flash_needed, 2),
        "runtime_ram_kib": board.runtime_ram_kib, "code_flash_kib": board.code_flash_kib,
    }
