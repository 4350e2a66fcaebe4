"""The per-kind board latency model: fit, leave-one-out, the committed coefficients, verdicts per runtime.

None of these needs ST's models: their work counts are kept (as numbers) in board_latency.json.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import ROOT
from mcuvision.config.board import load_board_dir
from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import boards as board_model
from mcuvision.profiling import holdout, profile_md

BOARDS = load_board_dir(ROOT / "conf" / "board")
# ST model zoo's published times (st_zoo_models/published.csv beside the models), copied: the models stay out
PUBLISHED = ROOT / "benchmarks" / "reference" / "st_zoo_published.csv"


def test_fit_recovers_known_coefficients_from_synthetic_times():
    rng = np.random.default_rng(0)
    true = np.array([1.5, 0.7, 9.0, 25.0, 30_000.0])  # cycles per MACC, MACC, MACC, element, op
    work = np.column_stack([rng.uniform(0, 1e8, 12), rng.uniform(0, 5e7, 12), rng.uniform(0, 1e7, 12),
                            rng.uniform(0, 1e6, 12), rng.integers(20, 200, 12)])
    ms = bl.predict_ms(true, work, 400.0)
    np.testing.assert_allclose(bl.fit(work, ms, 400.0), true, rtol=1e-6)
    # exact times: every point is predicted exactly by the others too
    np.testing.assert_allclose(bl.leave_one_out(work, ms, 400.0), 0.0, atol=1e-6)


def test_fit_keeps_coefficients_non_negative_and_unused_kinds_at_zero():
    work = np.array([[100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    c = bl.fit(work, np.array([1.0, 2.0, 3.0]), 1.0)
    assert c[1] == 0.0 and c[0] == pytest.approx(10.0)  # 1 ms at 1 MHz = 1000 cycles for 100 MACC


def test_leave_one_out_by_hand():
    # One kind, 1 MHz (1000 cycles per ms). Leave point 0 out: fit on point 1 gives 3000/200 = 15
    # cycles/MACC, so point 0 is predicted at 100 * 15 / 1000 = 1.5 ms against 1 ms: +50%.
    # Leave point 1 out: 1000/100 = 10 cycles/MACC, 200 * 10 / 1000 = 2 ms against 3 ms: -33.33%.
    errors = bl.leave_one_out(np.array([[100.0], [200.0]]), np.array([1.0, 3.0]), 1.0)
    np.testing.assert_allclose(errors, [50.0, -100.0 / 3.0])
    assert bl.summary(errors) == {"median_abs_pct": 41.67, "max_abs_pct": 50.0, "points": 2}


def test_leave_one_out_with_groups_leaves_the_whole_group_out():
    work, ms = np.array([[100.0], [200.0], [400.0]]), np.array([1.0, 2.0, 2.0])
    # group "a" out: fit on point 2 alone is 5 cycles/MACC -> 0.5 and 1.0 ms against 1 and 2: -50%;
    # point 2 out: fit on points 0 and 1 (both 10 cycles/MACC) -> 4 ms against 2: +100%.
    np.testing.assert_allclose(bl.leave_one_out(work, ms, 1.0, groups=["a", "a", "b"]), [-50.0, -50.0, 100.0])


@pytest.mark.parametrize("work, ms, match", [
    (np.ones((2, 3)), np.ones(2), "cannot fit 3 coefficients"),
    (np.ones((3, 2)), np.ones(2), "need"),
    (np.ones((3, 1)), np.array([1.0, 0.0, 1.0]), "positive"),
])
def test_fit_refuses_bad_input(work, ms, match):
    with pytest.raises(ValueError, match=match):
        bl.fit(work, ms, 400.0)


# --- the committed fit -------------------------------------------------------------------------

def _fitted(name):
    entry, points = bl.board_model(name), bl.points_for(name)
    kinds = bl.kinds_of(entry)
    return entry, points, kinds, bl.as_matrix([p["work"] for p in points], kinds), \
        np.array([p["published_ms"] for p in points])


@pytest.mark.parametrize("name", ["stm32h747i_disco", "stm32mp157f_dk2"])
def test_committed_coefficients_errors_and_bars_are_computed_from_the_committed_points(name):
    entry, points, kinds, rows, ms = _fitted(name)
    clock = entry["clock_mhz"]
    np.testing.assert_allclose([entry["cycles_per_unit"][k] for k in kinds], bl.fit(rows, ms, clock), rtol=1e-4)
    loo = bl.leave_one_out(rows, ms, clock)
    np.testing.assert_allclose(list(entry["leave_one_out_pct"].values()), loo, atol=0.01)
    assert entry["median_abs_pct"] == bl.summary(loo)["median_abs_pct"]
    groups = [p["architecture"] for p in points]
    by_architecture = bl.leave_one_out(rows, ms, clock, groups)
    assert entry["architecture_out"] == bl.summary(by_architecture)
    assert entry["architectures"] == sorted(set(groups))
    # the printed bar is the percentile of these hold-out errors, not a typed number
    assert entry["error_bar"]["pct"] == pytest.approx(holdout.bar_pct(by_architecture), abs=0.01)
    assert entry["error_bar"]["basis"] == "whole-architecture hold-out" and entry["error_bar"]["percentile"] == 80
    assert entry["coverage"] == holdout.coverage(rows, ms, clock, groups)
    assert (entry["coverage_covered"], entry["coverage_checked"]) == holdout.covered_count(entry["coverage"])


def test_mp157_is_fitted_on_its_four_published_zoo_times_and_the_card_lc_v1_points():
    entry, points, kinds, _, _ = _fitted("stm32mp157f_dk2")
    assert kinds == ("gemm", "depthwise") and entry["method"] == "per-kind" and entry["clock_mhz"] == 800
    zoo = [p for p in points if p["architecture"] != "ST EfficientNet LC v1"]
    with PUBLISHED.open(encoding="utf-8") as f:
        published = {r["model"]: float(r["mp157_ms"]) for r in csv.DictReader(f) if r["mp157_ms"].strip()}
    assert {p["name"]: p["published_ms"] for p in zoo} == published and len(published) == 4
    lc = [(p["resolution"], p["published_ms"], p["tool"]) for p in points if p not in zoo]
    card = BOARDS["stm32mp157f_dk2"].latency.calibration
    assert lc == [(c.resolution, c.published_ms, "TensorFlow Lite 2.18.0") for c in card]
    assert {p["tool"] for p in zoo} == {"TensorFlow Lite 2.11.0"}


def test_mp157_fit_recovers_known_coefficients_from_a_synthetic_set():
    # Work of the six MP157 calibration models, times made from known cycles per GEMM and depthwise MACC
    _, points, kinds, rows, _ = _fitted("stm32mp157f_dk2")
    true = np.array([0.6, 8.0])
    ms = bl.predict_ms(true, rows, 800.0)
    np.testing.assert_allclose(bl.fit(rows, ms, 800.0), true, rtol=1e-6)
    np.testing.assert_allclose(bl.leave_one_out(rows, ms, 800.0, [p["architecture"] for p in points]), 0.0, atol=1e-6)
    # GEMM is the sum of conv and pointwise MACC
    assert rows[0][0] == points[0]["work"]["conv"] + points[0]["work"]["pointwise"]


def test_f769_is_the_h747_shape_scaled_on_its_two_card_points():
    f769, h747 = bl.board_model("stm32f769i_disco"), bl.board_model("stm32h747i_disco")
    assert f769["method"] == "transferred" and f769["from"] == "stm32h747i_disco"
    lc = [p for p in bl.points_for("stm32h747i_disco") if p["architecture"] == "ST EfficientNet LC v1"]
    cycles = [h747["cycles_per_unit"][k] for k in bl.KINDS]
    shape = np.array([bl.predict_ms(cycles, bl.as_matrix([p["work"]])[0], 216.0) for p in lc])
    x = shape / np.array([c.published_ms for c in BOARDS["stm32f769i_disco"].latency.calibration])
    assert f769["scale"] == pytest.approx(x.sum() / (x * x).sum(), rel=1e-4)


def test_h747_per_kind_model_beats_the_one_coefficient_model():
    entry = bl.board_model("stm32h747i_disco")
    assert entry["points"] == 8 and len(entry["architectures"]) == 6
    assert entry["median_abs_pct"] <= 15.0
    lc = {n: e for n, e in entry["fitted_error_pct"].items() if n.startswith("st_efficientnet_lc_v1")}
    assert len(lc) == 2 and all(abs(e) <= 3.0 for e in lc.values()), lc
    # the one-coefficient model it replaces was off by +32% or more on every other architecture
    others = [e for n, e in entry["one_coefficient_error_pct"].items() if n not in lc]
    assert min(others) > 30


def test_lc_v1_points_are_the_board_file_card_points():
    board = BOARDS["stm32h747i_disco"]
    lc = [p for p in bl.points_for(board.name) if p["architecture"] == "ST EfficientNet LC v1"]
    assert [(p["resolution"], p["published_ms"]) for p in lc] == [(c.resolution, c.published_ms)
                                                                  for c in board.latency.calibration]
    for p, c in zip(lc, board.latency.calibration):
        assert sum(p["work"][k] for k in ("conv", "pointwise", "depthwise")) == c.macc


# --- board estimates ---------------------------------------------------------------------------

def test_h747_estimate_uses_the_per_kind_model_and_carries_its_hold_out_bar():
    point = next(p for p in bl.points_for("stm32h747i_disco") if p["name"].startswith("squeezenet_v1.1"))
    macc = sum(point["work"][k] for k in ("conv", "pointwise", "depthwise"))
    b = board_model.estimate(BOARDS["stm32h747i_disco"], macc, 300_000, 700_000, work=point["work"])
    assert b["latency_method"] == "per-kind"
    assert abs(b["estimated_ms"] / point["published_ms"] - 1) < 0.1
    assert b["estimated_ms_one_coefficient"] > 2 * point["published_ms"]  # the one-coefficient model's error
    bar = bl.board_model("stm32h747i_disco")["error_bar"]["pct"]
    assert b["latency_bar_pct"] == bar and profile_md.error_bar(b) == f"{b['estimated_ms']:.2f} ±{bar:.1f}%"
    assert "80th percentile" in profile_md.error_text(b) and "SqueezeNet v1.1" in b["latency_error"]["architectures"]
    assert b["external_memory"] == {"applies": False, "extra_ms": 0.0, "basis": "activations fit internal RAM"}


def test_activations_beyond_internal_ram_add_the_fitted_external_term_and_say_so():
    check = next(c for c in bl.load()["checks"]
                 if c["name"] == "mobilenet_v2_0.35_224_int8" and c["board"] == "stm32h747i_disco")
    board, macc = BOARDS["stm32h747i_disco"], sum(check["work"][k] for k in ("conv", "pointwise", "depthwise"))
    inside = board_model.estimate(board, macc, 400 * 1024, 400_000, work=check["work"],
                                  traffic_bytes=check["activation_traffic_bytes"])
    outside = board_model.estimate(board, macc, 700 * 1024, 400_000, work=check["work"],
                                   traffic_bytes=check["activation_traffic_bytes"])
    term = bl.board_model("stm32h747i_disco")["external_memory"]
    extra = term["cycles_per_byte"] * check["activation_traffic_bytes"] / 400e3
    assert outside["estimated_ms"] == pytest.approx(inside["estimated_ms"] + extra, abs=1e-3)
    assert "external RAM" in profile_md.error_bar(outside) and "fitted on 2 published times" in \
        profile_md.error_text(outside)
    # a board without a fitted term says its estimate has none
    u5 = board_model.estimate(BOARDS["b_u585i_iot02a"], macc, 900 * 1024, 400_000, work=check["work"],
                              traffic_bytes=check["activation_traffic_bytes"])
    assert u5["external_memory"]["extra_ms"] is None and "no external-RAM term" in profile_md.error_text(u5)


@pytest.mark.parametrize("name", ["stm32mp135f_dk2", "stm32mp257f_dk2", "stm32n6570_dk", "stm32f769i_disco"])
def test_boards_calibrated_on_lc_v1_alone_print_no_error_bar(name):
    work = next(p for p in bl.points_for("stm32h747i_disco") if p["name"].startswith("st_efficientnet"))["work"]
    b = board_model.estimate(BOARDS[name], 19_831_552, 200_000, 500_000, work=work)
    assert b["latency_error"] is None and b["latency_bar_pct"] is None
    assert "±" not in profile_md.error_bar(b) and "(no error bar: 2 points)" in profile_md.error_bar(b)
    text = profile_md.error_text(b)
    assert "ST EfficientNet LC v1 only, 2 points" in text and "±" not in text
    if name == "stm32f769i_disco":
        assert b["latency_method"] == "transferred" and "per-kind shape" in text and "fdmobilenet" in text
    else:
        assert b["latency_method"] == "one coefficient" and "not measured on other architectures" in text
    u5 = board_model.estimate(BOARDS["b_u585i_iot02a"], 1, 1, 1)
    assert u5["latency_error"] is None and "uncalibrated" in profile_md.error_bar(u5)


def test_ram_verdict_per_runtime_never_claims_a_misfit_for_an_unmodelled_runtime():
    board = BOARDS["stm32h747i_disco"]  # 512 KiB budget
    big = 600 * 1024
    verdicts = board_model.ram_verdicts(board, big)
    assert verdicts["tflite_micro"]["fits"] is False
    assert verdicts["stedgeai"]["fits"] is None and "not modelled" in verdicts["stedgeai"]["basis"]
    vendor = {"activation_ram_bytes": 404 * 1024, "runtime_ram_bytes": 16 * 1024}
    st = board_model.ram_verdicts(board, big, vendor)["stedgeai"]
    assert st["fits"] is True and st["needed_kib"] == 420.0 and st["margin_kib"] == 92.0
