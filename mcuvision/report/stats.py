"""How much a measured accuracy can be trusted: intervals on proportions and paired tests.

Every interval the pipeline reports is the 95% Wilson score interval (Wilson 1927); every
comparison of two formats on the same images is the exact McNemar test (McNemar 1947). Both are
scipy's implementations; this module only fixes the choices and the shapes the stages write.

- E. B. Wilson (1927), "Probable inference, the law of succession, and statistical inference",
  Journal of the American Statistical Association 22(158): 209-212.
- Q. McNemar (1947), "Note on the sampling error of the difference between correlated proportions
  or percentages", Psychometrika 12(2): 153-157; the exact (conditional binomial) form as in
  M. W. Fagerland, S. Lydersen, P. Laake (2013), BMC Medical Research Methodology 13: 91.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
INTERVAL = "Wilson score interval, 95% (Wilson 1927)"
PAIRED_TEST = "exact McNemar test, two-sided (binomial test of b in b + c at 0.5)"


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for the proportion successes / n, as fractions in [0, 1].

    Chosen over the normal approximation because it stays inside [0, 1] and is not zero-wide at 0/n
    or n/n (for 0/n it is (0, z²/(n + z²)), z the normal quantile), and over Clopper-Pearson because
    its coverage is closer to the nominal level at these sizes (Brown, Cai, DasGupta 2001).
    Formula: Wilson (1927), without continuity correction, computed by
    `scipy.stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")`.

    `successes` and `n` are counts (Python or numpy integers). n == 0 gives (nan, nan): nothing was
    measured. Raises ValueError when n < 0, successes is outside 0..n, or confidence is not in (0, 1).
    """
    successes, n = int(successes), int(n)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"a proportion needs 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return math.nan, math.nan
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    # scipy can return a hair outside [0, 1] from floating point at 0/n and n/n.
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))


def mcnemar_exact(reference_correct: np.ndarray, other_correct: np.ndarray) -> dict:
    """Exact McNemar test of two models scored on the same images, in the same order.

    Inputs: boolean arrays of shape (N,), True where that model's top-1 is right on that image.
    Returns {"b", "c", "p_value"}: b (int) images the reference gets right and the other wrong,
    c (int) images the reference gets wrong and the other right, and the two-sided p-value (float)
    of `scipy.stats.binomtest(b, b + c, 0.5)`: under "same accuracy" each discordant image is a
    fair coin (McNemar 1947, exact form). With b + c == 0 the p-value is 1.0 (no evidence).
    Concordant images carry no information on the difference and are left out, which is why a
    paired test sees a real change that two separate intervals, overlapping, would not.
    Raises ValueError when the arrays differ in shape or are not one-dimensional.
    """
    reference_correct, other_correct = np.asarray(reference_correct, bool), np.asarray(other_correct, bool)
    if reference_correct.ndim != 1 or reference_correct.shape != other_correct.shape:
        raise ValueError(f"expected two (N,) arrays over the same images, got shapes "
                         f"{reference_correct.shape} and {other_correct.shape}")
    b = int(np.sum(reference_correct & ~other_correct))
    c = int(np.sum(~reference_correct & other_correct))
    p_value = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"b": b, "c": c, "p_value": min(p_value, 1.0)}


def below_limit_p_value(successes: int, n: int, limit: float) -> float:
    """One-sided exact binomial test that a proportion measured as successes / n is below `limit`.

    The p-value P(X <= successes) for X ~ Binomial(n, limit): how often a model whose true proportion
    is exactly at the limit would measure this low or lower (`scipy.stats.binomtest(successes, n,
    limit, alternative="less")`). Counts are ints, limit a fraction in [0, 1]. Raises ValueError
    when n < 1, successes is outside 0..n or limit outside [0, 1] (scipy's checks)."""
    return float(binomtest(int(successes), int(n), limit, alternative="less").pvalue)


def interval_text(value: float, low: float, high: float, n: int | None = None) -> str:
    """"40.0 (26.4-55.4), n=45": a fraction and its interval as percentages with one decimal, then n.

    One decimal because the interval is points wide at any size a person evaluates on; `value`,
    `low`, `high` are fractions in [0, 1], `n` the count they were measured on (left out when None)."""
    return f"{100 * value:.1f} ({100 * low:.1f}-{100 * high:.1f})" + ("" if n is None else f", n={n}")


def paired_text(test: dict | None) -> str:
    """"p=0.0625 (b=5, c=0)" for a `mcnemar_exact` result, "-" for None."""
    return "-" if test is None else f"p={test['p_value']:.3g} (b={test['b']}, c={test['c']})"
