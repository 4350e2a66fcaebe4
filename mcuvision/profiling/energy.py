"""Energy per inference on a board, estimated: time x active power, with the latency's error carried.

    energy_uJ = t_ms * I_mA * V           (ms x mA x V = µJ)

t_ms is the board's estimated inference time; I_mA the chip's run-mode current at that clock and V
its supply voltage, both from the datasheet cited in the board file (`board.power`). The interval
combines the low end of the time (estimate minus its error bar, where the board has one) with the
low current, and the high end with the high current. Nothing here is measured: the datasheet's
run-mode figures are for the chip alone under ST's test code (not a neural network, not the board's
other parts: SDRAM, display, ST-LINK), so every figure is labelled "estimated".

Battery: inferences per charge = battery energy / energy per inference, and the inference rate per
hour at which the battery lasts one year, counting only the energy of the inferences (no sleep or
idle current, no converter loss): an upper bound on what a real device gets.
"""
from __future__ import annotations

BATTERY = {"name": "1000 mAh at 3.3 V", "mah": 1000.0, "volts": 3.3}
HOURS_PER_YEAR = 24 * 365


def battery_uj(battery: dict = BATTERY) -> float:
    """A battery's energy in µJ: mAh x V x 3.6e6 (1 mAh x 1 V = 3.6 J)."""
    return battery["mah"] * battery["volts"] * 3.6e6


def energy(power, estimated_ms: float, bar_pct: float | None, battery: dict = BATTERY) -> dict | None:
    """Energy per inference (µJ) with its interval, and what a battery gives; None without `power`.

    power: the board's PowerSpec (run_current_ma_low/high, supply_v, source) or None;
    estimated_ms: the estimated inference time; bar_pct: its error bar in % (None: unmeasured, the
    interval then covers the current's range only and says so). Raises ValueError for a
    negative time; a zero time (a model too small for the estimate's 1 µs rounding) gives no battery
    figures. Returns {"uj", "uj_low", "uj_high", "mw_low", "mw_high", "basis", "source",
    "battery", "inferences_per_charge" (low, high), "per_hour_for_a_year" (low, high)}.
    """
    if power is None:
        return None
    if not estimated_ms >= 0:
        raise ValueError(f"the estimated time must not be negative, got {estimated_ms}")
    bar = (bar_pct or 0.0) / 100.0
    t_low, t_high = estimated_ms * max(0.0, 1.0 - bar), estimated_ms * (1.0 + bar)
    mw_low, mw_high = power.run_current_ma_low * power.supply_v, power.run_current_ma_high * power.supply_v
    mid_mw = (mw_low + mw_high) / 2.0
    uj, uj_low, uj_high = estimated_ms * mid_mw, t_low * mw_low, t_high * mw_high
    charge = battery_uj(battery)
    basis = ("time ± its error bar" if bar_pct else "time without an error bar (unmeasured on this board)") + \
        f" × run-mode current {power.run_current_ma_low:g}-{power.run_current_ma_high:g} mA × {power.supply_v:g} V"
    return {"uj": round(uj, 1), "uj_low": round(uj_low, 1), "uj_high": round(uj_high, 1),
            "mw_low": round(mw_low, 1), "mw_high": round(mw_high, 1), "basis": basis, "source": power.source,
            "battery": battery["name"],
            "inferences_per_charge": [_per(charge, uj_high), _per(charge, uj_low)],
            "per_hour_for_a_year": [_per(charge, uj_high, HOURS_PER_YEAR), _per(charge, uj_low, HOURS_PER_YEAR)]}


def _per(charge_uj: float, uj: float, hours: float | None = None) -> float | int | None:
    if uj <= 0:
        return None
    return int(charge_uj / uj) if hours is None else round(charge_uj / uj / hours, 1)
