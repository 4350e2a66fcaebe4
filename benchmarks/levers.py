"""Training levers told apart from noise: each setting trained with several seeds on ONE fixed split,
scored image by image on the same validation images, compared with a baseline by a paired test.

    .venv/bin/python benchmarks/levers.py --images ../shared/datasets/flowers_train \\
        --set train=fast --lever baseline= --lever "smoothing 0.2=train.label_smoothing=0.2" \\
        --seeds 3 [--screen] --out benchmarks/results/levers_screen.csv

ingest and validate run once in a scratch copy (benchmarks/scratch.py) with the --set overrides, so
every run sees the same split; then, per lever and seed, params.yaml is recomposed with the lever's
overrides (comma-separated; empty: the baseline) and `seed=<seed>` (which seeds the weights, the
augmentation and the batch order: validate is not run again, so the split stays), the train stage
runs as dvc.yaml gives it, and the float model is scored on every validation image. --screen trains
at 64x64 throughout (`model.res=64`, no progressive resizing): a cheaper ranking, to be confirmed at
the model's side. One CSV row per run (the images' right/wrong as a string of 0/1 in manifest order)
is appended to --out, so an interrupted sweep keeps what it finished and a rerun skips it.

    .venv/bin/python benchmarks/levers.py --summary benchmarks/results/levers_screen.csv

prints the lever table as Markdown (`--render docs/levers.md` writes it there, under a header naming
the CSV: tests/test_levers.py fails when the committed page differs from its CSV's render): per
lever, mean and spread (sample standard deviation) of top-1 over seeds, the difference from the
first lever (the baseline), and the exact McNemar test on the discordant images pooled over seed
pairs (lever and baseline with the same seed; mcuvision.report.stats).
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mcuvision.markdown import table as markdown_table
from scratch import ROOT, cpu_name, folder_dataset, prepare, python, stage

SCREEN = ["model.res=64", "train.low_res=null", "train.low_res_epochs=0"]
COLUMNS = ["lever", "overrides", "seed", "mode", "top1", "best_val_top1", "best_epoch", "epochs", "train_wall_s",
           "images", "correct", "cpu"]

# The saved float model on every validation image, in manifest order: prints a string of 0/1.
SCORE = """
import keras, numpy as np, pandas as pd
from mcuvision.config.base import load_params
from mcuvision.config.model import ModelConfig
from mcuvision.data.input_pipeline import decode_all, read_split
from mcuvision.model.layers import Clip
from mcuvision.runtime.runners import keras_predict
from pathlib import Path
model_config = ModelConfig.from_params(load_params())
val = read_split(pd.read_csv("data/manifest.csv"), Path("data/raw"), "val")
images = decode_all(val.paths, model_config.res, model_config.interpolation, val.orientations)
probs = keras_predict(keras.models.load_model("models/float.keras"), images)
print("CORRECT " + "".join("1" if ok else "0" for ok in probs.argmax(1) == val.labels))
"""


def parse_lever(text: str) -> tuple[str, list[str]]:
    """'NAME=KEY=VALUE,KEY=VALUE' (or 'NAME=' for no override) -> (NAME, [KEY=VALUE, ...])."""
    name, _, overrides = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"--lever {text!r}: expected NAME=OVERRIDES (OVERRIDES may be empty)")
    return name, [o for o in overrides.split(",") if o]


def train_once(project: Path, base: list[str], images: Path, overrides: list[str], seed: int) -> dict:
    """Recompose params.yaml with `overrides` and `seed`, train, score: one CSV row's figures."""
    python(["-m", "mcuvision.compose", *folder_dataset(images, base, project), *base, *overrides, f"seed={seed}"],
           project)
    start = time.perf_counter()
    stage("train", project)
    wall = time.perf_counter() - start
    metrics = json.loads((project / "metrics/train.json").read_text())
    correct = python(["-c", SCORE], project).split("CORRECT ")[1].split()[0]
    return {"top1": round(correct.count("1") / len(correct), 5), "best_val_top1": metrics["best_val_accuracy"],
            "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs_run"], "train_wall_s": round(wall, 1),
            "images": len(correct), "correct": correct, "cpu": cpu_name()}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per lever (in first-seen order) and mode: seeds, mean and spread of top-1 (%), the difference
    from the first lever of that mode, and McNemar's b, c and p pooled over the seeds both ran."""
    from mcuvision.report.stats import mcnemar_exact

    rows = []
    for mode, runs in table.groupby("mode", sort=False):
        levers = list(dict.fromkeys(runs["lever"]))
        base = runs[runs["lever"] == levers[0]].set_index("seed")
        for lever in levers:
            mine = runs[runs["lever"] == lever].set_index("seed")
            seeds = sorted(set(mine.index) & set(base.index))
            ref = np.concatenate([[c == "1" for c in base.loc[s, "correct"]] for s in seeds]) if seeds else []
            other = np.concatenate([[c == "1" for c in mine.loc[s, "correct"]] for s in seeds]) if seeds else []
            test = mcnemar_exact(ref, other) if seeds and lever != levers[0] else None
            top1 = 100 * mine["top1"]
            rows.append({"mode": mode, "lever": lever, "seeds": len(mine), "top1_mean": round(top1.mean(), 2),
                         "top1_sd": round(top1.std(ddof=1), 2) if len(mine) > 1 else None,
                         "delta_points": (round(top1.mean() - 100 * base["top1"].mean(), 2)
                                          if lever != levers[0] else None),
                         "b": test and test["b"], "c": test and test["c"],
                         "p_value": round(test["p_value"], 4) if test else None,
                         "train_min_per_run": round(mine["train_wall_s"].mean() / 60, 1)})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (empty cells for missing values)."""
    cells = frame.astype(object).where(frame.notna(), "")
    return "\n".join(markdown_table(list(frame.columns), cells.itertuples(index=False)))


def render(csv_path: Path) -> str:
    """docs/levers.md's text: the lever table of `csv_path` (a runs CSV of this script) with its source."""
    table = pd.read_csv(csv_path, dtype={"correct": str})
    cpus = ", ".join(sorted(set(table["cpu"])))
    return (f"# Training levers on real photos\n\n<!-- rendered by benchmarks/levers.py --render from "
            f"{csv_path.as_posix()}: edit the CSV's runs, not this page -->\n\nFrom `{csv_path.as_posix()}` "
            f"({len(table)} runs; CPU: {cpus}). Top-1 on the validation images of one fixed split, mean and "
            f"sample standard deviation over seeds; `delta_points` against the mode's first lever, McNemar's "
            f"exact test on the discordant images (b: the baseline right and the lever wrong, c: the reverse) "
            f"pooled over the seeds both ran.\n\n{markdown(summary(table))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="one sub-folder of images per class")
    parser.add_argument("--set", action="append", default=[], dest="base", help="a Hydra override for every run")
    parser.add_argument("--lever", action="append", type=parse_lever, default=[],
                        help="NAME=OVERRIDES (comma-separated; the first lever is the baseline)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per lever (127, 128, ...)")
    parser.add_argument("--screen", action="store_true", help="train at 64x64 throughout: rank, then confirm")
    parser.add_argument("--out", type=Path, help="CSV of runs, appended to (finished runs are skipped)")
    parser.add_argument("--summary", type=Path, metavar="CSV", help="only print the lever table of CSV")
    parser.add_argument("--render", type=Path, metavar="MD", help="with --summary: write the page to MD")
    parser.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    if args.summary:
        if args.render:
            args.render.write_text(render(args.summary), encoding="utf-8")
        print(markdown(summary(pd.read_csv(args.summary, dtype={"correct": str}))))
        return
    if not (args.images and args.lever and args.out):
        parser.error("--images, --lever and --out are required (unless --summary)")
    mode = "screen 64x64" if args.screen else "full"
    base = [*args.base, *(SCREEN if args.screen else [])]
    done = set()
    if args.out.exists():
        done = {(r["lever"], int(r["seed"]), r["mode"]) for r in csv.DictReader(args.out.open())}
    with tempfile.TemporaryDirectory(prefix="levers_") as tmp:
        project = args.keep or Path(tmp) / "project"
        prepare(ROOT, project, base, args.images.resolve())
        for seed in range(127, 127 + args.seeds):  # seed by seed: a cut-short sweep still pairs
            for name, overrides in args.lever:
                if (name, seed, mode) in done:
                    continue
                print(f"{mode}: {name} ({' '.join(overrides) or 'baseline'}), seed {seed} ...", flush=True)
                row = {"lever": name, "overrides": " ".join(overrides), "seed": seed, "mode": mode,
                       **train_once(project, base, args.images.resolve(), overrides, seed)}
                new = not args.out.exists()
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a", newline="") as f:
                    writer = csv.DictWriter(f, COLUMNS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                print(f"  top-1 {100 * row['top1']:.2f}% on {row['images']} validation images, "
                      f"{row['train_wall_s'] / 60:.1f} min", flush=True)
    print(markdown(summary(pd.read_csv(args.out, dtype={"correct": str}))))


if __name__ == "__main__":
    main()
