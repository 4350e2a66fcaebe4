"""Mixing images of a training batch and their labels: MixUp and CutMix.

MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) blends each image
with another of the batch, weight w ~ Beta(alpha, alpha), and the one-hot labels with the same w.
CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019) pastes a rectangle of another image and weights the labels by the area
each image keeps. Both are Keras' own layers (`keras.layers.MixUp`, `keras.layers.CutMix`); this
module only decides, per batch, whether and which one applies, with its own seeded generator.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from mcuvision.config.train import AugmentConfig


class BatchMix:
    """Callable as `mix(images, labels)` on a training batch: images float32 (n, h, w, 3) in
    0..255, labels float32 (n, classes) one-hot or already soft; returns both, same shapes and
    dtypes, each label row still summing to 1.

    A batch is mixed with probability `config.mix_rate`; with both kinds on (`mixup_alpha` and
    `cutmix_factor` above 0) a mixed batch takes one of them, each with probability 1/2, as timm's
    Mixup does. Every image of a mixed batch is mixed with a partner drawn by a permutation of the
    batch (an image may draw itself, and then stays as it is).
    """

    def __init__(self, config: AugmentConfig, seed: int):
        self.rate = config.mix_rate
        self.generator = tf.random.Generator.from_seed(seed)
        self.kinds = []
        # float32 whatever the global policy: under mixed precision the layers would otherwise compute
        # in bfloat16/float16 while the input pipeline stays float32 (the model casts on its own).
        if config.mixup_alpha > 0:
            self.kinds.append(keras.layers.MixUp(alpha=config.mixup_alpha, seed=seed, dtype="float32"))
        if config.cutmix_factor > 0:
            self.kinds.append(keras.layers.CutMix(factor=config.cutmix_factor, seed=seed + 1, dtype="float32"))

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        draw = self.generator.uniform([2])
        branches = [self._kind(layer, images, labels) for layer in self.kinds]
        pick = tf.minimum(tf.cast(draw[1] * len(branches), tf.int32), len(branches) - 1)
        return tf.cond(draw[0] < self.rate,
                       lambda: tf.switch_case(pick, branches),
                       lambda: (images, labels))

    @staticmethod
    def _kind(layer, images, labels):
        def run():
            out = layer({"images": images, "labels": labels}, training=True)
            return tf.cast(out["images"], images.dtype), tf.cast(out["labels"], labels.dtype)
        return run


def build_mixer(config: AugmentConfig, seed: int) -> BatchMix | None:
    """The batch mixing of `config`, or None when it is off (mix_rate 0, or neither kind on)."""
    if config.mix_rate <= 0 or (config.mixup_alpha <= 0 and config.cutmix_factor <= 0):
        return None
    return BatchMix(config, seed)
