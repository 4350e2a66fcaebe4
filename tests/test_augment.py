"""mcuvision.augment: each augmentation acts when its strength is > 0, is absent at 0, keeps the
shape, dtype and 0..255 range, and is reproducible for a seed."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mcuvision.augment import build_augmenter
from mcuvision.config.train import AugmentConfig

OFF = AugmentConfig(flip="none", translation=0.0, rotation=0.0, zoom=0.0, contrast=0.0,
                    brightness=0.0, hue=0.0, erasing=0.0)
FULL = AugmentConfig(flip="horizontal", translation=0.1, rotation=0.05, zoom=0.1, contrast=0.2,
                     brightness=0.1, hue=0.02, erasing=0.1)
# One augmentation at a time, strong enough to show on 4 images (erasing 1.0: up to always).
SINGLE = {
    "flip": {"flip": "horizontal_and_vertical"},
    "translation": {"translation": 0.3},
    "rotation": {"rotation": 0.2},
    "zoom": {"zoom": 0.3},
    "contrast": {"contrast": 0.5},
    "brightness": {"brightness": 0.3},
    "hue": {"hue": 0.5},
    "erasing": {"erasing": 1.0},
}


def batch(n: int = 4, size: int = 32) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(20, 235, (n, size, size, 3)).astype(np.float32))


def run(config: AugmentConfig, x: tf.Tensor, seed: int = 1, calls: int = 1) -> list[np.ndarray]:
    augment = build_augmenter(config, seed)
    return [augment(x, training=True).numpy() for _ in range(calls)]


def test_all_off_builds_nothing():
    assert build_augmenter(OFF, 0) is None


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_augmentation_changes_images(name):
    x = batch()
    outs = run(dataclasses.replace(OFF, **SINGLE[name]), x, calls=3)
    # Random per image: over 3 batches of 4 images at least one must differ.
    assert any(not np.allclose(out, x.numpy(), atol=1e-3) for out in outs), name
    for out in outs:
        assert out.shape == tuple(x.shape) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0


def test_zero_strengths_are_absent():
    """Brightness alone (no clipping at this strength): each image only shifts by one offset,
    so no geometric change, contrast, hue or erasing happened."""
    x = batch()
    for out in run(dataclasses.replace(OFF, brightness=0.05), x, calls=3):
        shift = out - x.numpy()
        np.testing.assert_allclose(shift, shift[:, :1, :1, :1] * np.ones_like(shift), atol=1e-3)


def test_hue_keeps_grey_pixels():
    x = tf.repeat(batch()[..., :1], 3, axis=-1)
    out = run(dataclasses.replace(OFF, hue=0.5), x)[0]
    np.testing.assert_allclose(out, x.numpy(), atol=1e-2)


def test_flip_is_exact_mirror():
    x = batch()
    out = run(dataclasses.replace(OFF, flip="horizontal"), x, calls=4)
    for o in out:
        for image, src in zip(o, x.numpy()):
            assert np.allclose(image, src, atol=1e-3) or np.allclose(image, src[:, ::-1], atol=1e-3)


def test_erasing_fills_a_rectangle_with_one_colour():
    x = batch(8)
    out = run(dataclasses.replace(OFF, erasing=1.0), x, calls=2)
    erased = 0
    for o in out:
        for image, src in zip(o, x.numpy()):
            changed = np.any(image != src, axis=-1)
            if not changed.any():
                continue
            erased += 1
            rows, cols = np.where(changed.any(axis=1))[0], np.where(changed.any(axis=0))[0]
            box = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert np.allclose(box, box[0, 0], atol=1e-4)  # one colour over the whole box
    assert erased > 0


def test_full_profile_shape_dtype_range():
    x = tf.concat([tf.zeros((2, 32, 32, 3)), tf.fill((2, 32, 32, 3), 255.0)], axis=0)
    out = run(FULL, x)[0]
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_not_training_is_identity():
    x = batch()
    augment = build_augmenter(FULL, 0)
    np.testing.assert_array_equal(augment(x, training=False).numpy(), x.numpy())


def test_same_seed_same_images_in_fresh_objects():
    x = batch()
    first, second = run(FULL, x, seed=7, calls=2), run(FULL, x, seed=7, calls=2)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = run(FULL, x, seed=8, calls=1)[0]
    assert not np.array_equal(first[0], other)


def test_in_tf_data_map():
    x = batch(8)
    augment = build_augmenter(FULL, 0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: augment(b, training=True))
    outs = list(ds.as_numpy_iterator())
    assert [o.shape for o in outs] == [(4, 32, 32, 3)] * 2
    assert all(o.min() >= 0.0 and o.max() <= 255.0 for o in outs)
