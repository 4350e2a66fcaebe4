"""Markdown for the reports (reports/profile.md, the model card, docs/ tables): the one table renderer
and the byte-size cell, shared so that every table in the project has the same shape."""
from __future__ import annotations

from collections.abc import Iterable

KIB = 1024.0


def kib(value: float | int | None) -> str:
    """A byte count as a KiB cell, "n/a" when unknown."""
    return "n/a" if value is None else f"{value / KIB:.2f} KiB"


def table(header: list[str], rows: Iterable[Iterable]) -> list[str]:
    """A GitHub Markdown table as lines, with a blank line after it. A "|" inside a cell is escaped, so a
    cell's text never splits into two columns."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return lines + [""]
