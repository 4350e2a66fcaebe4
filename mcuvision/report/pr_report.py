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

The parts: pr_sources reads git, DVC and the workspace's records; pr_guards judges the guards;
pr_compare counts what changed (confusion cells, images with the McNemar test); pr_render writes the
Markdown; pr_images draws the pictures. This module builds the report from them and is the command.

The first line is a hidden marker the CI workflow looks for, so it updates its one comment on a
pull request instead of adding a new one on every push.

Exit status: 0, or 1 with --fail-on-guard when a guard is crossed beyond chance (p <= --alpha; with
--alpha 1 every crossed limit fails); 2 when the report cannot be made (BASE is not a revision, the
directory is not a git + DVC repository, DVC is missing).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcuvision.cli import prog
from mcuvision.formats import FORMATS
from mcuvision.report import pr_images, pr_render, pr_sources
from mcuvision.report.pr_guards import ALPHA, Guard, check_guards
from mcuvision.report.pr_render import MAX_CELLS
from mcuvision.report.pr_sources import ReportError


def build_report(root: Path, base: str, precision: int = 4, limit: int = MAX_CELLS,
                 alpha: float = ALPHA, pictures: Path | None = None) -> tuple[str, list[Guard]]:
    """(Markdown, guards) for the repository at `root` against revision `base`; `alpha` is the p-value
    at or below which a paired test calls a difference beyond chance. With `pictures` (a folder
    beside the report), confusion matrices and training curves are written there and linked."""
    root = pr_sources.repo_root(root)
    sha = pr_sources.resolve_revision(root, base)
    evaluate = pr_sources.read_json(root / pr_sources.EVALUATE_METRICS)
    guards = check_guards(pr_sources.read_yaml(root / pr_sources.PARAMS_FILE), evaluate,
                          pr_sources.read_json(root / pr_sources.PROFILE_METRICS), alpha)
    images = pr_render.image_section(pr_sources.git_show(root, sha, pr_sources.PREDICTIONS),
                                     pr_sources.workspace_text(root, pr_sources.PREDICTIONS), alpha)
    confusion = [f"{pr_sources.CONFUSION_DIR}/{name}.csv" for name in FORMATS]
    base_csv = {name: pr_sources.git_show(root, sha, path) for name, path in zip(FORMATS, confusion)}
    now_csv = {name: pr_sources.workspace_text(root, path) for name, path in zip(FORMATS, confusion)}
    # DVC gets the name as given (it heads its column) and resolves it as git did above.
    report = pr_render.render(base, sha, pr_sources.workspace_label(root), guards,
                              pr_sources.dvc_diff(root, "params", base, precision),
                              pr_sources.dvc_diff(root, "metrics", base, precision),
                              pr_render.confusion_section(base_csv, now_csv, limit),
                              pr_render.accuracy_section(evaluate), images,
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
