"""validate: data/raw/ -> the image manifest with deterministic splits, checked by Great Expectations.

1. List every image of data/raw/ (at any depth, links followed; OS litter, unusable links,
   unreadable, special and non-image files skipped and counted) with its label (its class folder)
   and the source's own split; stop at once on fewer than 2 classes or a name that is not UTF-8.
2. Inspect each file (sha256, header, size, mode, format) in parallel and decode it with
   TensorFlow, the decoder of training; stop on a class with no usable image.
3. Assign splits: the dataset's own test split where it has one, else `dataset.split.rule`
   (stratified per class, or ST's seeded rule); warn, naming them, on a split with no image (train
   refuses an empty val) and on a class absent from a split; warn on class names that differ only
   by case or Unicode normalisation.
4. Run the expectation suite; write its results, Data Docs and metrics/validate.json.
5. Stop on critical findings, naming the files and classes; otherwise drop identical images
   from all but one split, gather near-duplicates (perceptual hashes; images under MIN_HASH_SIDE
   pixels a side have none and are named) into one split, and write
   the manifest, with each file's EXIF orientation (applied by every stage that decodes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mcuvision.atomic import atomic_path, write_json
from mcuvision.config.base import load_params, seed_of
from mcuvision.config.dataset import DatasetConfig
from mcuvision.data.expectations import Finding, look_alike_classes, run_suite, structural_problems
from mcuvision.data.images import MIN_HASH_SIDE, inspect_files
from mcuvision.data.sources import RECORD, Skipped, litter_reason, safe_name, skipped_line, walk_files
from mcuvision.data.splits import (
    SPLIT_ORDER,
    assign_splits,
    drop_cross_split_duplicates,
    gather_near_duplicates,
    missing_splits,
    near_duplicate_pairs,
)
from mcuvision.errors import PipelineError, fail, require_inputs

MANIFEST_COLUMNS = ["path", "label", "class_index", "split", "sha256", "width", "height",
                    "mode", "format", "bytes", "orientation"]
NEAR_DUPLICATES_CSV = "near_duplicates.csv"


class ValidationFailed(PipelineError, RuntimeError):
    """Critical expectations failed: the data cannot be trained on as it is."""


def list_files(raw: Path, record: dict, skipped: Skipped | None = None) -> pd.DataFrame:
    """Rows (path relative to `raw`, label, source_split) of every image in a class folder, at any
    depth; what walk_files leaves out (OS litter, unusable links, unreadable, special and non-image
    files) is counted in `skipped`. Raises ValidationFailed naming the paths that are not valid
    UTF-8 (ingest writes such names with %XX; neither the manifest nor Great Expectations takes them)."""
    skipped = skipped if skipped is not None else Skipped()
    roots = [(raw / s, s) for s in record["splits"]] if record.get("splits") else [(raw, "")]
    rows = []
    for root, source_split in roots:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if litter_reason(folder.name, True):
                skipped.add_tree(litter_reason(folder.name, True), folder, raw)
                continue
            for f in walk_files(folder, skipped, raw):
                rows.append({"path": f.relative_to(raw).as_posix(), "label": folder.name,
                             "source_split": source_split})
    undecodable = [safe_name(r["path"]) for r in rows if safe_name(r["path"]) != r["path"]]
    if undecodable:
        names = "file name" if len(undecodable) == 1 else "file names"
        raise ValidationFailed(f"{len(undecodable)} {names} in {raw} not valid UTF-8: "
                               f"{', '.join(undecodable[:5])}{' ...' if len(undecodable) > 5 else ''} "
                               "(shown with those bytes as %XX); run ingest, which writes them so")
    return pd.DataFrame(rows, columns=["path", "label", "source_split"])


def expected_splits(config: DatasetConfig, record: dict) -> list[str]:
    """The splits this data must have: train and val, and test when dataset.split.test_fraction
    is above 0 or the source has its own test folder."""
    has_test = config.split.test_fraction > 0 or "test" in (record.get("splits") or [])
    return [s for s in SPLIT_ORDER if s != "test" or has_test]


def split_coverage(rows: pd.DataFrame, classes: list[str], splits: list[str]) -> list[Finding]:
    """Warnings: a split of `splits` with no image at all (train refuses an empty val split), and a
    class with no image in one of them (evaluation would never test it)."""
    empty = [s for s in splits if not (rows["split"] == s).any()]
    missing = missing_splits(rows, classes, splits)
    return [Finding(check="no empty split", severity="warning", success=not empty, unexpected_count=len(empty),
                    files=[], names=[f"{s} (no image at all)" for s in empty], observed=empty),
            Finding(check="every class in every split", severity="warning", success=not missing,
                    unexpected_count=len(missing), files=[],
                    names=[f"{c} (no {' or '.join(s)} image)" for c, s in missing.items()],
                    observed={c: s for c, s in missing.items()})]


def gather_near_copies(kept: pd.DataFrame, max_distance: int | None, csv: Path) -> tuple[pd.DataFrame, dict]:
    """Near-duplicate pairs of `kept` into `csv` (path_a, path_b, their splits before the move,
    dHash and pHash distances); each group moved into its first split. Returns (rows with the new
    splits, {"pairs", "cross_split_pairs", "moved"})."""
    columns = ["path_a", "path_b", "split_a", "split_b", "dhash_distance", "phash_distance"]
    pairs = (near_duplicate_pairs(kept, max_distance) if max_distance is not None
             else pd.DataFrame(columns=["a", "b", "dhash_distance", "phash_distance"]))
    table = pd.DataFrame({"path_a": kept.loc[pairs["a"], "path"].to_numpy(),
                          "path_b": kept.loc[pairs["b"], "path"].to_numpy(),
                          "split_a": kept.loc[pairs["a"], "split"].to_numpy(),
                          "split_b": kept.loc[pairs["b"], "split"].to_numpy(),
                          "dhash_distance": pairs["dhash_distance"].to_numpy(),
                          "phash_distance": pairs["phash_distance"].to_numpy()}, columns=columns)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    split, moved = gather_near_duplicates(kept, pairs)
    kept = kept.assign(split=split)
    return kept, {"pairs": int(len(table)), "cross_split_pairs": int((table["split_a"] != table["split_b"]).sum()),
                  "moved": int(moved.sum()), "moved_files": kept.loc[moved, "path"].tolist(),
                  "max_distance": max_distance}


def split_counts(rows: pd.DataFrame, classes: list[str]) -> dict:
    table = pd.crosstab(rows["label"], rows["split"]).reindex(index=classes, columns=SPLIT_ORDER, fill_value=0)
    return {cls: {s: int(table.loc[cls, s]) for s in SPLIT_ORDER} for cls in classes}


def critical_message(failed: list[Finding], errors: dict[str, str] | None = None) -> str:
    """The failed critical checks, each with its classes and up to 20 files (with the decoder's
    error when `errors`, {path: error}, has one)."""
    errors = errors or {}
    lines = ["critical data checks failed:"]
    for f in failed:
        named = f" classes: {', '.join(f.names)};" if f.names else ""
        files = "offending files:" if f.files else ""
        lines.append(f"  - {f.check}:{named} {f.unexpected_count or ''} {files}".rstrip())
        lines += [f"      {path}{': ' + errors[path] if errors.get(path) else ''}" for path in f.files[:20]]
        if len(f.files) > 20:
            lines.append(f"      ... and {len(f.files) - 20} more (reports/validation/)")
        if not f.files and not f.names and f.observed is not None:
            lines.append(f"      observed: {f.observed}")
    return "\n".join(lines)


def run(config: DatasetConfig, seed: int, *, raw: Path, manifest: Path, metrics: Path, reports: Path) -> dict:
    require_inputs(raw / RECORD)
    record = json.loads((raw / RECORD).read_text(encoding="utf-8"))
    classes = record["classes"]
    skipped = Skipped()
    rows = list_files(raw, record, skipped)
    # Structural errors first: seconds, not a full decode, before the user learns of them.
    problems = structural_problems(rows, classes)
    if problems:
        raise ValidationFailed("; ".join(problems))
    facts = pd.DataFrame(inspect_files(raw / p for p in rows["path"]), index=rows.index)
    rows = rows.join(facts)
    problems = structural_problems(rows, classes)
    if problems:
        raise ValidationFailed("; ".join(problems))
    rows["class_index"] = rows["label"].map({c: i for i, c in enumerate(classes)}).fillna(-1).astype(int)
    rows["split"] = assign_splits(rows, config.split.val_fraction, config.split.test_fraction, seed,
                                  config.split.rule)

    reports.mkdir(parents=True, exist_ok=True)
    findings, gx_result = run_suite(rows, classes, config.checks, reports / "data_docs")
    findings.append(look_alike_classes(classes))
    write_json(reports / "expectations.json", gx_result)
    kept, dropped = drop_cross_split_duplicates(rows)
    kept, near = gather_near_copies(kept, config.checks.near_duplicate_distance, reports / NEAR_DUPLICATES_CSV)
    tiny = rows["decodes"].astype(bool) & (rows[["width", "height"]].min(axis=1) < MIN_HASH_SIDE)
    near["too_small"] = rows.loc[tiny, "path"].tolist()  # no perceptual hash: left out of the search
    findings += split_coverage(kept, classes, expected_splits(config, record))  # after the drop: it can empty one
    with atomic_path(reports / "dropped_duplicates.csv") as tmp:
        dropped[["path", "label", "split", "sha256"]].to_csv(tmp, index=False)

    failed = [f for f in findings if not f.success]
    summary = {
        "images": int(len(kept)), "classes": len(classes),
        "splits": {s: int((kept["split"] == s).sum()) for s in SPLIT_ORDER},
        "per_class": split_counts(kept, classes),
        "dropped_duplicates": int(len(dropped)),
        "near_duplicates": near,
        "exif_oriented": rows.loc[rows["orientation"] != 1, "path"].tolist(),
        "split_rule": config.split.rule,
        "skipped_by_ingest": record.get("skipped"),
        "skipped": skipped.as_dict(),
        "checks": {"passed": len(findings) - len(failed),
                   "failed_critical": sum(f.severity == "critical" for f in failed),
                   "failed_warning": sum(f.severity != "critical" for f in failed)},
        "issues": [f.as_dict() for f in failed],
    }
    write_json(metrics, summary)
    critical = [f for f in failed if f.severity == "critical"]
    if critical:
        raise ValidationFailed(critical_message(critical, dict(zip(rows["path"], rows["error"]))))
    with atomic_path(manifest) as tmp:
        kept[MANIFEST_COLUMNS].to_csv(tmp, index=False)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="Build and check the image manifest.")
    for name in ("raw", "manifest", "metrics", "reports"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        summary = run(DatasetConfig.from_params(params), seed_of(params), raw=args.raw, manifest=args.manifest,
                      metrics=args.metrics, reports=args.reports)
    except PipelineError as error:
        fail("validate", error)
    if summary["skipped_by_ingest"] is not None:  # absent from records written before it was counted
        print(skipped_line("validate: ingest", summary["skipped_by_ingest"]))
    if summary["skipped"]["files"]:
        print(skipped_line("validate", summary["skipped"]))
    for issue in summary["issues"]:
        more = " ..." if len(issue["names"]) > 10 else ""
        parts = [f"{', '.join(issue['names'][:10])}{more}" if issue["names"] else "",
                 f"{issue['unexpected_count']} rows {', '.join(issue['files'][:5])}"
                 f"{' ...' if len(issue['files']) > 5 else ''}" if issue["files"] else ""]
        bounds = f" ({issue['bounds']})" if issue["bounds"] else ""
        print(f"validate: warning: check not met: {issue['check']}{bounds}: {'; '.join(p for p in parts if p)}")
    near = summary["near_duplicates"]
    if near["pairs"]:
        print(f"validate: {near['pairs']} near-duplicate pairs ({near['cross_split_pairs']} across splits); "
              f"{near['moved']} images moved into their copy's split: {', '.join(near['moved_files'][:5])}"
              f"{' ...' if near['moved'] > 5 else ''} ({args.reports / NEAR_DUPLICATES_CSV})")
    small = near["too_small"] if near["max_distance"] is not None else []
    if small:
        print(f"validate: {len(small)} images under {MIN_HASH_SIDE} pixels a side left out of the near-duplicate "
              f"search (a hash of so few pixels matches unrelated images): {', '.join(small[:5])}"
              f"{' ...' if len(small) > 5 else ''}")
    oriented = summary["exif_oriented"]
    if oriented:
        print(f"validate: {len(oriented)} images turned by their EXIF orientation, as a photo viewer shows "
              f"them: {', '.join(oriented[:5])}{' ...' if len(oriented) > 5 else ''}")
    print(f"validate: {summary['images']} images, {summary['classes']} classes, splits {summary['splits']}, "
          f"{summary['dropped_duplicates']} duplicates dropped -> {args.manifest}")


if __name__ == "__main__":
    main()
