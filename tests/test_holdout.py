"""Error bars from whole-architecture hold-out, their coverage check, and the external-RAM term."""
from __future__ import annotations

import numpy as np
import pytest

from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import external_memory, holdout


def test_bar_is_the_percentile_of_absolute_errors():
    assert holdout.bar_pct([-10.0, 2.0, 4.0, -6.0, 8.0]) == pytest.approx(8.4)  # |e| sorted 2,4,6,8,10: 80th
    assert holdout.bar_pct([3.0], 50) == 3.0
    with pytest.raises(ValueError, match="percentile"):
        holdout.bar_pct([], 80)


def test_group_errors_leave_nan_where_too_few_points_remain():
    work, ms = np.array([[100.0, 1.0], [200.0, 1.0], [400.0, 3.0]]), np.array([1.0, 2.0, 4.0])
    errors = holdout.group_errors(work, ms, 1.0, ["a", "a", "b"])
    assert np.isnan(errors[:2]).all()  # one point left for two coefficients
    assert not np.isnan(errors[2])


def test_coverage_holds_each_group_out_of_the_fit_and_of_the_bar():
    # One kind at 1 MHz: group "x" has 10 cycles/MACC, "y" 11, "z" 20. Holding out "z": fit on x and y
    # by relative least squares gives a = (1/10 + 1/11) / (1/100 + 1/121) = 10.476..., so z is
    # predicted 47.6% low; the bar from x and y alone: each predicted from the other, +10% and -9.09%,
    # 80th percentile of |.| = 9.82%: "z" is not covered.
    work = np.array([[100.0], [100.0], [100.0]])
    ms = np.array([1.0, 1.1, 2.0])
    rows = holdout.coverage(work, ms, 1.0, ["x", "y", "z"])
    z = rows[2]
    a = (1 / 10 + 1 / 11) / (1 / 100 + 1 / 121)
    assert z["error_pct"] == pytest.approx(round(100 * (a / 20 - 1), 2))
    assert z["bar_pct"] == pytest.approx(round(holdout.bar_pct([10.0, 100 * (10 / 11 - 1)]), 2))
    assert z["covered"] is False and z["bar_points"] == 2
    assert holdout.covered_count(rows) == (sum(r["covered"] for r in rows), 3)


def test_coverage_of_exact_times_covers_everything():
    rng = np.random.default_rng(1)
    work = np.column_stack([rng.uniform(1e6, 1e8, 8), rng.uniform(1e5, 1e7, 8)])
    ms = bl.predict_ms(np.array([0.6, 8.0]), work, 800.0)
    rows = holdout.coverage(work, ms, 800.0, list("aabbcdef"))
    assert all(r["covered"] for r in rows) and all(abs(r["error_pct"]) < 1e-6 for r in rows)


def test_external_term_recovers_a_known_cycles_per_byte_and_leaves_one_out():
    base, traffic = np.array([300.0, 900.0, 100.0]), np.array([8e6, 9e6, 2e6])
    published = base + external_memory.extra_ms(3.0, 1.0, 400.0) * traffic  # 3 cycles per byte at 400 MHz
    assert external_memory.fit(base, published, traffic, 400.0) == pytest.approx(3.0)
    np.testing.assert_allclose(external_memory.leave_one_out(base, published, traffic, 400.0), 0.0, atol=1e-9)
    assert external_memory.fit([100.0], [90.0], [1e6], 400.0) == 0.0  # never a negative cost
    with pytest.raises(ValueError, match="as many"):
        external_memory.fit([1.0], [1.0, 2.0], [1.0], 400.0)


def test_committed_external_term_is_its_fit_on_the_h747_models_beyond_internal_ram():
    entry = bl.board_model("stm32h747i_disco")
    term = entry["external_memory"]
    checks = [c for c in bl.load()["checks"] if c["board"] == "stm32h747i_disco"
              and c["published_activation_kib"] > term["internal_ram_kib"]]
    assert [c["name"] for c in checks] == term["fitted_on"] and len(checks) == 2
    cycles = [entry["cycles_per_unit"][k] for k in bl.KINDS]
    base = [float(bl.predict_ms(cycles, bl.as_matrix([c["work"]])[0], 400.0)) for c in checks]
    args = (base, [c["published_ms"] for c in checks], [c["activation_traffic_bytes"] for c in checks], 400.0)
    assert term["cycles_per_byte"] == pytest.approx(external_memory.fit(*args), abs=1e-4)
    np.testing.assert_allclose(list(term["leave_one_out_pct"].values()), external_memory.leave_one_out(*args),
                               atol=0.01)
