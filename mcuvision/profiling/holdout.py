"""Error bars for a board latency fit, from holding out whole architectures, and a check that they cover.

A point left out alone is flattering when another resolution of the same architecture stays in the
fit (MobileNet v1 at 224 predicts it at 96). The bar printed beside an estimate is therefore a
percentile (PERCENTILE, the 80th by default) of the absolute errors of each published time
predicted by a fit that saw no resolution of its architecture (`board_latency.leave_one_out` with
groups). It is a statement about ST-zoo-like convolutional networks, not a bound.

`coverage` checks the bar honestly: each architecture in turn is held out of everything, the fit
*and* the bar (which is recomputed from the architectures left, the same way), and the check counts
how often the held-out architecture's error falls inside that bar.
"""
from __future__ import annotations

import numpy as np

from mcuvision.profiling import board_latency as bl

PERCENTILE = 80.0


def bar_pct(errors_pct, percentile: float = PERCENTILE) -> float:
    """The error bar in %: `percentile` of |errors| (linear interpolation, numpy's default).

    Raises ValueError on an empty list or a percentile outside (0, 100].
    """
    errors = np.abs(np.asarray(errors_pct, np.float64))
    if errors.size == 0 or not 0.0 < percentile <= 100.0:
        raise ValueError(f"need at least one error and a percentile in (0, 100], got {errors.size}, {percentile}")
    return float(np.percentile(errors, percentile))


def _fittable(keep: np.ndarray, n_kinds: int) -> bool:
    return int(keep.sum()) >= n_kinds


def group_errors(work_rows: np.ndarray, published_ms: np.ndarray, clock_mhz: float, groups: list) -> np.ndarray:
    """Signed % error of each point from a fit without its group; NaN where too few points are left.

    Same as `board_latency.leave_one_out(..., groups)` except that a group whose removal leaves fewer
    points than kinds gets NaN instead of raising (the bar is then computed from the others).
    """
    work_rows, published_ms = np.asarray(work_rows, np.float64), np.asarray(published_ms, np.float64)
    labels = np.asarray(groups, dtype=object)
    out = np.full(len(published_ms), np.nan)
    for i in range(len(published_ms)):
        keep = labels != labels[i]
        if _fittable(keep, work_rows.shape[1]):
            c = bl.fit(work_rows[keep], published_ms[keep], clock_mhz)
            out[i] = 100.0 * (bl.predict_ms(c, work_rows[i], clock_mhz) / published_ms[i] - 1.0)
    return out


def coverage(work_rows: np.ndarray, published_ms: np.ndarray, clock_mhz: float, groups: list,
             percentile: float = PERCENTILE) -> list[dict]:
    """Hold out each group in turn from the fit and from the bar; does the bar cover its error?

    Returns one row per group (first-seen order): {"group", "points", "error_pct" (its worst
    |error| signed, from a fit on the other groups), "bar_pct" (the percentile of the other groups'
    own hold-out errors, each from a fit that also lacks the held-out group), "covered",
    "bar_points" (how many errors that bar came from)}. A group whose removal leaves too few points
    to fit gets error_pct None and covered None. Units: %.
    """
    work_rows, published_ms = np.asarray(work_rows, np.float64), np.asarray(published_ms, np.float64)
    labels = np.asarray(groups, dtype=object)
    rows = []
    for group in dict.fromkeys(groups):
        inside = labels == group
        rest = ~inside
        if not _fittable(rest, work_rows.shape[1]):
            rows.append({"group": group, "points": int(inside.sum()), "error_pct": None, "bar_pct": None,
                         "covered": None, "bar_points": 0})
            continue
        c = bl.fit(work_rows[rest], published_ms[rest], clock_mhz)
        errors = 100.0 * (bl.predict_ms(c, work_rows[inside], clock_mhz) / published_ms[inside] - 1.0)
        worst = float(errors[np.argmax(np.abs(errors))])
        inner = group_errors(work_rows[rest], published_ms[rest], clock_mhz, list(labels[rest]))
        inner = inner[~np.isnan(inner)]
        bar = bar_pct(inner, percentile) if inner.size else None
        rows.append({"group": group, "points": int(inside.sum()), "error_pct": round(worst, 2),
                     "bar_pct": None if bar is None else round(bar, 2),
                     "covered": None if bar is None else round(abs(worst), 2) <= round(bar, 2),  # as printed
                     "bar_points": int(inner.size)})
    return rows


def covered_count(rows: list[dict]) -> tuple[int, int]:
    """(covered, checked) over `coverage` rows; rows that could not be checked are not counted."""
    checked = [r for r in rows if r["covered"] is not None]
    return sum(bool(r["covered"]) for r in checked), len(checked)
