"""The random half of mcuvision.data.augment: per-image parameters of a batch, drawn outside XLA.

Everything here is a small tensor (a few numbers per image); the pixel work that consumes them is
in mcuvision.data.augment. Keeping the two apart lets tests feed known parameters (a shear of a known
angle, an integer shift) to the pixel work and check the exact result.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from mcuvision.config.train import AugmentConfig

PIXEL_MAX = 255.0
# ITU-R BT.601 luma weights, as tf.image.rgb_to_grayscale (and ST's random_rgb_to_grayscale).
LUMA = (0.299, 0.587, 0.114)


class AugmentParams(NamedTuple):
    """Parameters of one batch of n images (all float32 unless said otherwise).

    transforms: (n, 6) output -> input pixel maps a0, a1, a2, b0, b1, b2:
        x_in = a0 * x + a1 * y + a2, y_in = b0 * x + b1 * y + b2 (pixel units, x = column).
    colour: (n, 3, 3) hue rotation times grayscale projection, for row vectors (rgb @ colour).
    contrast: (n,) factor around each image's per-channel mean (1: unchanged).
    delta: (n,) brightness offset in pixel values 0..255 units.
    boxes: (n, k, 4) erased rectangles y0, y1, x0, x1 in pixels, half-open [y0, y1) x [x0, x1);
        an unused rectangle is empty (y1 == y0). k = erasing_max_count (1 when erasing is off).
    fill: (n, k, 3) colour 0..255 of each rectangle (erasing_fill 'colour').
    noise_seed: () int64 seed of the per-pixel mosaic noise, which is made inside XLA because it
        is as large as the batch (erasing_fill 'mosaic').
    """
    transforms: tf.Tensor
    colour: tf.Tensor
    contrast: tf.Tensor
    delta: tf.Tensor
    boxes: tf.Tensor
    fill: tf.Tensor
    noise_seed: tf.Tensor


def draw_params(config: AugmentConfig, generator: tf.random.Generator, n: tf.Tensor, height: tf.Tensor,
                width: tf.Tensor) -> AugmentParams:
    """Parameters for `n` (int32 scalar) images of `height` x `width` pixels (float32 scalars).

    A kind that is off draws no random numbers. The draws come in the order geometric, colour,
    erasing: switching a kind off changes the draws of the kinds after it, not of those before.
    """
    transforms = _draw_transforms(config, generator, n, height, width)
    colour, contrast, delta = _draw_colour(config, generator, n)
    boxes, fill, noise_seed = _draw_erasing(config, generator, n, height, width)
    return AugmentParams(transforms, colour, contrast, delta, boxes, fill, noise_seed)


def _uniform(generator, shape, low, high):
    return generator.uniform(shape, low, high, dtype=tf.float32)


def _draw_transforms(c: AugmentConfig, generator, n, height, width):
    ones, zeros = tf.ones((n,)), tf.zeros((n,))

    def symmetric(strength):  # uniform in [-strength, strength] per image, or 0 when off
        return _uniform(generator, (n,), -strength, strength) if strength > 0 else zeros

    def flip(axis_on):  # -1 with probability flip_rate
        if not axis_on or c.flip_rate <= 0:
            return ones
        return tf.where(_uniform(generator, (n,), 0.0, 1.0) < c.flip_rate, -1.0, 1.0)

    flip_x = flip(c.flip in ("horizontal", "horizontal_and_vertical"))
    flip_y = flip(c.flip in ("vertical", "horizontal_and_vertical"))
    angle = symmetric(c.rotation) * 2.0 * math.pi
    shear = symmetric(c.shear) * 2.0 * math.pi
    if c.crop_scale > 0:
        scale_x, scale_y, shift_x, shift_y = _draw_crop(c, generator, n, height, width)
    else:
        # Zoom: the two scales are drawn independently (keras RandomZoom with height and width
        # factors, as ST), so a zoom also stretches. A scale > 1 samples a larger region (zooms out).
        scale_x = 1.0 + symmetric(c.zoom)
        scale_y = 1.0 + symmetric(c.zoom)
        shift_x = symmetric(c.translation) * width
        shift_y = symmetric(c.translation) * height
    return affine_transforms(height, width, flip_x, flip_y, angle, shear, scale_x, scale_y, shift_x, shift_y)


def _draw_crop(c: AugmentConfig, generator, n, height, width):
    """Random-resized crop (Szegedy et al., "Going deeper with convolutions", CVPR 2015; torchvision's
    RandomResizedCrop) as scales and shifts of the affine map: area share a ~ U(crop_scale, 1) and
    aspect ratio r log-uniform in [1/crop_ratio, crop_ratio], so the region is sqrt(a r) of the width
    by sqrt(a / r) of the height (each at most the whole side: torchvision redraws instead, up to 10
    times, then falls back to a centre crop), its centre uniform over the places where it fits."""
    area = _uniform(generator, (n,), c.crop_scale, 1.0)
    log_ratio = _uniform(generator, (n,), -math.log(c.crop_ratio), math.log(c.crop_ratio))
    scale_x = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), 1.0)
    scale_y = tf.minimum(tf.sqrt(area / tf.exp(log_ratio)), 1.0)
    shift_x = _uniform(generator, (n,), -0.5, 0.5) * (1.0 - scale_x) * width
    shift_y = _uniform(generator, (n,), -0.5, 0.5) * (1.0 - scale_y) * height
    return scale_x, scale_y, shift_x, shift_y


def affine_transforms(height, width, flip_x, flip_y, angle, shear, scale_x, scale_y, shift_x, shift_y) -> tf.Tensor:
    """(n, 6) output -> input maps (see AugmentParams.transforms) of all geometric kinds composed:

        input = R(angle) @ S(shear) @ diag(scale_x * flip_x, scale_y * flip_y) @ (output - centre)
                + centre + shift

    R is a rotation, S = [[1, -sin(shear)], [0, cos(shear)]] the shear by an angle of keras'
    apply_affine_transform and ST's random_shear (ST shears about the top-left corner, here about
    the centre: the two differ by a translation). Every argument is (n,) float32 (or broadcasts
    to it); height and width in pixels, angle and shear in radians, shift in pixels, flip +-1.
    """
    cos, sin = tf.cos(angle), tf.sin(angle)
    shear_sin, shear_cos = tf.sin(shear), tf.cos(shear)
    # R @ S, then its columns scaled by diag(scale * flip).
    a0 = cos * scale_x * flip_x
    a1 = (-cos * shear_sin - sin * shear_cos) * scale_y * flip_y
    b0 = sin * scale_x * flip_x
    b1 = (-sin * shear_sin + cos * shear_cos) * scale_y * flip_y
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx - a0 * cx - a1 * cy + shift_x
    b2 = cy - b0 * cx - b1 * cy + shift_y
    return tf.stack([a0, a1, a2, b0, b1, b2], axis=1)


def _draw_colour(c: AugmentConfig, generator, n):
    contrast = 1.0 + _uniform(generator, (n,), -c.contrast, c.contrast) if c.contrast > 0 else tf.ones((n,))
    delta = _uniform(generator, (n,), -c.brightness, c.brightness) * PIXEL_MAX if c.brightness > 0 else tf.zeros((n,))
    matrix = tf.eye(3, batch_shape=[n])
    if c.hue > 0:
        sign = tf.where(_uniform(generator, (n,), 0.0, 1.0) < 0.5, -1.0, 1.0)
        matrix = hue_matrices(sign * _uniform(generator, (n,), 0.0, c.hue) * math.pi)
    if c.grayscale > 0:
        # Grey after the hue shift (a hue shift of a grey image is a no-op anyway).
        grey = _uniform(generator, (n,), 0.0, 1.0) < c.grayscale
        matrix = tf.where(grey[:, None, None], matrix @ grayscale_matrix(), matrix)
    return matrix, contrast, delta


def hue_matrices(angle: tf.Tensor) -> tf.Tensor:
    """Rotations by `angle` (n,) radians around the grey axis (1, 1, 1), as (n, 3, 3) for rgb @ m:
    the linear form of a hue shift (keras RandomHue and ST's random_hue go through HSV)."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    a = cos + (1.0 - cos) / 3.0
    b = (1.0 - cos) / 3.0 - sin / math.sqrt(3.0)
    c = (1.0 - cos) / 3.0 + sin / math.sqrt(3.0)
    # Column-vector matrix [[a, b, c], [c, a, b], [b, c, a]]; transposed for row vectors.
    return tf.stack([tf.stack([a, c, b], -1), tf.stack([b, a, c], -1), tf.stack([c, b, a], -1)], 1)


def grayscale_matrix() -> tf.Tensor:
    """(3, 3) projection on luma, replicated in the 3 channels, for rgb @ m."""
    return tf.constant([[w, w, w] for w in LUMA], tf.float32)


def _draw_erasing(c: AugmentConfig, generator, n, height, width):
    """Rectangles of every image: count uniform in 0..erasing_max_count for an erased image
    (exactly 1 when erasing_max_count is 1), area uniform in 0..erasing_max_area of the image,
    width / height log-uniform in 1/erasing_max_aspect..erasing_max_aspect, each side cut to the
    image's, placed uniformly so that it lies inside the image."""
    if c.erasing <= 0:
        return tf.zeros((n, 1, 4)), tf.zeros((n, 1, 3)), tf.zeros((), tf.int64)
    k = c.erasing_max_count
    area = _uniform(generator, (n, k), 0.0, c.erasing_max_area) * height * width
    log_aspect = math.log(c.erasing_max_aspect)
    aspect = tf.exp(_uniform(generator, (n, k), -log_aspect, log_aspect))
    rect_h = tf.minimum(tf.sqrt(area / aspect), height)
    rect_w = tf.minimum(tf.sqrt(area * aspect), width)
    y0 = _uniform(generator, (n, k), 0.0, 1.0) * (height - rect_h)
    x0 = _uniform(generator, (n, k), 0.0, 1.0) * (width - rect_w)
    erased = _uniform(generator, (n,), 0.0, 1.0) < c.erasing
    if k == 1:
        count = tf.ones((n,), tf.int32)
    else:
        count = generator.uniform((n,), 0, k + 1, dtype=tf.int32)
    count = tf.where(erased, count, 0)
    used = tf.range(k)[None, :] < count[:, None]  # (n, k)
    y1 = tf.where(used, y0 + rect_h, y0)  # an empty rectangle where not used
    boxes = tf.stack([y0, y1, x0, x0 + rect_w], axis=-1)
    fill = _uniform(generator, (n, k, 3), 0.0, PIXEL_MAX)
    noise_seed = generator.make_seeds(1)[0, 0] if c.erasing_fill == "mosaic" else tf.zeros((), tf.int64)
    return boxes, fill, noise_seed
