"""How long validate takes on N generated images (goal: 10,000 in under 60 s on 2 cores).

    python benchmarks/validate_speed.py --images 10000 --size 160
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcuvision.config.dataset import DatasetConfig
from stages import ingest, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=160, help="side of the generated JPEGs")
    args = parser.parse_args()
    per_class = args.images // args.classes
    params = {"dataset": {
        "name": "synthetic", "num_classes": args.classes,
        "source": {"kind": "synthetic", "path": "mcuvision/data/synthetic.py", "images_per_class": per_class,
                   "image_size": args.size, "seed": 0},
        "split": {"val_fraction": 0.2, "test_fraction": 0.1},
        "checks": {"min_images_per_class": 1, "min_side": 8, "max_side": 8192, "max_imbalance": 10.0}}}
    config = DatasetConfig.from_params(params, known=("synthetic",))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        ingest.run(config, out=tmp / "raw", cache=tmp / "cache")
        generated = time.perf_counter() - start
        start = time.perf_counter()
        summary = validate.run(config, 127, raw=tmp / "raw", manifest=tmp / "manifest.csv",
                               metrics=tmp / "validate.json", reports=tmp / "reports")
        elapsed = time.perf_counter() - start
    print(f"generated {per_class * args.classes} images of {args.size}x{args.size} in {generated:.1f} s")
    print(f"validate: {summary['images']} images in {elapsed:.1f} s "
          f"({summary['images'] / elapsed:.0f} img/s, includes Great Expectations and Data Docs)")


if __name__ == "__main__":
    main()
