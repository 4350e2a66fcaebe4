"""Intervals and paired tests on hand-built predictions whose answers are known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mcuvision.report import evaluation
from mcuvision.report.stats import below_limit_p_value, interval_text, mcnemar_exact, paired_text, wilson_interval

Z = 1.959963984540054  # the normal quantile of 0.975
Z2 = Z * Z


def wilson_closed_form(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (k + z²/2) / (n + z²) ± z / (n + z²) * sqrt(k (n - k) / n + z²/4)."""
    centre = (k + Z2 / 2) / (n + Z2)
    half = Z / (n + Z2) * math.sqrt(k * (n - k) / n + Z2 / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("n", [1, 10, 45, 1000])
def test_wilson_at_none_and_all_right(n):
    # 0/n: (0, z²/(n + z²)); n/n its mirror image: never zero-wide, unlike the normal approximation.
    assert wilson_interval(0, n) == pytest.approx((0.0, Z2 / (n + Z2)), abs=1e-12)
    assert wilson_interval(n, n) == pytest.approx((n / (n + Z2), 1.0), abs=1e-12)


@pytest.mark.parametrize("k, n", [(18, 45), (5, 10), (15, 18), (1, 3), (731, 1000)])
def test_wilson_matches_its_closed_form(k, n):
    low, high = wilson_interval(k, n)
    assert (low, high) == pytest.approx(wilson_closed_form(k, n), abs=1e-12)
    assert low < k / n < high


def test_wilson_is_symmetric_around_one_half_and_refuses_impossible_counts():
    low, high = wilson_interval(5, 10)
    assert low + high == pytest.approx(1.0, abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))  # nothing measured
    for k, n in ((3, 2), (-1, 5), (0, -1)):
        with pytest.raises(ValueError, match="0 <= successes <= n"):
            wilson_interval(k, n)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=95)


def correctness(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference right?, other right?) per image with b, c discordant and both/neither concordant images."""
    ref = [True] * b + [False] * c + [True] * both + [False] * neither
    other = [False] * b + [True] * c + [True] * both + [False] * neither
    return np.array(ref), np.array(other)


@pytest.mark.parametrize("b, c, expected", [
    (0, 5, 2 * 0.5 ** 5),            # 0.0625: five wins out of five is not yet beyond chance
    (5, 0, 2 * 0.5 ** 5),
    (0, 6, 2 * 0.5 ** 6),            # 0.03125
    (1, 7, 2 * (1 + 8) / 2 ** 8),    # 2 P(X <= 1), X ~ Bin(8, 1/2) = 0.0703125
    (3, 3, 1.0),
    (0, 0, 1.0),                     # no discordant image: no evidence either way
    (2, 10, 2 * (1 + 12 + 66) / 2 ** 12),
])
def test_exact_mcnemar_p_values(b, c, expected):
    ref, other = correctness(b, c, both=30, neither=7)
    result = mcnemar_exact(ref, other)
    assert (result["b"], result["c"]) == (b, c)
    assert result["p_value"] == pytest.approx(expected, abs=1e-12)


def test_mcnemar_refuses_arrays_over_different_images():
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_paired_predictions_agreement_and_test():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    reference = labels.copy()                       # float: 10/10
    other = labels.copy()
    other[[0, 1, 2, 3, 4]] = [1, 2, 0, 2, 0]       # 5 images now wrong: b=5, c=0
    result = evaluation.paired(reference, other, labels)
    assert result["agreement"] == 0.5
    assert (result["agreement_low"], result["agreement_high"]) == pytest.approx(wilson_closed_form(5, 10))
    assert result["mcnemar"] == {"b": 5, "c": 0, "p_value": pytest.approx(0.0625)}
    with pytest.raises(ValueError):
        evaluation.paired(reference, other[:9], labels)


def test_top1_and_per_class_recall_carry_their_interval():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    s = evaluation.scores(np.eye(3)[predicted], labels, ["r", "g", "b"], top_k=5)
    assert s["n"] == 10 and (s["top1_low"], s["top1_high"]) == pytest.approx(wilson_closed_form(6, 10))
    table = evaluation.per_class(predicted, labels, ["r", "g", "b", "absent"]).set_index("class")
    assert (table.loc["r", "recall_low"], table.loc["r", "recall_high"]) == pytest.approx(wilson_closed_form(2, 4))
    assert (table.loc["b", "recall_low"], table.loc["b", "recall_high"]) == pytest.approx(wilson_closed_form(3, 4))
    assert math.isnan(table.loc["absent", "recall_low"])  # no image of it: no interval


def test_interval_text_is_the_cards_format():
    assert interval_text(0.4, 0.264, 0.554, 45) == "40.0 (26.4-55.4), n=45"
    assert interval_text(1.0, 0.9, 1.0) == "100.0 (90.0-100.0)"


def test_below_limit_p_value_is_the_binomial_lower_tail():
    assert below_limit_p_value(0, 3, 0.5) == pytest.approx(0.125)          # (1 - 0.5)^3
    assert below_limit_p_value(0, 10, 0.9) == pytest.approx(0.1 ** 10)
    assert below_limit_p_value(1, 2, 0.5) == pytest.approx(0.75)           # P(X <= 1), X ~ Bin(2, 1/2)
    assert below_limit_p_value(10, 10, 0.9) == pytest.approx(1.0)


def test_paired_text():
    assert paired_text({"b": 5, "c": 0, "p_value": 0.0625}) == "p=0.0625 (b=5, c=0)" and paired_text(None) == "-"
