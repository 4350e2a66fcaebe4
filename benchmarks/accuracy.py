"""Accuracy of a training profile on a folder of class images, through the real stages.

    .venv/bin/python benchmarks/accuracy.py --images ../shared/datasets/flowers_train \\
        [--set train=fast] [--set dataset.split.val_fraction=0.15 --set dataset.split.test_fraction=0.15] \\
        [--keep DIR]

A scratch copy of the working tree (benchmarks/scratch.py) gets params.yaml composed with the
--set Hydra overrides on the images as a `folder` dataset (ST's 80/20 split, no test share,
unless the overrides set one), then runs ingest, validate, train, quantize and evaluate as
dvc.yaml gives them. It prints, and writes as JSON beside the copy's metrics:
* ST's protocol: the best validation top-1 over the epochs (the split that selects the epoch),
  the epoch, the last epoch's validation top-1;
* evaluate's split (test when there is one, else validation): float Keras and int8 TFLite top-1;
* epochs, training wall time and images/s, and the CPU it ran on.
With --keep DIR, DIR/reports/accuracy_curve.png plots validation and training top-1 per epoch.

    .venv/bin/python benchmarks/accuracy.py --plot-table benchmarks/results/flowers_fast_128.csv

plots a table of such curves (one column pair per run) to the .png beside it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scratch import ROOT, cpu_name, prepare, stage

# The seed card's float top-1 on tf_flowers at 128 (../shared/reference/seed_model_card.md).
SEED_CARD = ("seed card 87.19% (ST, 3,670 photos, up to 1000 epochs)", 87.19)


def summary(project: Path, wall_s: float) -> dict:
    train = json.loads((project / "metrics/train.json").read_text())
    evaluate = json.loads((project / "metrics/evaluate.json").read_text())
    return {"best_val_top1": train["best_val_accuracy"], "best_epoch": train["best_epoch"],
            "final_val_top1": train.get("final_val_accuracy"), "epochs": train["epochs_run"],
            "train_wall_s": train["wall_time_s"], "train_images_per_s": train["images_per_s"],
            "eval_split": evaluate["split"], "eval_images": evaluate["images"],
            "float_top1": evaluate["float_keras"]["top1"], "int8_tflite_top1": evaluate["int8_tflite"]["top1"],
            "pipeline_wall_s": round(wall_s, 1), "cpu": cpu_name()}


def curves(project: Path) -> dict[str, list[float]]:
    """Per-epoch top-1 of a run, from its dvclive files: 'train' (augmented batches) and 'val'."""
    out = {}
    for name, folder in (("train", "train"), ("val", "eval")):
        tsv = (project / "dvclive/train/plots/metrics" / folder / "accuracy.tsv").read_text().splitlines()[1:]
        out[name] = [float(line.split("\t")[1]) for line in tsv]
    return out


def plot_curves(runs: dict[str, dict[str, list[float]]], png: Path, title: str | None = None,
                reference: tuple[str, float] | None = None) -> None:
    """One PNG: validation (solid) and augmented-training (dotted) top-1 per epoch of each run
    (`runs`: label -> curves() of the run); `reference`: a labelled horizontal line, in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, c in runs.items():
        line, = ax.plot(range(1, len(c["val"]) + 1), [100 * v for v in c["val"]], label=f"{label}: validation")
        ax.plot(range(1, len(c["train"]) + 1), [100 * v for v in c["train"]], ":", color=line.get_color(),
                linewidth=0.8, label=f"{label}: training batches (augmented)")
    if reference:
        ax.axhline(reference[1], color="grey", linestyle="--", linewidth=0.8)
        ax.text(2, reference[1] + 0.5, reference[0], color="grey", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def table_curves(csv: Path) -> dict[str, dict[str, list[float]]]:
    """The runs of a results table (columns epoch, RUN_val_top1, RUN_train_top1_augmented, ...;
    an empty cell: the run had stopped), as plot_curves takes them."""
    import pandas as pd

    table = pd.read_csv(csv)
    runs = {}
    for column in table.columns:
        if column.endswith("_val_top1"):
            run = column[: -len("_val_top1")]
            runs[run.replace("_", " ")] = {"val": table[column].dropna().tolist(),
                                           "train": table[f"{run}_train_top1_augmented"].dropna().tolist()}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="one sub-folder of images per class")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="a Hydra override")
    parser.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    parser.add_argument("--plot-table", type=Path, metavar="CSV",
                        help="only plot a results table (benchmarks/results/*.csv) to CSV's .png, and stop")
    args = parser.parse_args()
    if args.plot_table:
        plot_curves(table_curves(args.plot_table), args.plot_table.with_suffix(".png"),
                    title=f"{args.plot_table.stem} (top-1 per epoch)", reference=SEED_CARD)
        return
    if args.images is None:
        parser.error("--images is required (unless --plot-table)")
    with tempfile.TemporaryDirectory(prefix="accuracy_") as tmp:
        project = args.keep or Path(tmp) / "project"
        start = time.perf_counter()
        prepare(ROOT, project, args.overrides, args.images.resolve())
        for name in ("train", "quantize", "evaluate"):
            print(f"{name} ...", flush=True)
            stage(name, project)
        result = {"overrides": args.overrides, **summary(project, time.perf_counter() - start)}
        (project / "metrics" / "accuracy.json").write_text(json.dumps(result, indent=2))
        if args.keep:
            plot_curves({"this run": curves(project)}, project / "reports" / "accuracy_curve.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
