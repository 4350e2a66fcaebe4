"""Small, learnable, deterministic class-folder datasets, for tests and smoke runs.

Each class has its own hue and stripe orientation; every image adds random position, scale and
noise drawn from `seed`, so a model must learn something, and a tiny one can, in a few epochs.
The same arguments always give the same bytes (JPEG encoding with fixed settings).
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image


def class_names(num_classes: int) -> list[str]:
    return [f"class_{i:03d}" for i in range(num_classes)]


def make_image(class_index: int, num_classes: int, size: int, rng: np.random.RandomState) -> np.ndarray:
    hue = class_index / num_classes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255.0
    angle = np.pi * class_index / num_classes
    period = rng.uniform(size / 6, size / 3)
    phase = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + phase)
    image = base[None, None, :] * (0.55 + 0.45 * stripes[..., None])
    # A darker square at a random place: the position carries no class information.
    side = int(rng.randint(size // 6, size // 3 + 1))
    top, left = rng.randint(0, size - side + 1, size=2)
    image[top:top + side, left:left + side] *= 0.4
    image += rng.normal(0.0, 12.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(dest: Path, num_classes: int, images_per_class: int, image_size: int,
                 seed: int = 0) -> dict[str, int]:
    """Write `dest/<class>/<nnnn>.jpg`; returns the count per class."""
    dest = Path(dest)
    counts = {}
    for index, name in enumerate(class_names(num_classes)):
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.RandomState(seed * 1000 + index)
        for n in range(images_per_class):
            pixels = make_image(index, num_classes, image_size, rng)
            Image.fromarray(pixels).save(folder / f"{n:04d}.jpg", quality=90)
        counts[name] = images_per_class
    return counts
