"""Test helpers: dataset configs and small image trees and archives built on the fly."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from mcuvision.config.dataset import DatasetConfig

CHECKS = {"min_images_per_class": 2, "min_side": 8, "max_side": 4096, "max_imbalance": 10.0}


def dataset_config(source: dict, num_classes: int | None = None, val: float = 0.2, test: float = 0.2,
                   checks: dict | None = None, rule: str | None = None) -> DatasetConfig:
    source = {"path": "conf/dataset/t.yaml", **source}  # url/synthetic kinds: only tracked by DVC
    split = {"val_fraction": val, "test_fraction": test, **({"rule": rule} if rule else {})}
    params = {"dataset": {"name": "t", "num_classes": num_classes, "source": source, "split": split,
                          "checks": {**CHECKS, **(checks or {})}}}
    return DatasetConfig.from_params(params, known=("t",))


def jpeg_bytes(seed: int, size: int = 24, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    rng = np.random.RandomState(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.randint(0, 256, (size, size, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_tree(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    """`root/<class>/<i>.jpg` with distinct random images; returns root."""
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / name / f"{i:03d}.jpg").write_bytes(jpeg_bytes(seed * 10_000 + c * 1000 + i))
    return root


def tar_gz(tree: Path, archive: Path, arcname: str, extra: dict[str, bytes] | None = None) -> Path:
    """Archive `tree` under `arcname/`, plus raw `extra` members (names used verbatim)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=arcname)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive
