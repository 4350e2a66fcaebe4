"""One Markdown report of what a change does to the pipeline's numbers, for a pull request.

    python -m mcuvision.pr_report --base main [--output report.md] [--fail-on-guard]

It compares the workspace (HEAD plus uncommitted changes, as `dvc metrics diff` does) with BASE:

1. the guards of params.yaml `evaluate.guards`, checked on the workspace's metrics/evaluate.json
   and metrics/profile.json (int8 and int4/int8 accuracy drop, agreement with float, the selected
   board's RAM and flash fit);
2. `dvc params diff BASE --md` and `dvc metrics diff BASE --md`, from the real DVC CLI;
3. the confusion-matrix cells whose counts changed, per model format, from the evaluate stage's
   reports/evaluate/confusion/<format>.csv (committed to git, so BASE's come from `git show`).

The first line is a hidden marker the CI workflow looks for, so it updates its one comment on a
pull request instead of adding a new one on every push.

Exit status: 0, or 1 with --fail-on-guard when a guard is crossed; 2 when the report cannot be made
(BASE is not a revision, the directory is not a git + DVC repository, DVC is missing).
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

from .config.base import ConfigError
from .config.evaluate import Guards
from .formats import FORMATS, QUANTIZED

MARKER = "<!-- mcuvision-metrics-report -->"
PARAMS_FILE = "params.yaml"
EVALUATE_METRICS = "metrics/evaluate.json"
PROFILE_METRICS = "metrics/profile.json"
CONFUSION_DIR = "reports/evaluate/confusion"
# Food-101 has 10,201 cells per matrix: a review comment can only carry the largest moves.
MAX_CELLS = 15
W4W8_FORMAT = "w4w8_qdq_onnx"


class ReportError(RuntimeError):
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
    shown = _run(["git", "show", f"{rev}:{path}"], root)
    return shown.stdout if shown.returncode == 0 else None


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
    crossed: bool | None  # None: the numbers are not available

    @property
    def result(self) -> str:
        return {None: "not available", False: "pass", True: "**crossed**"}[self.crossed]


def _number(value) -> float | None:
    # bool is an int in Python; a NaN (no images scored) is no measurement either.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _missing(name: str, why: str) -> Guard:
    return Guard(name, f"not available: {why}", "", None)


def _drop_guard(name: str, drop, limit: float, drop_key: str, against: str) -> Guard:
    drop = _number(drop)
    if drop is None:
        return _missing(name, f"no `{drop_key}` in {EVALUATE_METRICS}")
    # drop is quantized minus reference, in points: a loss is negative.
    return Guard(name, f"{drop:+.2f} points vs {against}", f"≥ {-limit:+.2f} points", -drop > limit)


def _agreement_guard(name: str, agreement, limit: float) -> Guard:
    agreement = _number(agreement)
    if agreement is None:
        return _missing(name, f"no `agreement_with_float` in {EVALUATE_METRICS}")
    return Guard(name, f"{agreement:.4f}", f"≥ {limit:.4f}", agreement < limit)


def accuracy_guards(limits: Guards, evaluate: dict | None) -> list[Guard]:
    """Drop and agreement guards for every quantized format; w4w8 only where quantize made one."""
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
                                      "int8 QDQ"))
        else:
            guards.append(_drop_guard(f"`{name}` top-1 drop", scores.get("drop_points"),
                                      limits.max_int8_drop_points, "drop_points", "float"))
        guards.append(_agreement_guard(f"`{name}` agreement with float", scores.get("agreement_with_float"),
                                       limits.min_agreement_with_float))
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


def check_guards(params: dict | None, evaluate: dict | None, profile: dict | None) -> list[Guard]:
    try:  # the same reading and range checks as the evaluate stage's config
        limits = Guards.from_params(params or {})
    except ConfigError as error:
        accuracy = [_missing("accuracy guards", f"{PARAMS_FILE}: {error}")]
    else:
        accuracy = accuracy_guards(limits, evaluate)
    return accuracy + board_guards(profile)


def guards_section(guards: list[Guard]) -> list[str]:
    crossed = sum(g.crossed is True for g in guards)
    unknown = sum(g.crossed is None for g in guards)
    if crossed:
        verdict = f"**{crossed} guard{'s' if crossed > 1 else ''} crossed.**"
    else:
        verdict = "All guards pass." if not unknown else "No guard crossed."
    if unknown:
        verdict += f" {unknown} not available."
    lines = ["### Guards (workspace)", "", verdict, "", "| Guard | Value | Limit | Result |", "|---|---|---|---|"]
    lines += [f"| {g.name} | {g.value} | {g.limit} | {g.result} |" for g in guards]
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
           confusion: list[str]) -> str:
    lines = [MARKER, f"## Metrics: `{base}` → workspace", "",
             f"BASE `{base}` (`{base_sha[:8]}`) compared with the workspace, {workspace}.", ""]
    lines += guards_section(guards)
    lines += ["### Params", "", params_md or "No params changed.", ""]
    lines += ["### Metrics", "", metrics_md or "No metrics changed.", ""]
    lines += confusion
    return "\n".join(lines).rstrip() + "\n"


def build_report(root: Path, base: str, precision: int = 4, limit: int = MAX_CELLS) -> tuple[str, list[Guard]]:
    """(Markdown, guards) for the repository at `root` against revision `base`."""
    root = repo_root(root)
    sha = resolve_revision(root, base)
    guards = check_guards(_read_yaml(root / PARAMS_FILE), _read_json(root / EVALUATE_METRICS),
                          _read_json(root / PROFILE_METRICS))
    base_csv = {name: git_show(root, sha, f"{CONFUSION_DIR}/{name}.csv") for name in FORMATS}
    now_csv = {}
    for name in FORMATS:
        path = root / CONFUSION_DIR / f"{name}.csv"
        now_csv[name] = path.read_text(encoding="utf-8") if path.is_file() else None
    # DVC gets the name as given (it heads its column) and resolves it as git did above.
    report = render(base, sha, workspace_label(root), guards, dvc_diff(root, "params", base, precision),
                    dvc_diff(root, "metrics", base, precision), confusion_section(base_csv, now_csv, limit))
    return report, guards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcuvision.pr_report",
                                     description="Markdown report of params, metrics, confusion-matrix and "
                                                 "guard changes between BASE and the workspace.")
    parser.add_argument("--base", required=True, help="git revision to compare with: branch, tag or commit")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the project (default: current directory)")
    parser.add_argument("--precision", type=int, default=4, help="digits after the point in metric values")
    parser.add_argument("--max-cells", type=int, default=MAX_CELLS,
                        help="changed confusion cells listed per format (largest changes first)")
    parser.add_argument("--fail-on-guard", action="store_true", help="exit 1 when a guard is crossed")
    args = parser.parse_args(argv)
    try:
        report, guards = build_report(args.repo, args.base, args.precision, args.max_cells)
    except ReportError as error:
        print(f"pr_report: {error}", file=sys.stderr)
        return 2
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    crossed = [g.name for g in guards if g.crossed]
    if crossed and args.fail_on_guard:
        print(f"pr_report: guard crossed: {', '.join(crossed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
