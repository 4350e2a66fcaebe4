"""mcuvision.data.augment: each augmentation acts when its strength is > 0, is absent at 0, keeps the
shape, dtype and 0..255 range, and is reproducible for a seed; the geometric options (shear, fill
mode, interpolation) map known pixels where they should; erasing draws the rectangles it says."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import ROOT
from mcuvision.compose import compose
from mcuvision.config.base import ConfigError
from mcuvision.config.train import AugmentConfig
from mcuvision.data.augment import Augmenter, build_augmenter
from mcuvision.data.augment_params import AugmentParams, affine_transforms, draw_params

OFF = AugmentConfig(flip="none", flip_rate=0.5, translation=0.0, rotation=0.0, zoom=0.0, shear=0.0,
                    fill_mode="reflect", interpolation="bilinear", contrast=0.0, brightness=0.0, hue=0.0,
                    grayscale=0.0, erasing=0.0, erasing_max_count=1, erasing_max_area=0.33,
                    erasing_max_aspect=3.3, erasing_fill="colour")
FULL = AugmentConfig(flip="horizontal", flip_rate=0.5, translation=0.1, rotation=0.05, zoom=0.1, shear=0.05,
                     fill_mode="reflect", interpolation="bilinear", contrast=0.2, brightness=0.1, hue=0.02,
                     grayscale=0.2, erasing=0.5, erasing_max_count=3, erasing_max_area=0.2,
                     erasing_max_aspect=3.3, erasing_fill="colour")
# ST mixes nothing: mix_rate 0 (the kinds' strengths are default.yaml's, unused).
ST = AugmentConfig(flip="horizontal", flip_rate=0.5, translation=0.35, rotation=0.125, zoom=0.25, shear=0.15,
                   fill_mode="wrap", interpolation="nearest", contrast=0.65, brightness=0.075, hue=0.1,
                   grayscale=0.05, erasing=0.08, erasing_max_count=10, erasing_max_area=0.1,
                   erasing_max_aspect=4.0, erasing_fill="mosaic", mix_rate=0.0, mixup_alpha=0.2, cutmix_factor=1.0)
# One augmentation at a time, strong enough to show on 4 images (erasing 1.0: always).
SINGLE = {
    "flip": {"flip": "horizontal_and_vertical"},
    "flip_rate": {"flip": "horizontal", "flip_rate": 1.0},
    "translation": {"translation": 0.3},
    "rotation": {"rotation": 0.2},
    "zoom": {"zoom": 0.3},
    "shear": {"shear": 0.1},
    "crop": {"crop_scale": 0.25},
    "wrap": {"translation": 0.3, "fill_mode": "wrap"},
    "constant": {"translation": 0.3, "fill_mode": "constant"},
    "nearest": {"rotation": 0.2, "interpolation": "nearest"},
    "contrast": {"contrast": 0.5},
    "brightness": {"brightness": 0.3},
    "hue": {"hue": 0.5},
    "grayscale": {"grayscale": 1.0},
    "erasing": {"erasing": 1.0},
    "erasing_count": {"erasing": 1.0, "erasing_max_count": 5},
    "erasing_mosaic": {"erasing": 1.0, "erasing_max_count": 3, "erasing_fill": "mosaic"},
}


def batch(n: int = 4, size: int = 32, width: int | None = None) -> tf.Tensor:
    rng = np.random.default_rng(0)
    return tf.constant(rng.uniform(20, 235, (n, size, width or size, 3)).astype(np.float32))


def run(config: AugmentConfig, x: tf.Tensor, seed: int = 1, calls: int = 1) -> list[np.ndarray]:
    augment = build_augmenter(config, seed)
    return [augment(x, training=True).numpy() for _ in range(calls)]


def known(n: int, transforms: tf.Tensor) -> AugmentParams:
    """Parameters that only resample by `transforms` (colour identity, nothing erased)."""
    return AugmentParams(transforms=transforms, colour=tf.eye(3, batch_shape=[n]), contrast=tf.ones((n,)),
                         delta=tf.zeros((n,)), boxes=tf.zeros((n, 1, 4)), fill=tf.zeros((n, 1, 3)),
                         noise_seed=tf.zeros((), tf.int64))


def shift_shear(n: int, h: int, w: int, dx: float = 0.0, dy: float = 0.0, shear: float = 0.0) -> tf.Tensor:
    """Transforms of a pure shift (input = output + (dx, dy)) and/or a shear of `shear` radians."""
    one, zero = tf.ones((n,)), tf.zeros((n,))
    return affine_transforms(float(h), float(w), one, one, zero, zero + shear, one, one, zero + dx, zero + dy)


def resample(x: tf.Tensor, transforms: tf.Tensor, fill_mode: str, interpolation: str) -> np.ndarray:
    """The pixel work alone, geometric path on (its strength does not matter with known params)."""
    config = dataclasses.replace(OFF, translation=0.1, fill_mode=fill_mode, interpolation=interpolation)
    return Augmenter(config, 0).apply(x, known(int(x.shape[0]), transforms)).numpy()


def draw(config: AugmentConfig, n: int, h: int = 32, w: int = 32, seed: int = 3) -> AugmentParams:
    return draw_params(config, tf.random.Generator.from_seed(seed), n, float(h), float(w))


# -- every kind: on, off, reproducible ------------------------------------------------------------
def test_all_off_builds_nothing():
    assert build_augmenter(OFF, 0) is None


@pytest.mark.parametrize("zero", [
    {"flip": "horizontal", "flip_rate": 0.0}, {"shear": 0.0, "fill_mode": "wrap", "interpolation": "nearest"},
    {"grayscale": 0.0}, {"erasing": 0.0, "erasing_max_count": 10, "erasing_fill": "mosaic"},
])
def test_zero_rate_builds_nothing_and_changes_nothing(zero):
    config = dataclasses.replace(OFF, **zero)
    assert build_augmenter(config, 0) is None
    x = batch()
    np.testing.assert_array_equal(Augmenter(config, 0)(x).numpy(), x.numpy())


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_augmentation_changes_images(name):
    x = batch()
    outs = run(dataclasses.replace(OFF, **SINGLE[name]), x, calls=3)
    # Random per image: over 3 batches of 4 images at least one must differ.
    assert any(not np.allclose(out, x.numpy(), atol=1e-3) for out in outs), name
    for out in outs:
        assert out.shape == tuple(x.shape) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_each_augmentation_is_reproducible(name):
    x, config = batch(), dataclasses.replace(OFF, **SINGLE[name])
    first, second = run(config, x, seed=5, calls=2), run(config, x, seed=5, calls=2)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    if name not in ("grayscale", "flip_rate"):  # rate 1: the same for every draw
        assert not np.array_equal(first[0], first[1])  # a new draw per batch


def test_zero_strengths_are_absent():
    """Brightness alone (no clipping at this strength): each image only shifts by one offset,
    so no geometric change, contrast, hue, grayscale or erasing happened."""
    x = batch()
    for out in run(dataclasses.replace(OFF, brightness=0.05), x, calls=3):
        shift = out - x.numpy()
        np.testing.assert_allclose(shift, shift[:, :1, :1, :1] * np.ones_like(shift), atol=1e-3)


# -- geometric: flip, fill modes, interpolation, shear, zoom --------------------------------------
def test_flip_is_exact_mirror():
    x = batch()
    out = run(dataclasses.replace(OFF, flip="horizontal"), x, calls=4)
    for o in out:
        for image, src in zip(o, x.numpy()):
            assert np.allclose(image, src, atol=1e-3) or np.allclose(image, src[:, ::-1], atol=1e-3)


def test_flip_rate_is_the_share_of_flipped_images():
    x = batch(64, 8)
    mirrored = lambda out: [np.allclose(i, s[:, ::-1], atol=1e-3) for i, s in zip(out, x.numpy())]  # noqa: E731
    assert all(mirrored(run(dataclasses.replace(OFF, flip="horizontal", flip_rate=1.0), x)[0]))
    share = np.mean(mirrored(run(dataclasses.replace(OFF, flip="horizontal", flip_rate=0.25), x)[0]))
    assert 0.1 <= share <= 0.4


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_identity_transform_is_exact(fill_mode, interpolation):
    x = batch(2)
    out = resample(x, shift_shear(2, 32, 32), fill_mode, interpolation)
    np.testing.assert_array_equal(out, x.numpy())


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_integer_shift_with_wrap_is_np_roll(interpolation):
    x = batch(2, 16, 24)
    out = resample(x, shift_shear(2, 16, 24, dx=5.0, dy=-3.0), "wrap", interpolation)
    # input = output + shift: the image moves by -shift, cyclically.
    np.testing.assert_array_equal(out, np.roll(x.numpy(), (3, -5), axis=(1, 2)))


def test_integer_shift_with_reflect_mirrors_and_constant_fills_zero():
    x = batch(2, 16)
    src = x.numpy()
    reflect = resample(x, shift_shear(2, 16, 16, dx=5.0), "reflect", "nearest")
    mirror = np.pad(src, ((0, 0), (0, 0), (0, 5), (0, 0)), mode="symmetric")[:, :, 5:]
    np.testing.assert_array_equal(reflect, mirror)
    constant = resample(x, shift_shear(2, 16, 16, dx=5.0), "constant", "bilinear")
    np.testing.assert_array_equal(constant[:, :, :11], src[:, :, 5:])
    assert (constant[:, :, 11:] == 0.0).all()


def test_drawn_translation_with_wrap_and_nearest_is_a_cyclic_shift():
    x = batch(8)
    out = run(dataclasses.replace(OFF, translation=0.3, fill_mode="wrap", interpolation="nearest"), x)[0]
    shifts = set()
    for image, src in zip(out, x.numpy()):
        # The input's pixels are distinct: where the output's first pixel came from gives the shift.
        (i,), (j,) = np.nonzero((src == image[0, 0]).all(-1))
        np.testing.assert_array_equal(image, np.roll(src, (-i, -j), axis=(0, 1)))
        shifts.add((int(i), int(j)))
    assert len(shifts) > 4


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap"])
def test_nearest_outputs_only_input_pixels(fill_mode):
    x = batch()
    geometric = dict(rotation=0.2, zoom=0.3, shear=0.1, translation=0.2, fill_mode=fill_mode)
    nearest = run(dataclasses.replace(OFF, interpolation="nearest", **geometric), x)[0]
    bilinear = run(dataclasses.replace(OFF, interpolation="bilinear", **geometric), x)[0]
    for near, bil, src in zip(nearest, bilinear, x.numpy()):
        pixels = {tuple(p) for p in src.reshape(-1, 3)}
        assert all(tuple(p) in pixels for p in near.reshape(-1, 3))
        assert sum(tuple(p) not in pixels for p in bil.reshape(-1, 3)) > 100  # bilinear mixes pixels


@pytest.mark.parametrize("fill_mode", ["reflect", "constant"])
def test_nearest_matches_tensorflow_image_projective_transform(fill_mode):
    rng = np.random.default_rng(4)
    n, h, w = 4, 24, 32
    x = batch(n, h, w)
    u = lambda a: tf.constant(rng.uniform(-a, a, n).astype(np.float32))  # noqa: E731
    transforms = affine_transforms(float(h), float(w), tf.ones(n), -tf.ones(n), u(0.8), u(0.5), 1 + u(0.3),
                                   1 + u(0.3), u(8.0), u(8.0))
    ours = resample(x, transforms, fill_mode, "nearest")
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=tf.concat([transforms, tf.zeros((n, 2))], 1), output_shape=[h, w], fill_value=0.0,
        fill_mode=fill_mode.upper(), interpolation="NEAREST").numpy()
    np.testing.assert_array_equal(ours, reference)


def test_shear_of_a_known_angle_maps_known_pixels():
    n, size, angle = 2, 33, 0.05 * 2 * math.pi  # 18 degrees; centre pixel (16, 16)
    x = batch(n, size)
    out = resample(x, shift_shear(n, size, size, shear=angle), "wrap", "nearest")
    src = x.numpy()
    np.testing.assert_array_equal(out[:, 16], src[:, 16])  # the centre row does not move
    # Output (y=26, x=16): x_in = 16 - sin(18 deg) * 10 = 12.9, y_in = 16 + cos(18 deg) * 10 = 25.5
    np.testing.assert_array_equal(out[:, 26, 16], src[:, 26, 13])
    # Every pixel, against the formula, away from rounding ties.
    y, x_ = np.mgrid[0:size, 0:size].astype(np.float64)
    x_in, y_in = x_ - math.sin(angle) * (y - 16), 16 + math.cos(angle) * (y - 16)
    clear = (np.abs(x_in % 1 - 0.5) > 1e-3) & (np.abs(y_in % 1 - 0.5) > 1e-3)
    yi, xi = np.floor(y_in + 0.5).astype(int) % size, np.floor(x_in + 0.5).astype(int) % size
    np.testing.assert_array_equal(out[:, clear], src[:, yi[clear], xi[clear]])
    assert clear.mean() > 0.95


def test_drawn_shear_is_within_its_angle():
    t = draw(dataclasses.replace(OFF, shear=0.1), 64).transforms.numpy()
    angle = np.arcsin(-t[:, 1])
    np.testing.assert_allclose(t[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(t[:, 3], 0.0, atol=1e-6)
    np.testing.assert_allclose(t[:, 4], np.cos(angle), atol=1e-5)
    assert np.abs(angle).max() <= 0.1 * 2 * math.pi + 1e-6 and np.abs(angle).max() > 0.8 * 0.1 * 2 * math.pi
    assert (angle < 0).any() and (angle > 0).any()


def test_zoom_scales_height_and_width_independently():
    t = draw(dataclasses.replace(OFF, zoom=0.3), 64).transforms.numpy()
    scale_x, scale_y = t[:, 0], t[:, 4]  # no rotation or shear: the diagonal holds the scales
    np.testing.assert_allclose(t[:, [1, 3]], 0.0, atol=1e-6)
    assert (np.abs(scale_x - scale_y) > 1e-3).mean() > 0.9
    assert abs(np.corrcoef(scale_x, scale_y)[0, 1]) < 0.5
    for scale in (scale_x, scale_y):
        assert scale.min() >= 0.7 and scale.max() <= 1.3 and scale.max() - scale.min() > 0.4


def test_random_resized_crop_regions_lie_inside_the_image_with_their_area_and_aspect():
    side = 64
    t = draw(dataclasses.replace(OFF, crop_scale=0.25, crop_ratio=4 / 3), 4000, side, side).transforms.numpy()
    scale_x, scale_y = t[:, 0], t[:, 4]
    np.testing.assert_allclose(t[:, [1, 3]], 0.0, atol=1e-6)
    # The output's outer pixel edges (-0.5, side - 0.5) map inside the input's: a crop, never a zoom out.
    for scale, offset in ((scale_x, t[:, 2]), (scale_y, t[:, 5])):
        assert scale.max() <= 1.0 + 1e-6 and scale.min() >= math.sqrt(0.25 * 3 / 4) - 1e-6
        first, last = offset - 0.5 * scale, scale * (side - 0.5) + offset
        assert first.min() >= -0.5 - 1e-3 and last.max() <= side - 0.5 + 1e-3
        assert first.min() < -0.4 and last.max() > side - 0.6  # and reach the edges
    shift_x = t[:, 2] - (side - 1) / 2 * (1 - scale_x)
    area, ratio = scale_x * scale_y, scale_x / scale_y
    assert 0.25 - 0.05 < area.min() < 0.3 and area.max() > 0.97  # the share 0.25..1 (clipping can go a hair under)
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4 and ratio.min() < 0.8 and ratio.max() > 1.25
    # Shifts use the whole room the region leaves: small regions move far, full ones not at all.
    room = (1.0 - scale_x) * side / 2
    assert np.all(np.abs(shift_x) <= room + 1e-3) and np.abs(shift_x).max() > 0.8 * room.max()


def test_random_resized_crop_takes_the_place_of_translation_and_zoom():
    with pytest.raises(ConfigError, match="the crop takes their place"):
        AugmentConfig.from_section({**dataclasses.asdict(FULL), "crop_scale": 0.25})
    AugmentConfig.from_section({**dataclasses.asdict(FULL), "crop_scale": 0.25, "translation": 0.0, "zoom": 0.0})


# -- colour -----------------------------------------------------------------------------------------
def test_hue_keeps_grey_pixels():
    x = tf.repeat(batch()[..., :1], 3, axis=-1)
    out = run(dataclasses.replace(OFF, hue=0.5), x)[0]
    np.testing.assert_allclose(out, x.numpy(), atol=1e-2)


def test_grayscale_at_rate_one_is_luma_in_every_channel():
    x = batch()
    out = run(dataclasses.replace(OFF, grayscale=1.0), x)[0]
    luma = x.numpy() @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as tf.image
    for channel in range(3):
        np.testing.assert_allclose(out[..., channel], luma, atol=1e-3)


def test_grayscale_rate_is_the_share_of_grey_images():
    x = batch(64, 8)
    out = run(dataclasses.replace(OFF, grayscale=0.5, contrast=0.3), x)[0]
    grey = [np.allclose(i[..., 0], i[..., 1], atol=1e-3) and np.allclose(i[..., 0], i[..., 2], atol=1e-3)
            for i in out]
    assert 0.3 <= np.mean(grey) <= 0.7


# -- erasing ----------------------------------------------------------------------------------------
def erased_regions(image: np.ndarray, src: np.ndarray) -> dict[tuple, np.ndarray]:
    """Pixels changed by erasing, grouped by their colour: {colour: (m, 2) row, col}."""
    changed = np.any(image != src, axis=-1)
    groups: dict[tuple, list] = {}
    for r, c in zip(*np.nonzero(changed)):
        groups.setdefault(tuple(image[r, c]), []).append((r, c))
    return {colour: np.array(cells) for colour, cells in groups.items()}


def test_one_rectangle_is_one_colour():
    x = batch(16)
    erased = 0
    for image, src in zip(run(dataclasses.replace(OFF, erasing=1.0), x)[0], x.numpy()):
        regions = erased_regions(image, src)
        assert len(regions) <= 1
        for cells in regions.values():
            (r0, c0), (r1, c1) = cells.min(0), cells.max(0)
            assert len(cells) == (r1 - r0 + 1) * (c1 - c0 + 1)  # a full rectangle
            erased += 1
    assert erased >= 14  # every image, but for a rare rectangle too thin to cover a pixel row


def test_at_most_count_rectangles_each_one_colour():
    x, k = batch(24), 3
    counts = []
    for image, src in zip(run(dataclasses.replace(OFF, erasing=1.0, erasing_max_count=k), x)[0], x.numpy()):
        changed = np.any(image != src, axis=-1)
        regions = erased_regions(image, src)
        assert len(regions) <= k
        for cells in regions.values():
            # A rectangle partly covered by a later one keeps its colour only where it shows, but
            # its bounding box lies inside its rectangle: erased all over.
            (r0, c0), (r1, c1) = cells.min(0), cells.max(0)
            assert changed[r0:r1 + 1, c0:c1 + 1].all()
        counts.append(len(regions))
    assert 0 in counts and max(counts) >= 2  # the count is drawn in 0..k


def test_erasing_is_the_probability_of_an_image_being_erased():
    boxes = draw(dataclasses.replace(OFF, erasing=0.25), 512).boxes.numpy()
    erased = (boxes[:, :, 1] > boxes[:, :, 0]).any(axis=1)
    assert 0.19 <= erased.mean() <= 0.31  # the mean, not an upper bound of a drawn probability


def test_erasing_rectangles_respect_area_and_aspect():
    config = dataclasses.replace(OFF, erasing=1.0, erasing_max_count=10, erasing_max_area=0.1, erasing_max_aspect=4.0)
    boxes = draw(config, 256, h=40, w=60).boxes.numpy().reshape(-1, 4)
    used = boxes[boxes[:, 1] > boxes[:, 0]]
    rect_h, rect_w = used[:, 1] - used[:, 0], used[:, 3] - used[:, 2]
    assert 0.35 <= len(used) / len(boxes) <= 0.65  # 0..10 of 10 per image: half on average
    assert (rect_h * rect_w <= 0.1 * 40 * 60 * (1 + 1e-5)).all()
    assert (used[:, [0, 2]] >= 0).all() and (used[:, 1] <= 40 + 1e-4).all() and (used[:, 3] <= 60 + 1e-4).all()
    aspect = rect_w / rect_h
    assert aspect.min() >= 0.25 - 1e-4 and aspect.max() <= 4.0 + 1e-4
    assert aspect.min() < 0.4 and aspect.max() > 2.5 and (aspect < 1).mean() > 0.3  # log-uniform: both ways


def test_mosaic_fills_rectangles_with_random_whole_pixels():
    x = batch(8)
    out = run(dataclasses.replace(OFF, erasing=1.0, erasing_max_count=3, erasing_fill="mosaic"), x)[0]
    erased = out[np.any(out != x.numpy(), axis=-1)]
    assert len(erased) > 50
    np.testing.assert_array_equal(erased, np.floor(erased))  # integers 0..255, as ST's mosaic
    assert len(np.unique(erased)) > 0.5 * min(erased.size, 256)  # not a few flat colours


# -- whole profiles, tf.data, config --------------------------------------------------------------
@pytest.mark.parametrize("config", [FULL, ST], ids=["full", "st"])
def test_full_profiles_shape_dtype_range(config):
    x = tf.concat([tf.zeros((2, 32, 32, 3)), tf.fill((2, 32, 32, 3), 255.0), batch(4)], axis=0)
    out = run(config, x)[0]
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_not_training_is_identity():
    x = batch()
    augment = build_augmenter(FULL, 0)
    np.testing.assert_array_equal(augment(x, training=False).numpy(), x.numpy())


@pytest.mark.parametrize("config", [FULL, ST], ids=["full", "st"])
def test_same_seed_same_images_in_fresh_objects(config):
    x = batch()
    first, second = run(config, x, seed=7, calls=2), run(config, x, seed=7, calls=2)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = run(config, x, seed=8, calls=1)[0]
    assert not np.array_equal(first[0], other)


def test_in_tf_data_map():
    x = batch(8)
    augment = build_augmenter(ST, 0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: augment(b, training=True))
    outs = list(ds.as_numpy_iterator())
    assert [o.shape for o in outs] == [(4, 32, 32, 3)] * 2
    assert all(o.min() >= 0.0 and o.max() <= 255.0 for o in outs)


MISSING = object()


@pytest.mark.parametrize("key, value, allowed", [
    ("flip_rate", 1.5, "a number in [0.0, 1.0]"), ("shear", 0.25, "a number in [0.0, 0.25)"),
    ("grayscale", -0.1, "a number in [0.0, 1.0]"), ("erasing", MISSING, "a number in [0.0, 1.0]"),
    ("fill_mode", "nearest", "one of reflect, wrap, constant"),
    ("interpolation", "bicubic", "one of bilinear, nearest"),
    ("erasing_max_count", 0, "an integer >= 1"), ("erasing_max_count", 2.0, "an integer >= 1"),
    ("erasing_max_count", 65, "an integer in [1, 64]"), ("erasing_max_area", 0.0, "a number in (0.0, 1.0]"),
    ("erasing_max_aspect", 0.5, "a number in [1.0, 100.0]"), ("erasing_fill", "noise", "one of colour, mosaic"),
    ("crop_scale", 1.0, "a number in [0.0, 1.0)"), ("crop_ratio", 0.5, "a number in [1.0, 10.0]"),
])
def test_bad_augment_values_are_named(key, value, allowed):
    section = dataclasses.asdict(FULL)
    if value is MISSING:
        del section[key]
    else:
        section[key] = value
    with pytest.raises(ConfigError) as error:
        AugmentConfig.from_section(section)
    shown = None if value is MISSING else value
    assert str(error.value) == f"train.augment.{key}={shown!r} is not allowed: {allowed}"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "conf" / "train").glob("*.yaml")))
def test_train_profiles_have_a_valid_augment_section(profile):
    section = yaml.safe_load(compose([f"train={profile}"]))["train"]  # profiles inherit `default`
    assert set(section["augment"]) == {f.name for f in dataclasses.fields(AugmentConfig)}
    AugmentConfig.from_section(section["augment"])


def test_st_profile_is_st_recipe():
    """conf/train/st.yaml: ST's tf_flowers recipe for ST EfficientNet LC v1, in this augmenter's units."""
    section = yaml.safe_load(compose(["train=st"]))["train"]
    assert AugmentConfig.from_section(section["augment"]) == ST
    expected = dict(name="st", epochs=1000, batch_size=128, optimizer="adam", learning_rate=0.0025,
                    weight_decay=0.0, schedule="plateau", warmup_epochs=0, plateau_factor=0.625,
                    plateau_patience=40, label_smoothing=0.0, dropout=0.35, bn_momentum=0.99,
                    precise_bn_images=0, early_stopping_patience=200)
    assert {key: section.get(key) for key in expected} == expected
