"""The pull-request report's Markdown: its sections (guards, accuracy, BASE against the workspace image
by image, confusion cells) and the whole report, from what pr_sources read, pr_guards judged and
pr_compare counted."""
from __future__ import annotations

from mcuvision.formats import FORMATS
from mcuvision.report.pr_compare import cell_changes, correct_total, count_cells, image_changes
from mcuvision.report.pr_guards import ALPHA, Guard
from mcuvision.report.pr_sources import CONFUSION_DIR, EVALUATE_METRICS, PREDICTIONS, number
from mcuvision.report.stats import interval_text, paired_text

MARKER = "<!-- mcuvision-metrics-report -->"
# Food-101 has 10,201 cells per matrix: a review comment can only carry the largest moves.
MAX_CELLS = 15


def guards_section(guards: list[Guard]) -> list[str]:
    crossed = sum(g.failed for g in guards)
    noise = sum(g.result == "within noise" for g in guards)
    unknown = sum(g.crossed is None for g in guards)
    if crossed:
        verdict = f"**{crossed} guard{'s' if crossed > 1 else ''} crossed.**"
    else:
        verdict = "All guards passed." if not unknown and not noise else "No guard crossed."
    if noise:
        verdict += (f" {noise} within noise: the limit is crossed on these images, but the paired test "
                    "cannot tell the difference from chance.")
    if unknown:
        verdict += f" {unknown} not available."
    lines = ["### Guards (workspace)", "", verdict, "", "| Guard | Value | Limit | Result |", "|---|---|---|---|"]
    lines += [f"| {g.name} | {g.value} | {g.limit} | {g.result} |" for g in guards]
    return lines + [""]


def accuracy_section(evaluate: dict | None) -> list[str]:
    """The workspace's top-1 per format with its 95% interval and n, and its paired test against float."""
    lines = ["### Accuracy (workspace)", ""]
    if evaluate is None:
        return lines + [f"Not available: no {EVALUATE_METRICS} in the workspace.", ""]
    rows = []
    for name in FORMATS:
        m = evaluate.get(name)
        if not isinstance(m, dict) or number(m.get("top1")) is None:
            continue
        top1 = (interval_text(m["top1"], m["top1_low"], m["top1_high"], m["n"])
                if all(k in m for k in ("top1_low", "top1_high", "n")) else f"{100 * m['top1']:.1f}")
        drop = f"{m['drop_points']:+.2f}" if number(m.get("drop_points")) is not None else "-"
        test = m.get("mcnemar_vs_float")
        rows.append(f"| {FORMATS[name]} | {top1} | {drop} | {paired_text(test if isinstance(test, dict) else None)} |")
    return lines + ["Top-1 with its 95% Wilson interval and the images scored; against float on the same images, "
                    "the exact McNemar test (b: images float gets right and the format wrong, c: the reverse).", "",
                    "| Format | Top-1 % (95% interval), n | vs float (points) | vs float: exact McNemar |",
                    "|---|---|---:|---|"] + rows + [""]


def image_section(base_text: str | None, now_text: str | None, alpha: float = ALPHA) -> list[str]:
    """Markdown: for each format, whether its change in top-1 between BASE and the workspace is beyond chance."""
    lines = ["### BASE → workspace, image by image", ""]
    if base_text is None or now_text is None:
        sides = (("BASE", base_text), ("the workspace", now_text))
        missing = " and ".join(side for side, text in sides if text is None)
        return lines + [f"Not available: no `{PREDICTIONS}` in {missing} (the evaluate stage writes it), so "
                        "nothing says whether the metrics below moved by more than chance.", ""]
    try:
        changes = image_changes(base_text, now_text)
    except ValueError as error:
        return lines + [f"Not available: `{PREDICTIONS}` is not readable ({error}).", ""]
    if not changes:
        return lines + ["Not available: no format has predictions on both sides.", ""]
    lines += [f"Each format on the test images both sides scored: top-1 before and after, the images it now gets "
              f"wrong (b) and now gets right (c), and the exact McNemar test on them: beyond chance when "
              f"p ≤ {alpha:g}.", "",
              "| Format | Images | Top-1 BASE → now (%) | b: right → wrong | c: wrong → right | p | Verdict |",
              "|---|---:|---|---:|---:|---:|---|"]
    for ch in changes:
        top1 = f"{100 * ch.base_correct / ch.images:.1f} → {100 * ch.now_correct / ch.images:.1f}" if ch.images else "-"
        lines.append(f"| {FORMATS[ch.name]} | {ch.images} | {top1} | {ch.b} | {ch.c} | {ch.p_value:.3g} | "
                     f"{ch.verdict(alpha)} |")
    return lines + [""]


def confusion_section(base_csv: dict[str, str | None], now_csv: dict[str, str | None],
                      limit: int = MAX_CELLS) -> list[str]:
    """Markdown for each format with a CSV on either side: changed cells, or why there are none."""
    lines = ["### Confusion matrices", ""]
    shown = [name for name in FORMATS if base_csv.get(name) is not None or now_csv.get(name) is not None]
    if not shown:
        return lines + [f"Not available: no `{CONFUSION_DIR}/<format>.csv` in BASE or the workspace "
                        "(has the evaluate stage run?).", ""]
    for name in shown:
        lines += [f"#### {FORMATS[name]} (`{name}`)", ""]
        try:
            base = count_cells(base_csv[name]) if base_csv.get(name) is not None else None
            now = count_cells(now_csv[name]) if now_csv.get(name) is not None else None
        except ValueError as error:
            lines += [f"Not available: `{CONFUSION_DIR}/{name}.csv` is not readable ({error}).", ""]
            continue
        if base is None or now is None:
            missing = "BASE" if base is None else "the workspace"
            there = now if base is None else base
            correct, total = correct_total(there)
            lines += [f"Missing in {missing}: nothing to compare "
                      f"({'workspace' if base is None else 'BASE'}: {correct}/{total} correct).", ""]
            continue
        (base_ok, base_n), (now_ok, now_n) = correct_total(base), correct_total(now)
        lines += [f"Correct: {base_ok}/{base_n} → {now_ok}/{now_n}.", ""]
        changes = cell_changes(base, now)
        if not changes:
            lines += ["No cell changed.", ""]
            continue
        lines += ["| Actual → predicted | BASE | now | Δ |", "|---|---:|---:|---:|"]
        for c in changes[:limit]:
            mark = " ✓" if c.actual == c.predicted else ""
            lines.append(f"| {c.actual} → {c.predicted}{mark} | {c.base} | {c.now} | {c.delta:+d} |")
        if len(changes) > limit:
            lines.append(f"\n…and {len(changes) - limit} more changed cells (the {limit} largest are shown).")
        lines.append("")
    return lines


def render(base: str, base_sha: str, workspace: str, guards: list[Guard], params_md: str, metrics_md: str,
           confusion: list[str], accuracy: list[str] = (), images: list[str] = (),
           pictures: list[str] = ()) -> str:
    lines = [MARKER, f"## Metrics: `{base}` → workspace", "",
             f"BASE `{base}` (`{base_sha[:8]}`) compared with the workspace, {workspace}.", ""]
    lines += guards_section(guards) + list(accuracy) + list(images)
    lines += ["### Params", "", params_md or "No params changed.", ""]
    lines += ["### Metrics", "", metrics_md or "No metrics changed.", ""]
    lines += confusion + ([""] if confusion and pictures else []) + list(pictures)
    return "\n".join(lines).rstrip() + "\n"
