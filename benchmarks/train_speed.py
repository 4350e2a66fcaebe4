"""Training speed of the real train stage, several settings side by side in one run.

    .venv/bin/python benchmarks/train_speed.py [--before REV] [--images DIR] [--epochs 6] [--repeats 2]
        [--variant 'NAME:override override ...' ...]

Each variant is a scratch copy of a checkout (the working tree, or git revision REV for the
`before` variant) whose params.yaml is composed from its conf/ with the variant's Hydra overrides
(dataset = the images in --images as a `folder` dataset, test share 0). ingest and validate run
once per copy; then `python -m stages.train` runs there in a fresh process, the way `dvc repro`
runs it, so graph tracing, JPEG decoding and caching are all counted. Variants are run in turn,
round after round (--repeats), so that a background load hits them alike; compare the RATIOS.

Per run it reads:
* training images/s: the stage's own steady-state figure (metrics/train.json `images_per_s`: the
  median over epochs after the first, timed over the training batches only);
* epoch seconds: wall time per epoch as Keras prints it (training, precise BN and validation);
* first-epoch extra: the first epoch's seconds minus the median of the others (tracing, decoding
  into the cache, XLA compilation of the augmentation);
* training wall: the whole of `fit` (metrics/train.json `wall_time_s`: every epoch with its
  callbacks, the resume backup included): what the user waits for.
The table gives the median over repeats, and each variant's images/s, epoch time and training
wall as a ratio to the first variant.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from scratch import ROOT, cpu_name, prepare, stage

# Keras' verbose=2 epoch line, e.g. "34/34 - 30s - 889ms/step - ...": steps x time per step is the
# epoch's wall time (training, callbacks and validation) with millisecond resolution.
EPOCH_LINE = re.compile(r"^(\d+)/\d+ - \d+s - (\d+)(ms|s)/step")
DEFAULT_VARIANTS = [
    "before, default profile:@before",
    "default profile:",
    "default, batch 64:train.batch_size=64",
    "default, batch 128:train.batch_size=128 train.learning_rate=0.005",
    # fast's 70 low-resolution epochs of 100, scaled to --epochs (the config refuses 70 of 6).
    "fast profile:train=fast train.low_res_epochs=EPOCHS_70",
    "fast at 128 throughout:train=fast train.low_res=null train.low_res_epochs=0",
    "fast, no weight average:train=fast train.low_res_epochs=EPOCHS_70 train.ema_momentum=0",
]


def train_once(project: Path) -> dict:
    shutil.rmtree(project / ".cache", ignore_errors=True)
    output = stage("train", project)
    epochs = [int(m.group(1)) * int(m.group(2)) * (1e-3 if m.group(3) == "ms" else 1.0)
              for m in map(EPOCH_LINE.match, output.splitlines()) if m]
    metrics = json.loads((project / "metrics" / "train.json").read_text())
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else float("nan")
    return {"images_per_s": metrics["images_per_s"], "epoch_s": steady, "first_extra_s": epochs[0] - steady,
            "wall_s": metrics["wall_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "data/sample/flowers_mini",
                        help="class folders to train on (default: the embedded sample)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", default="ece0ad5", help="git revision of the '@before' variants")
    parser.add_argument("--variant", action="append",
                        help="'NAME:OVERRIDES' (Hydra overrides, space-separated; '@before' runs REV's code; "
                             "EPOCHS_70 stands for 70%% of --epochs)")
    args = parser.parse_args()
    variants = args.variant or DEFAULT_VARIANTS
    images = args.images.resolve()
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        projects = []
        for k, spec in enumerate(variants):
            name, _, rest = spec.partition(":")
            words = rest.replace("EPOCHS_70", str(round(0.7 * args.epochs))).split()
            before = "@before" in words
            overrides = [w for w in words if w != "@before"] + [f"train.epochs={args.epochs}"]
            source = args.before if before else ROOT
            print(f"preparing {name} ({' '.join(overrides)}{', code of ' + args.before if before else ''})",
                  flush=True)
            projects.append((name, prepare(source, Path(tmp) / f"v{k}", overrides, images)))
        results: dict[str, list[dict]] = {name: [] for name, _ in projects}
        for round_ in range(args.repeats):
            for name, project in projects:
                result = train_once(project)
                results[name].append(result)
                print(f"round {round_ + 1}, {name}: {result}", flush=True)
    print(f"\n{cpu_name()}, {os.cpu_count()} cores; {images}, {args.epochs} epochs, median of {args.repeats} runs")
    print(f"{'variant':<34} {'img/s':>7} {'ratio':>6} {'epoch s':>8} {'ratio':>6} {'1st-epoch extra s':>18}"
          f" {'training wall s':>16} {'ratio':>6}")
    base = None
    for name, rows in results.items():
        speed, epoch, extra, wall = (statistics.median(r[key] for r in rows)
                                     for key in ("images_per_s", "epoch_s", "first_extra_s", "wall_s"))
        base = base or (speed, epoch, wall)
        print(f"{name:<34} {speed:>7.1f} {speed / base[0]:>6.2f} {epoch:>8.1f} {base[1] / epoch:>6.2f} {extra:>18.1f}"
              f" {wall:>16.1f} {base[2] / wall:>6.2f}")


if __name__ == "__main__":
    main()
