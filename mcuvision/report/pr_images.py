"""Pictures for the pull-request report: confusion matrices (base beside head) and training curves.

`make diff OUTPUT=report.md` writes them into `report_images/` beside the report and links them
relatively, so the Markdown renders locally and `cml comment update --publish` uploads every
linked image with the comment. The confusion PNGs are evaluate's own (committed to git, so the
base's come from `git show`); the curves are drawn here from dvclive's per-epoch TSV files.
"""
from __future__ import annotations

from pathlib import Path

from mcuvision.formats import FORMATS
from mcuvision.report.pr_sources import git_show_bytes

CONFUSION_PNG = "reports/evaluate/confusion_{name}.png"
CURVES = {"validation": "dvclive/train/plots/metrics/eval/accuracy.tsv",
          "training batches": "dvclive/train/plots/metrics/train/accuracy.tsv"}


def tsv_series(data: bytes | None) -> list[float]:
    """The value column of a dvclive TSV (header `step<TAB>name`), in step order; [] when absent."""
    if not data:
        return []
    rows = [line.split("\t") for line in data.decode("utf-8").splitlines()[1:] if line.strip()]
    return [float(cells[1]) for cells in rows if len(cells) >= 2]


def curves_png(base: dict[str, list[float]], head: dict[str, list[float]], out: Path) -> None:
    """Top-1 (percent) per epoch into a PNG: base dashed, head solid; training batches paler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, series in (("base", base), ("head", head)):
        for kind, values in series.items():
            if values:
                ax.plot(range(1, len(values) + 1), [100 * v for v in values], "--" if label == "base" else "-",
                        color="C0" if kind == "validation" else "C1", alpha=1.0 if label == "head" else 0.6,
                        label=f"{label}: {kind}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def image_section(root: Path, base_sha: str, folder: Path) -> list[str]:
    """Markdown lines linking the pictures written into `folder` (paths relative to its parent,
    where the report is written). Formats with neither a base nor a head picture are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder.name
    lines = ["### Pictures", "", "| format | base | head |", "|---|---|---|"]
    shown = 0
    for name, title in FORMATS.items():
        path = CONFUSION_PNG.format(name=name)
        base, head = git_show_bytes(root, base_sha, path), root / path
        cells = []
        for side, data in (("base", base), ("head", head.read_bytes() if head.is_file() else None)):
            if data is None:
                cells.append("-")
                continue
            (folder / f"confusion_{name}_{side}.png").write_bytes(data)
            cells.append(f"![{title}, {side}]({link}/confusion_{name}_{side}.png)")
        if cells != ["-", "-"]:
            lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
            shown += 1
    if not shown:
        lines = ["### Pictures", "", "No confusion-matrix picture in the base or the head."]
    base_curves = {kind: tsv_series(git_show_bytes(root, base_sha, tsv)) for kind, tsv in CURVES.items()}
    head_curves = {kind: tsv_series((root / tsv).read_bytes() if (root / tsv).is_file() else None)
                   for kind, tsv in CURVES.items()}
    if any(base_curves.values()) or any(head_curves.values()):
        curves_png(base_curves, head_curves, folder / "training_curves.png")
        lines += ["", f"![Training curves: top-1 per epoch, base and head]({link}/training_curves.png)"]
    return lines + [""]


def images_folder(output: Path) -> Path:
    """Where the pictures of a report written to `output` go: `<stem>_images/` beside it."""
    return output.parent / f"{output.stem}_images"

