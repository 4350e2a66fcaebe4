"""On-the-fly augmentation, run per batch inside tf.data with a few fused, batched TensorFlow ops.

Works on float pixels 0..255 (before the model's Rescaling) and returns float pixels in 0..255.
A strength or probability of 0 (flip 'none') leaves that augmentation out, so a profile can switch
any of them off. Each image draws its own parameters (mcuvision.data.augment_params, outside XLA);
the pixel work below runs as ONE XLA-compiled function per batch:

* flip + translation + rotation + zoom + shear: ONE resampling per image, the five composed into
  one matrix; out-of-image pixels by `fill_mode` (reflect: d c b a | a b c d | d c b a, wrap:
  periodic, constant: 0), sampled by `interpolation` (bilinear or nearest);
* contrast + brightness + hue + grayscale: ONE per-image 3x3 colour matrix plus offset. Contrast
  scales around each image's per-channel mean (as keras RandomContrast and ST), brightness adds an
  offset, hue rotates the chroma around the grey axis (the linear form of a hue shift; keras and ST
  go through HSV), grayscale projects on BT.601 luma in all 3 channels;
* random erasing: up to `erasing_max_count` rectangles per image, a mask built by broadcasting
  (n, k) row and column ranges; where rectangles overlap the last one wins (as ST). Filled with one
  random colour per rectangle, or a mosaic of random pixels (integers 0..255, as ST);
* one clip to [0, 255] before erasing (erasing values are in range).

The eight Keras preprocessing layers this replaces cost ~490 ms per 32x224x224 batch on 2 cores
(hue and erasing ~100 ms each, every geometric layer its own resampling pass). Known differences
from ST's recipe: ST applies each kind as its own pass (each with its own resampling and clip),
erases before the geometric kinds (so its rectangles turn with the image) and, in its 'batch'
erasing mode, erases the same rectangles in every chosen image of a batch.

Random numbers come from a `tf.random.Generator` seeded with `seed`: two augmenters built with the
same seed and called on the same batches return the same images.
"""
from __future__ import annotations

import tensorflow as tf

from mcuvision.config.train import AugmentConfig
from mcuvision.data.augment_params import PIXEL_MAX, AugmentParams, draw_params


class Augmenter:
    """Callable as `augment(images, training=True)` on a float32 batch (n, h, w, 3) in 0..255;
    returns float32 (n, h, w, 3) in 0..255 (the input itself when `training` is False).

    The random parameters are drawn per image outside XLA (small tensors); the pixel work runs in
    one XLA-compiled function, which fuses the resampling, colour matrix, clip and erasing mask.
    """

    def __init__(self, config: AugmentConfig, seed: int):
        self.config = config
        self.seed = seed
        self.generator = tf.random.Generator.from_seed(seed)
        c = config
        self.geometric = ((c.flip != "none" and c.flip_rate > 0) or c.translation > 0 or c.rotation > 0
                          or c.zoom > 0 or c.shear > 0 or c.crop_scale > 0)
        self.colour = c.contrast > 0 or c.brightness > 0 or c.hue > 0 or c.grayscale > 0
        self.erasing = c.erasing > 0
        self._apply = tf.function(self._pixels, jit_compile=True, reduce_retracing=True)

    def __call__(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training:
            return images
        images = tf.convert_to_tensor(images, tf.float32)
        shape = tf.shape(images)
        n, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        return self.apply(images, draw_params(self.config, self.generator, n, height, width))

    def apply(self, images: tf.Tensor, params: AugmentParams) -> tf.Tensor:
        """The pixel work with given parameters (see AugmentParams for their shapes); the kinds
        switched off in the config are skipped whatever their parameters."""
        return self._apply(tf.convert_to_tensor(images, tf.float32), params)

    # -- the pixel work, XLA-compiled ----------------------------------------------------------
    def _pixels(self, images, params: AugmentParams):
        c = self.config
        if self.geometric:
            images = _warp(images, params.transforms, c.fill_mode, c.interpolation)
        if self.colour:
            # m = hue @ grey; y = (contrast * (x - mean) + mean + delta) @ m
            #                   = x @ (contrast * m) + offset @ m
            m, contrast = params.colour, params.contrast
            mean = tf.reduce_mean(images, axis=[1, 2])  # (n, 3) per image and channel, as keras
            offset = (1.0 - contrast)[:, None] * mean + params.delta[:, None]
            matrix = (contrast[:, None, None] * m)[:, None, None]  # (n, 1, 1, 3, 3)
            bias = tf.einsum("nc,ncd->nd", offset, m)[:, None, None, :]
            images = (images[..., 0:1] * matrix[..., 0, :] + images[..., 1:2] * matrix[..., 1, :]
                      + images[..., 2:3] * matrix[..., 2, :] + bias)
        images = tf.clip_by_value(images, 0.0, PIXEL_MAX)
        if self.erasing:
            images = _erase(images, params.boxes, params.fill, params.noise_seed, c.erasing_fill == "mosaic")
        return images


def _warp(images, transforms, fill_mode: str, interpolation: str):
    """Resampling of each image (n, h, w, 3) at input = transform(output) (transforms (n, 6), see
    AugmentParams), by gathers so that XLA fuses it. Bilinear reflect and constant match
    tf.raw_ops.ImageProjectiveTransformV3 to ~1e-3 (nearest: exactly); wrap is exactly periodic
    (an integer shift is np.roll), which ImageProjectiveTransformV3's WRAP is not at the seams."""
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    t = [transforms[:, i][:, None, None] for i in range(6)]
    x_in = t[0] * xs + t[1] * ys + t[2]  # (n, h, w) input coordinates, pixel units
    y_in = t[3] * xs + t[4] * ys + t[5]
    if fill_mode == "reflect":
        x_in, y_in = _reflect(x_in, w), _reflect(y_in, h)
    flat = tf.reshape(images, [-1, 3])
    base = (tf.range(n) * h * w)[:, None, None]

    def at(y, x):  # pixels at integer coordinates (already inside the image), (n, h, w, 3)
        return tf.gather(flat, base + y * w + x)

    if interpolation == "nearest":
        (x, x_ok), (y, y_ok) = _index(tf.floor(x_in + 0.5), w, fill_mode), _index(tf.floor(y_in + 0.5), h, fill_mode)
        out = at(y, x)
        return out if x_ok is None else out * tf.cast(x_ok & y_ok, tf.float32)[..., None]
    x0f, y0f = tf.floor(x_in), tf.floor(y_in)
    fx, fy = x_in - x0f, y_in - y0f
    (x0, x0_ok), (x1, x1_ok) = _index(x0f, w, fill_mode), _index(x0f + 1.0, w, fill_mode)
    (y0, y0_ok), (y1, y1_ok) = _index(y0f, h, fill_mode), _index(y0f + 1.0, h, fill_mode)
    wx0, wx1, wy0, wy1 = 1.0 - fx, fx, 1.0 - fy, fy
    if fill_mode == "constant":  # a neighbour outside the image contributes the fill value 0
        wx0, wx1 = wx0 * tf.cast(x0_ok, tf.float32), wx1 * tf.cast(x1_ok, tf.float32)
        wy0, wy1 = wy0 * tf.cast(y0_ok, tf.float32), wy1 * tf.cast(y1_ok, tf.float32)
    top = at(y0, x0) * wx0[..., None] + at(y0, x1) * wx1[..., None]
    bottom = at(y1, x0) * wx0[..., None] + at(y1, x1) * wx1[..., None]
    return top * wy0[..., None] + bottom * wy1[..., None]


def _reflect(coordinate, length):
    """Fold pixel coordinates into [-0.5, length - 0.5] by mirroring at the outer pixel edges
    (d c b a | a b c d | d c b a), as ImageProjectiveTransformV3's REFLECT fill."""
    size = tf.cast(length, tf.float32)
    folded = tf.math.floormod(coordinate + 0.5, 2.0 * size)
    return tf.where(folded >= size, 2.0 * size - folded, folded) - 0.5


def _index(index, length, fill_mode: str):
    """Integer pixel indices (int32, inside 0..length-1) for float whole-number `index`, and for
    'constant' a bool mask of those that were inside the image (None otherwise). Reflect has
    folded the coordinates already: clamping only settles the half pixel at each edge."""
    size = tf.cast(length, tf.float32)
    if fill_mode == "wrap":
        return tf.cast(tf.math.floormod(index, size), tf.int32), None
    inside = (index >= 0.0) & (index <= size - 1.0)
    clamped = tf.cast(tf.clip_by_value(index, 0.0, size - 1.0), tf.int32)
    return clamped, (inside if fill_mode == "constant" else None)


def _erase(images, boxes, fill, noise_seed, mosaic: bool):
    """Erase the rectangles `boxes` (n, k, 4) of images (n, h, w, 3): one colour `fill` (n, k, 3)
    per rectangle, or per-pixel integers 0..255 from `noise_seed` (mosaic)."""
    shape = tf.shape(images)
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, None, :]
    cols = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :]
    in_rows = (rows >= boxes[..., 0:1]) & (rows < boxes[..., 1:2])  # (n, k, h)
    in_cols = (cols >= boxes[..., 2:3]) & (cols < boxes[..., 3:4])  # (n, k, w)
    ids = tf.range(1, tf.shape(boxes)[1] + 1)[None, :, None, None]
    # Each pixel's owner: 0 = not erased, else 1 + the index of the last rectangle covering it.
    owner = tf.reduce_max(tf.where(in_rows[:, :, :, None] & in_cols[:, :, None, :], ids, 0), axis=1)
    if mosaic:
        values = _mosaic(shape, noise_seed)
    else:
        palette = tf.concat([tf.zeros_like(fill[:, :1]), fill], axis=1)  # (n, k + 1, 3): 0 unused
        values = tf.gather(palette, owner, batch_dims=1)
    return tf.where((owner > 0)[..., None], values, images)


def _mosaic(shape, seed):
    """Random whole pixel values 0..255 as float32 of `shape` (n, h, w, 3), from `seed` () int64:
    the top byte of a stateless integer hash (lowbias32) of each value's index. Philox
    (tf.random.stateless_uniform) made a whole batch of noise 5x slower on CPU, for pixels that
    only need to look random and be reproducible."""
    index = tf.cast(tf.range(tf.reduce_prod(shape)), tf.uint32)
    x = index * tf.constant(0x9E3779B9, tf.uint32) + tf.cast(seed, tf.uint32)
    for shift, multiplier in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(shift, tf.uint32)))
        x = x * tf.constant(multiplier, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    return tf.reshape(tf.cast(tf.bitwise.right_shift(x, tf.constant(24, tf.uint32)), tf.float32), shape)


def build_augmenter(config: AugmentConfig, seed: int) -> Augmenter | None:
    """The augmentation of `config`, or None when it would change nothing (every strength and
    probability 0, flip 'none' or flip_rate 0)."""
    augmenter = Augmenter(config, seed)
    return augmenter if augmenter.geometric or augmenter.colour or augmenter.erasing else None
