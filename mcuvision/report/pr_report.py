"""One Markdown report of what a change does to the pipeline's numbers, for a pull request.

    python -m mcuvision.report.pr_report --base main [--output report.md] [--fail-on-guard] [--alpha 0.05]

It compares the workspace (HEAD plus uncommitted changes, as `dvc metrics diff` does) with BASE:

1. the guards of params.yaml `evaluate.guards`, checked on the workspace's metrics/evaluate.json
   and metrics/profile.json (int8 and int4/int8 accuracy drop, agreement with float, the selected
   board's RAM and flash fit), each "passed", "within noise" (the limit is crossed but the paired
   test cannot tell the difference from chance) or "crossed" (beyond chance, or a measured size);
2. the workspace's top-1 per format with its 95% interval and n, and its paired test against float;
3. BASE against the workspace image by image: each format's per-image predictions
   (reports/evaluate/predictions.csv on both sides) on the test images both scored, with the exact
   McNemar test saying whether the change in top-1 is beyond chance;
4. `dvc params diff BASE --md` and `dvc metrics diff BASE --md` (the headline metrics), from the
   real DVC CLI;
5. the confusion-matrix cells whose counts changed, per model format, from the evaluate stage's
   reports/evaluate/confusion/<format>.csv (committed to git, so BASE's come from `git show`).

The first line is a hidden marker the CI workflow looks for, so it updates its one comment on a
pull request instead of adding a new one on every push.

Exit status: 0, or 1 with --fail-on-guard when a guard is crossed beyond chance (p <= --alpha; with
--alpha 1 every crossed limit fails); 2 when the report cannot be made (BASE is not a revision, the
directory is not a git + DVC repository, DVC is missing).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from mcuvision.cli import prog
from mcuvision.config.base import ConfigError
from mcuvision.config.evaluate import Guards
from mcuvision.errors import PipelineError
from mcuvision.formats import FORMATS, QUANTIZED
from mcuvision.report import pr_images
from mcuvision.report.stats import below_limit_p_value, interval_text, mcnemar_exact, paired_text

MARKER = "<!-- mcuvision-metrics-report -->"
PARAMS_FILE = "params.yaml"
EVALUATE_METRICS = "metrics/evaluate.json"
PROFILE_METRICS = "metrics/profile.json"
CONFUSION_DIR = "reports/evaluate/confusion"
PREDICTIONS = "reports/evaluate/predictions.csv"
# A difference is called beyond chance when its paired test's p-value is at most this (--alpha).
ALPHA = 0.05
# Food-101 has 10,201 cells per matrix: a review comment can only carry the largest moves.
MAX_CELLS = 15
W4W8_FORMAT = "w4w8_qdq_onnx"


class ReportError(PipelineError, RuntimeError):
    """The report cannot be made; the message says why, for a person."""


# --- commands --------------------------------------------------------------------------------

def _env() -> dict:
    # `dvc` is this environment's (a venv is not always activated, e.g. under `make` or CI);
    # analytics would try the network on every call.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    except FileNotFoundError as error:
        raise ReportError(f"`{args[0]}` is not installed or not on PATH") from error


def repo_root(start: Path) -> Path:
    """The top of the git work tree holding `start`; it must also be a DVC project."""
    start = Path(start)
    if not start.is_dir():
        raise ReportError(f"{start} is not a directory")
    found = _run(["git", "rev-parse", "--show-toplevel"], start)
    if found.returncode != 0:
        raise ReportError(f"{start.resolve()} is not inside a git repository "
                          "(the report compares git revisions)")
    root = Path(found.stdout.strip())
    if not (root / ".dvc").is_dir():
        raise ReportError(f"{root} is a git repository but not a DVC project (no .dvc/): run `dvc init`")
    return root


def resolve_revision(root: Path, rev: str) -> str:
    """The commit sha BASE names, or a ReportError that says what to do."""
    found = _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    if found.returncode != 0 or not found.stdout.strip():
        raise ReportError(f"unknown revision {rev!r}: not a branch, tag or commit here "
                          f"(for a remote branch, `git fetch origin` first and pass origin/<branch>)")
    return found.stdout.strip()


def workspace_label(root: Path) -> str:
    head = _run(["git", "rev-parse", "--short", "HEAD"], root).stdout.strip() or "no commit"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], root).stdout.strip()
    return f"HEAD `{head}`" + (" with uncommitted changes" if dirty else "")


def git_show(root: Path, rev: str, path: str) -> str | None:
    """A file's text at `rev`, or None where it does not exist there."""
    data = pr_images.git_show_bytes(root, rev, path)
    return data.decode("utf-8") if data is not None else None


def dvc_diff(root: Path, kind: str, base: str, precision: int) -> str:
    """`dvc {params,metrics} diff BASE --md` as DVC prints it; "" when nothing changed."""
    args = ["dvc", kind, "diff", base, "--md"]
    if kind == "metrics":
        args += ["--precision", str(precision)]
    done = _run(args, root)
    if done.returncode != 0:
        raise ReportError(f"`{' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}")
    return sorted_table(done.stdout) if table_rows(done.stdout) else ""


def table_rows(markdown: str) -> int:
    """Data rows of a Markdown table; DVC prints the header alone when nothing changed."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return max(len(lines) - 2, 0)


def sorted_table(markdown: str) -> str:
    """DVC's table with its rows in path, then name order.

    DVC lists files in a different order from one run to the next; a comment updated on each push
    should only change where the numbers do. DVC pads every row to the same widths, so sorting the
    lines sorts by the first column, then the second.
    """
    lines = [line for line in markdown.strip().splitlines() if line.startswith("|")]
    return "\n".join(lines[:2] + sorted(lines[2:]))


# --- confusion matrices ----------------------------------------------------------------------

@dataclass(frozen=True)
class CellChange:
    actual: str
    predicted: str
    base: int
    now: int

    @property
    def delta(self) -> int:
        return self.now - self.base


def count_cells(text: str) -> Counter:
    """(actual, predicted) -> images, from the evaluate stage's one-row-per-image CSV."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"actual", "predicted"} <= set(reader.fieldnames):
        raise ValueError(f"expected columns actual,predicted, found {reader.fieldnames}")
    return Counter((row["actual"], row["predicted"]) for row in reader)


def cell_changes(base: Counter, now: Counter) -> list[CellChange]:
    """Cells whose counts differ, largest move first (ties in name order, so output is stable)."""
    changes = [CellChange(a, p, base[(a, p)], now[(a, p)]) for a, p in set(base) | set(now)
               if base[(a, p)] != now[(a, p)]]
    return sorted(changes, key=lambda c: (-abs(c.delta), c.actual, c.predicted))


def _correct(cells: Counter) -> tuple[int, int]:
    return sum(n for (a, p), n in cells.items() if a == p), sum(cells.values())


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
            correct, total = _correct(there)
            lines += [f"Missing in {missing}: nothing to compare "
                      f"({'workspace' if base is None else 'BASE'}: {correct}/{total} correct).", ""]
            continue
        (base_ok, base_n), (now_ok, now_n) = _correct(base), _correct(now)
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


# --- guards ----------------------------------------------------------------------------------

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


def _number(value) -> float | None:
    # bool is an int in Python; a NaN (no images scored) is no measurement either.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _missing(name: str, why: str) -> Guard:
    return Guard(name, f"not available: {why}", "", None)


def _loss_beyond_chance(test, alpha: float) -> tuple[bool, str]:
    """(is a loss beyond chance, text) from a `mcnemar_*` record: p <= alpha and more images lost (b)
    than gained (c). Without a readable record nothing says it is chance: beyond chance."""
    if not isinstance(test, dict) or any(_number(test.get(k)) is None for k in ("b", "c", "p_value")):
        return True, ", no paired test"
    return test["p_value"] <= alpha and test["b"] > test["c"], f", McNemar {paired_text(test)}"


def _drop_guard(name: str, drop, limit: float, drop_key: str, against: str, test, alpha: float) -> Guard:
    drop = _number(drop)
    if drop is None:
        return _missing(name, f"no `{drop_key}` in {EVALUATE_METRICS}")
    beyond, note = _loss_beyond_chance(test, alpha)
    # drop is quantized minus reference, in points: a loss is negative.
    return Guard(name, f"{drop:+.2f} points vs {against}{note}", f"≥ {-limit:+.2f} points", -drop > limit, beyond)


def _agreement_guard(name: str, agreement, high, n, limit: float, alpha: float) -> Guard:
    agreement, high, n = _number(agreement), _number(high), _number(n)
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
        needed, budget, margin = (_number(entry.get(f"{what}_{k}_kib")) for k in ("needed", "budget", "margin"))
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


# --- accuracy with its uncertainty, and BASE against the workspace image by image ---------------

def accuracy_section(evaluate: dict | None) -> list[str]:
    """The workspace's top-1 per format with its 95% interval and n, and its paired test against float."""
    lines = ["### Accuracy (workspace)", ""]
    if evaluate is None:
        return lines + [f"Not available: no {EVALUATE_METRICS} in the workspace.", ""]
    rows = []
    for name in FORMATS:
        m = evaluate.get(name)
        if not isinstance(m, dict) or _number(m.get("top1")) is None:
            continue
        top1 = (interval_text(m["top1"], m["top1_low"], m["top1_high"], m["n"])
                if all(k in m for k in ("top1_low", "top1_high", "n")) else f"{100 * m['top1']:.1f}")
        drop = f"{m['drop_points']:+.2f}" if _number(m.get("drop_points")) is not None else "-"
        test = m.get("mcnemar_vs_float")
        rows.append(f"| {FORMATS[name]} | {top1} | {drop} | {paired_text(test if isinstance(test, dict) else None)} |")
    return lines + ["Top-1 with its 95% Wilson interval and the images scored; against float on the same images, "
                    "the exact McNemar test (b: images float gets right and the format wrong, c: the reverse).", "",
                    "| Format | Top-1 % (95% interval), n | vs float (points) | vs float: exact McNemar |",
                    "|---|---|---:|---|"] + rows + [""]


@dataclass(frozen=True)
class ImageChange:
    """One format, BASE against the workspace, on the test images both sides scored."""
    name: str
    images: int
    base_correct: int
    now_correct: int
    b: int  # right in BASE, wrong now
    c: int  # wrong in BASE, right now
    p_value: float

    def verdict(self, alpha: float) -> str:
        if self.b == self.c == 0:
            return "no image changed"
        return "**beyond chance**" if self.p_value <= alpha else "within noise"


def correctness(text: str) -> dict[str, dict[tuple[str, str], bool]]:
    """format -> {(path, label): top-1 right?} from the evaluate stage's predictions.csv text.

    The key holds the label too: an image relabelled between two commits is not the same test case.
    Raises ValueError when the text lacks the path and label columns."""
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    if not {"path", "label"} <= set(columns):
        raise ValueError(f"expected columns path,label,<format>_predicted,..., found {columns}")
    formats = [name for name in FORMATS if f"{name}_predicted" in columns]
    out: dict[str, dict] = {name: {} for name in formats}
    for row in reader:
        for name in formats:
            out[name][(row["path"], row["label"])] = row[f"{name}_predicted"] == row["label"]
    return out


def image_changes(base_text: str, now_text: str) -> list[ImageChange]:
    """Per format present on both sides: correct counts on the common images and the exact McNemar test
    (stats.mcnemar_exact) of BASE's correctness against the workspace's, image by image."""
    base, now = correctness(base_text), correctness(now_text)
    changes = []
    for name in FORMATS:
        if name not in base or name not in now:
            continue
        common = sorted(set(base[name]) & set(now[name]))
        before = [base[name][key] for key in common]
        after = [now[name][key] for key in common]
        test = mcnemar_exact(before, after)
        changes.append(ImageChange(name, len(common), sum(before), sum(after), test["b"], test["c"], test["p_value"]))
    return changes


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


# --- the report ------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


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


def build_report(root: Path, base: str, precision: int = 4, limit: int = MAX_CELLS,
                 alpha: float = ALPHA, pictures: Path | None = None) -> tuple[str, list[Guard]]:
    """(Markdown, guards) for the repository at `root` against revision `base`; `alpha` is the p-value
    at or below which a paired test calls a difference beyond chance. With `pictures` (a folder
    beside the report), confusion matrices and training curves are written there and linked."""
    root = repo_root(root)
    sha = resolve_revision(root, base)
    evaluate = _read_json(root / EVALUATE_METRICS)
    guards = check_guards(_read_yaml(root / PARAMS_FILE), evaluate, _read_json(root / PROFILE_METRICS), alpha)
    now_predictions = root / PREDICTIONS
    images = image_section(git_show(root, sha, PREDICTIONS),
                           now_predictions.read_text(encoding="utf-8") if now_predictions.is_file() else None, alpha)
    base_csv = {name: git_show(root, sha, f"{CONFUSION_DIR}/{name}.csv") for name in FORMATS}
    now_csv = {}
    for name in FORMATS:
        path = root / CONFUSION_DIR / f"{name}.csv"
        now_csv[name] = path.read_text(encoding="utf-8") if path.is_file() else None
    # DVC gets the name as given (it heads its column) and resolves it as git did above.
    report = render(base, sha, workspace_label(root), guards, dvc_diff(root, "params", base, precision),
                    dvc_diff(root, "metrics", base, precision), confusion_section(base_csv, now_csv, limit),
                    accuracy_section(evaluate), images,
                    pr_images.image_section(root, sha, pictures) if pictures is not None else ())
    return report, guards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("mcuvision.report.pr_report"),
                                     description="Markdown report of params, metrics, confusion-matrix and "
                                                 "guard changes between BASE and the workspace.")
    parser.add_argument("--base", required=True, help="git revision to compare with: branch, tag or commit")
    parser.add_argument("--output", type=Path, help="also write the report to this file, with its pictures "
                        "(confusion matrices, training curves) in <stem>_images/ beside it")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the project (default: current directory)")
    parser.add_argument("--precision", type=int, default=4, help="digits after the point in metric values")
    parser.add_argument("--max-cells", type=int, default=MAX_CELLS,
                        help="changed confusion cells listed per format (largest changes first)")
    parser.add_argument("--fail-on-guard", action="store_true",
                        help="exit 1 when a guard is crossed beyond chance (not on one within noise)")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help="p-value at or below which a paired test calls a difference beyond chance "
                             "(default %(default)s; 1 fails on every crossed limit)")
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error(f"--alpha must be within 0..1, got {args.alpha}")
    try:
        pictures = pr_images.images_folder(args.output) if args.output else None
        report, guards = build_report(args.repo, args.base, args.precision, args.max_cells, args.alpha, pictures)
    except ReportError as error:
        print(f"pr_report: {error}", file=sys.stderr)
        return 2
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    crossed = [g.name for g in guards if g.failed]
    if crossed and args.fail_on_guard:
        print(f"pr_report: guard crossed: {', '.join(crossed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
