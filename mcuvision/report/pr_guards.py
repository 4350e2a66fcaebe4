"""The guards of params.yaml `evaluate.guards`, checked on the workspace's records: each limit passed,
crossed within noise (the paired test cannot tell the difference from chance) or crossed beyond
chance (or a measured size, which has no sampling), and what --fail-on-guard fails on."""
from __future__ import annotations

from dataclasses import dataclass

from mcuvision.config.base import ConfigError
from mcuvision.config.evaluate import Guards
from mcuvision.formats import QUANTIZED
from mcuvision.report.pr_sources import EVALUATE_METRICS, PARAMS_FILE, PROFILE_METRICS, number
from mcuvision.report.stats import below_limit_p_value, paired_text

# A difference is called beyond chance when its paired test's p-value is at most this (--alpha).
ALPHA = 0.05
W4W8_FORMAT = "w4w8_qdq_onnx"


@dataclass(frozen=True)
class Guard:
    name: str
    value: str
    limit: str
    crossed: bool | None  # the limit is crossed; None: the numbers are not available
    # Whether a crossed limit is more than chance: the paired test's verdict for an accuracy; True for
    # a measured size (RAM, flash: no sampling), and for metrics that carry no paired test.
    beyond_chance: bool = True

    @property
    def failed(self) -> bool:
        """What --fail-on-guard fails on: a crossed limit that chance does not explain."""
        return self.crossed is True and self.beyond_chance

    @property
    def result(self) -> str:
        if self.crossed is None:
            return "not available"
        if not self.crossed:
            return "passed"
        return "**crossed**" if self.beyond_chance else "within noise"


def _missing(name: str, why: str) -> Guard:
    return Guard(name, f"not available: {why}", "", None)


def _loss_beyond_chance(test, alpha: float) -> tuple[bool, str]:
    """(is a loss beyond chance, text) from a `mcnemar_*` record: p <= alpha and more images lost (b)
    than gained (c). Without a readable record nothing says it is chance: beyond chance."""
    if not isinstance(test, dict) or any(number(test.get(k)) is None for k in ("b", "c", "p_value")):
        return True, ", no paired test"
    return test["p_value"] <= alpha and test["b"] > test["c"], f", McNemar {paired_text(test)}"


def _drop_guard(name: str, drop, limit: float, drop_key: str, against: str, test, alpha: float) -> Guard:
    drop = number(drop)
    if drop is None:
        return _missing(name, f"no `{drop_key}` in {EVALUATE_METRICS}")
    beyond, note = _loss_beyond_chance(test, alpha)
    # drop is quantized minus reference, in points: a loss is negative.
    return Guard(name, f"{drop:+.2f} points vs {against}{note}", f"≥ {-limit:+.2f} points", -drop > limit, beyond)


def _agreement_guard(name: str, agreement, high, n, limit: float, alpha: float) -> Guard:
    agreement, high, n = number(agreement), number(high), number(n)
    if agreement is None:
        return _missing(name, f"no `agreement_with_float` in {EVALUATE_METRICS}")
    if n is None or n < 1:
        return Guard(name, f"{agreement:.4f}, no image count", f"≥ {limit:.4f}", agreement < limit)
    # Below the limit beyond chance: the exact one-sided binomial test against the limit itself.
    p = below_limit_p_value(round(agreement * n), int(n), limit)
    note = "" if high is None else f" (95% interval up to {high:.4f})"
    test = f", exact binomial test of being below the limit: p={p:.3g}" if agreement < limit else ""
    return Guard(name, f"{agreement:.4f}{note}{test}", f"≥ {limit:.4f}", agreement < limit, p <= alpha)


def accuracy_guards(limits: Guards, evaluate: dict | None, alpha: float = ALPHA) -> list[Guard]:
    """Drop and agreement guards for every quantized format; w4w8 only where quantize made one.

    A drop guard's limit crossed is beyond chance when the format's exact McNemar test against its
    reference (`mcnemar_vs_float`, the int4/int8 model's `mcnemar_vs_int8`) has p <= alpha with more
    images lost than gained; an agreement guard's when the exact one-sided binomial test of its
    agreeing images against the limit has p <= alpha (stats.below_limit_p_value)."""
    if evaluate is None:
        return [_missing("accuracy guards", f"no {EVALUATE_METRICS} in the workspace")]
    guards = []
    for name in QUANTIZED:
        scores = evaluate.get(name)
        if not isinstance(scores, dict):
            if name != W4W8_FORMAT:  # the int4/int8 model is optional, int8 ones are not
                guards.append(_missing(f"`{name}`", f"no `{name}` in {EVALUATE_METRICS}"))
            continue
        if name == W4W8_FORMAT:
            guards.append(_drop_guard(f"`{name}` top-1 drop", scores.get("drop_vs_int8_points"),
                                      limits.max_w4w8_drop_points, "drop_vs_int8_points",
                                      "int8 QDQ", scores.get("mcnemar_vs_int8"), alpha))
        else:
            guards.append(_drop_guard(f"`{name}` top-1 drop", scores.get("drop_points"),
                                      limits.max_int8_drop_points, "drop_points", "float",
                                      scores.get("mcnemar_vs_float"), alpha))
        guards.append(_agreement_guard(f"`{name}` agreement with float", scores.get("agreement_with_float"),
                                       scores.get("agreement_with_float_high"), scores.get("n"),
                                       limits.min_agreement_with_float, alpha))
    return guards


def board_guards(profile: dict | None) -> list[Guard]:
    """RAM and flash fit of the board params.yaml selects, as the profile stage measured it."""
    if profile is None:
        return [_missing("board fit", f"no {PROFILE_METRICS} in the workspace")]
    board = profile.get("board")
    entry = (profile.get("boards") or {}).get(board) if isinstance(board, str) else None
    if not isinstance(entry, dict):
        return [_missing("board fit", f"no `boards.{board}` for the selected board in {PROFILE_METRICS}")]
    title = entry.get("display_name") or board
    guards = []
    for what, label in (("ram", "RAM"), ("flash", "flash")):
        fits = entry.get(f"fits_{what}")
        name = f"{title}: {label} fits"
        if not isinstance(fits, bool):
            guards.append(_missing(name, f"no `boards.{board}.fits_{what}` in {PROFILE_METRICS}"))
            continue
        needed, budget, margin = (number(entry.get(f"{what}_{k}_kib")) for k in ("needed", "budget", "margin"))
        value = (f"{needed:.1f} KiB needed" if needed is not None else "needed: ?") + \
                (f", margin {margin:+.1f} KiB" if margin is not None else "")
        limit = f"≤ {budget:.1f} KiB" if budget is not None else "the board's budget"
        guards.append(Guard(name, value, limit, not fits))
    return guards


def check_guards(params: dict | None, evaluate: dict | None, profile: dict | None,
                 alpha: float = ALPHA) -> list[Guard]:
    try:  # the same reading and range checks as the evaluate stage's config
        limits = Guards.from_params(params or {})
    except ConfigError as error:
        accuracy = [_missing("accuracy guards", f"{PARAMS_FILE}: {error}")]
    else:
        accuracy = accuracy_guards(limits, evaluate, alpha)
    return accuracy + board_guards(profile)
