"""The Great Expectations suite over the image manifest, its results, and its Data Docs.

Each expectation carries a severity: a failed `critical` one stops the pipeline (the data
cannot be trained on as it is), a failed `warning` is reported and the run goes on.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mcuvision.config.dataset import ChecksConfig
from mcuvision.data.images import DECODABLE_FORMATS

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no network calls from a pipeline stage


@dataclass
class Finding:
    """One check's outcome: the offending files (manifest paths) and the classes (or other set
    values) it is about, so that every failure can name what to fix."""
    check: str
    severity: str
    success: bool
    unexpected_count: int
    files: list[str]
    observed: object = None
    names: list[str] = field(default_factory=list)
    bounds: str = ""  # what the check expects and what it found, e.g. "expected 32 to 4096, found 1"

    def as_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity, "success": self.success,
                "unexpected_count": self.unexpected_count, "files": self.files[:50],
                "names": self.names[:50], "observed": self.observed, "bounds": self.bounds}


def structural_problems(rows: pd.DataFrame, classes: list[str]) -> list[str]:
    """Sentences for what no training can start from: fewer than 2 classes, a class with no
    usable image (none listed; or, once `rows` has the `decodes` and `format` columns of
    mcuvision.data.images, none that decodes in a trainable format). [] when there is none."""
    problems = []
    if len(classes) < 2:
        problems.append(f"the data has {len(classes)} class{'es' if len(classes) != 1 else ''} "
                        f"({', '.join(classes) or 'none'}): a classifier needs at least 2")
    usable = rows
    if {"decodes", "format"} <= set(rows.columns):
        usable = rows[rows["decodes"].astype(bool) & rows["format"].isin(DECODABLE_FORMATS)]
    for name in classes:
        if (usable["label"] == name).any():
            continue
        files = sorted(rows.loc[rows["label"] == name, "path"])
        detail = (f"none of its {len(files)} files decodes as a JPEG/PNG/BMP/GIF/WebP: {', '.join(files[:5])}"
                  f"{' ...' if len(files) > 5 else ''}" if files else "no file at all")
        problems.append(f"class {name!r} has no usable image ({detail})")
    return problems


def look_alike_classes(classes: list[str]) -> Finding:
    """Warning: class names that differ only by case or Unicode normalisation (`Cat` and `cat`;
    `crème` in NFC and in NFD, which print the same): two classes a user takes for one. Names that
    print the same are shown escaped, with their normal form."""
    def key(name: str) -> str:
        return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())

    def shown(name: str) -> str:
        forms = [f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, name)]
        return f"{ascii(name)} ({'/'.join(forms) or 'mixed'})"

    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(key(name), []).append(name)
    clashes = [names for names in groups.values() if len(names) > 1]
    named = []
    for names in clashes:
        same_print = len({unicodedata.normalize("NFC", n) for n in names}) < len(names)
        named.append(" and ".join(shown(n) if same_print else n for n in names))
    return Finding(check="class names distinct after case folding and Unicode normalisation", severity="warning",
                   success=not clashes, unexpected_count=len(clashes), files=[], names=named)


def add_derived_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-row facts about groups of rows, so that row-level expectations can check them."""
    rows = rows.copy()
    rows["class_count"] = rows.groupby("label")["path"].transform("size")
    rows["class_share_of_largest"] = rows["class_count"] / rows["class_count"].max()
    rows["sha256_splits"] = rows.groupby("sha256")["split"].transform("nunique")
    rows["sha256_labels"] = rows.groupby("sha256")["label"].transform("nunique")
    return rows


def build_suite(classes: list[str], checks: ChecksConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    critical, warning = "critical", "warning"
    expectations = [
        gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True], severity=critical,
                                        description="every file decodes as an image"),
        gxe.ExpectColumnValuesToBeInSet(column="format", value_set=list(DECODABLE_FORMATS), severity=critical,
                                        description="formats the training pipeline can decode"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=classes, severity=critical,
                                        description="labels in the class set"),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=classes, severity=critical,
                                                 description="no empty class"),
        gxe.ExpectColumnValuesToBeBetween(column="class_count", min_value=checks.min_images_per_class,
                                          severity=critical, description="minimum images per class"),
        gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$", severity=critical,
                                           description="sha256 well-formed"),
        gxe.ExpectColumnValuesToBeBetween(column="sha256_splits", max_value=1, severity=warning,
                                          description="no identical image in two splits (fixed: dropped)"),
        gxe.ExpectColumnValuesToBeBetween(column="sha256_labels", max_value=1, severity=warning,
                                          description="no identical image under two labels"),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=checks.min_side, max_value=checks.max_side,
                                          severity=warning, description="image width within bounds"),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=checks.min_side, max_value=checks.max_side,
                                          severity=warning, description="image height within bounds"),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=["RGB"], severity=warning,
                                        description="RGB images (others are converted at load)"),
        gxe.ExpectColumnValuesToBeBetween(column="class_share_of_largest", min_value=1.0 / checks.max_imbalance,
                                          severity=warning, description="class balance"),
    ]
    suite = gx.ExpectationSuite(name="image_manifest")
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def run_suite(rows: pd.DataFrame, classes: list[str], checks: ChecksConfig,
              docs_dir: Path) -> tuple[list[Finding], dict]:
    """Validate `rows`; write Data Docs HTML into `docs_dir`. Returns findings and the raw GX result."""
    import great_expectations as gx

    rows = add_derived_columns(rows).reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="gx.") as project:
        context = gx.get_context(mode="file", project_root_dir=project)
        context.variables.progress_bars = {"globally": False}
        batch = (context.data_sources.add_pandas("manifest").add_dataframe_asset("images")
                 .add_batch_definition_whole_dataframe("all"))
        suite = context.suites.add(build_suite(classes, checks))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="manifest", data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name="validate", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE"}))
        outcome = checkpoint.run(batch_parameters={"dataframe": rows})
        result = next(iter(outcome.run_results.values()))
        site = Path(project) / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.rmtree(docs_dir, ignore_errors=True)
        shutil.copytree(site, docs_dir)
    findings = [_finding(r, rows) for r in result.results]
    return findings, result.to_json_dict()


def _finding(result, rows: pd.DataFrame) -> Finding:
    config = result.expectation_config
    details = result.result or {}
    positions = details.get("unexpected_index_list") or []
    offending = rows.loc[[p for p in positions if isinstance(p, int)]]
    files = sorted(offending["path"].tolist())
    # Set-level expectations name no rows: GX 1.x lists the values of the set absent from the data
    # in partial_missing_list and the distinct values outside it in partial_unexpected_list.
    names = set(offending["label"].astype(str))
    names |= {str(v) for v in details.get("partial_missing_list") or []}
    if config.type.startswith("expect_column_distinct_values"):
        names |= {str(v) for v in details.get("partial_unexpected_list") or []}
    severity = getattr(config.severity, "value", str(config.severity)).lower()
    return Finding(check=config.description or config.type, severity=severity, success=bool(result.success),
                   unexpected_count=int(details.get("unexpected_count") or 0), files=files,
                   observed=details.get("observed_value"), names=sorted(names),
                   bounds="" if result.success else _bounds(config, details))


def _bounds(config, details: dict) -> str:
    """'expected 32 to 4096, found 1' for a failed range expectation: the warning then says what
    was wrong, not only the check's name. '' for other expectations. The values found are those of
    every row outside the range (the suite runs with the COMPLETE result format)."""
    low, high = config.kwargs.get("min_value"), config.kwargs.get("max_value")
    if low is None and high is None:
        return ""
    expected = (f"{low:g} to {high:g}" if low is not None and high is not None
                else f"at least {low:g}" if low is not None else f"at most {high:g}")
    found = sorted({float(v) for v in details.get("unexpected_list") or []})
    shown = ", ".join(f"{v:.3g}" for v in found[:5]) + (" ..." if len(found) > 5 else "")
    return f"expected {expected}" + (f", found {shown}" if found else "")
