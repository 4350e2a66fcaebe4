"""BASE against the workspace, counted: the confusion-matrix cells whose counts changed, and each
format's test images scored right or wrong on both sides with the exact McNemar test on those
that changed (stats.mcnemar_exact)."""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass

from mcuvision.formats import FORMATS
from mcuvision.report.stats import mcnemar_exact


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


def correct_total(cells: Counter) -> tuple[int, int]:
    """(images on the diagonal, all images) of a confusion count."""
    return sum(n for (a, p), n in cells.items() if a == p), sum(cells.values())


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
