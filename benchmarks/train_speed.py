"""Training images/s: compute only (in-memory tensors) vs end to end (JPEGs + tf.data + augmentation).

    .venv/bin/python benchmarks/train_speed.py [--res 128 224] [--images DIR] [--epochs 3] [--batch 32]

Compute only fits the model on a fixed random float32 tensor (cached, batched, prefetched); end to
end feeds the real files through mcuvision.data.make_dataset(training=True) with the augmentation of
conf/train/default.yaml. Both are timed over the training batches of each epoch after the first
(the first one traces the graph and, end to end, decodes the JPEGs into the cache).
`--pipeline` also times the input pipeline alone (iterating the dataset, no model).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mcuvision.augment import build_augmenter  # noqa: E402
from mcuvision.config.train import AugmentConfig, TrainConfig  # noqa: E402
from mcuvision.data import Split, make_dataset  # noqa: E402
from mcuvision.model import build_model  # noqa: E402
from mcuvision.training import Throughput, compile_model, set_bn_momentum  # noqa: E402

from mcuvision.sources import IMAGE_SUFFIXES  # noqa: E402


def load_train_conf() -> dict:
    with (ROOT / "conf/train/default.yaml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def list_images(folder: Path) -> tuple[Split, int]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(str(path))
                labels.append(index)
    if not paths:
        sys.exit(f"no images under {folder}")
    return Split(paths, np.asarray(labels, np.int32)), len(classes)


def new_model(num_classes: int, res: int, conf: dict, steps_per_epoch: int) -> keras.Model:
    """build_model compiled exactly as stages/train.py does on a CPU (XLA off)."""
    keras.utils.set_random_seed(0)
    train = TrainConfig.from_params({"train": conf})
    model = build_model(num_classes, res, dropout=train.dropout)
    set_bn_momentum(model, train.bn_momentum)
    compile_model(model, train, steps_per_epoch, xla=False)
    return model


def fit_speed(model: keras.Model, ds: tf.data.Dataset, images: int, epochs: int) -> float:
    meter = Throughput(images)
    model.fit(ds, epochs=epochs, verbose=0, callbacks=[meter])
    steady = meter.per_epoch[1:] or meter.per_epoch
    return float(np.median(steady))


def compute_only(model: keras.Model, images: int, num_classes: int, res: int, epochs: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (images, res, res, 3)).astype(np.float32))
    y = tf.one_hot(rng.integers(0, num_classes, images), num_classes)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache().batch(batch).prefetch(tf.data.AUTOTUNE)
    return fit_speed(model, ds, images, epochs)


def end_to_end_dataset(split: Split, num_classes: int, res: int, conf: dict, batch: int,
                       augment: bool = True) -> tf.data.Dataset:
    augmenter = build_augmenter(AugmentConfig.from_params(conf["augment"]), 0) if augment else None
    return make_dataset(split, num_classes, res, "bilinear", batch, training=True, augment=augmenter, seed=0)


def pipeline_only(ds: tf.data.Dataset, images: int, epochs: int) -> float:
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in ds:
            pass
        rates.append(images / (time.perf_counter() - start))
    return float(np.median(rates[1:] or rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--images", type=Path, default=ROOT / "data/sample/flowers_mini")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first one is not timed")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-augment", action="store_true", help="end to end without augmentation")
    parser.add_argument("--pipeline", action="store_true", help="also time the input pipeline alone")
    args = parser.parse_args()
    conf = load_train_conf()
    split, num_classes = list_images(args.images)
    n = len(split)
    rows = []
    for res in args.res:
        # One model per resolution, traced once: compute only first, then end to end.
        model = new_model(num_classes, res, conf, steps_per_epoch=-(-n // args.batch))
        compute = compute_only(model, n, num_classes, res, args.epochs, args.batch)
        ds = end_to_end_dataset(split, num_classes, res, conf, args.batch, augment=not args.no_augment)
        pipe = pipeline_only(ds, n, args.epochs) if args.pipeline else None
        e2e = fit_speed(model, ds, n, args.epochs)
        rows.append((res, compute, e2e, pipe))
        print(f"res {res}: compute-only {compute:.1f} img/s, end-to-end {e2e:.1f} img/s"
              + (f", pipeline alone {pipe:.1f} img/s" if pipe else ""), flush=True)
    aug = "off" if args.no_augment else "conf/train/default.yaml"
    print(f"\n{n} images from {args.images}, batch {args.batch}, {args.epochs} epochs (first not timed), "
          f"augmentation {aug}, {os.cpu_count()} CPU cores")
    header = f"{'res':>5} {'compute-only img/s':>19} {'end-to-end img/s':>17} {'ratio':>6}"
    if args.pipeline:
        header += f" {'pipeline img/s':>15}"
    print(header)
    for res, compute, e2e, pipe in rows:
        line = f"{res:>5} {compute:>19.1f} {e2e:>17.1f} {e2e / compute:>6.2f}"
        if args.pipeline:
            line += f" {pipe:>15.1f}"
        print(line)


if __name__ == "__main__":
    main()
