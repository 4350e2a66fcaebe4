"""On-the-fly augmentation as Keras preprocessing layers, run per batch inside tf.data.

They work on float pixels 0..255 (value_range), before the model's Rescaling. A strength
of 0 leaves a layer out, so a profile can switch any of them off.
"""
from __future__ import annotations

import keras
from keras import layers

from .config import AugmentConfig

RANGE = (0.0, 255.0)


def build_augmenter(config: AugmentConfig, seed: int) -> keras.Sequential | None:
    candidates = [
        (config.flip != "none", lambda s: layers.RandomFlip(config.flip, seed=s)),
        (config.translation > 0, lambda s: layers.RandomTranslation(
            config.translation, config.translation, fill_mode="reflect", seed=s)),
        (config.rotation > 0, lambda s: layers.RandomRotation(config.rotation, fill_mode="reflect", seed=s)),
        (config.zoom > 0, lambda s: layers.RandomZoom(config.zoom, fill_mode="reflect", seed=s)),
        (config.contrast > 0, lambda s: layers.RandomContrast(config.contrast, value_range=RANGE, seed=s)),
        (config.brightness > 0, lambda s: layers.RandomBrightness(config.brightness, value_range=RANGE, seed=s)),
        (config.hue > 0, lambda s: layers.RandomHue(config.hue, value_range=RANGE, seed=s)),
        (config.erasing > 0, lambda s: layers.RandomErasing(config.erasing, value_range=RANGE, seed=s)),
    ]
    chosen = [make(seed + i) for i, (enabled, make) in enumerate(candidates) if enabled]
    return keras.Sequential(chosen, name="augment") if chosen else None
