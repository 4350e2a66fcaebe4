"""tf.data input pipelines over the manifest: decode once, cache, augment on the fly, prefetch.

Images stay uint8 0..255 until the model's own Rescaling layer, so train, evaluate and the
int8 TFLite model (uint8 input) all see the same pixels. Decoding and resizing run in parallel
and are cached (in memory, or in a disk cache for datasets that do not fit), so only the first
epoch reads JPEGs; augmentation runs per batch after the cache, so every epoch differs
(mcuvision.data.augment: a few fused XLA ops per batch, a small fraction of a training step).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from mcuvision.errors import PipelineError

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class Split:
    paths: list[str]
    labels: np.ndarray  # class indices
    orientations: np.ndarray | None = None  # int32 EXIF orientations 1-8; None: read from the files

    def __len__(self) -> int:
        return len(self.paths)


class EmptySplitError(PipelineError, ValueError):
    """A split that training, calibration or scoring needs has no image."""


def read_split(manifest: pd.DataFrame, raw: Path, split: str) -> Split:
    """The rows of one split; orientations from the manifest's `orientation` column (validate's);
    None for a manifest without it, and the decoders then read them from the files.

    Raises EmptySplitError for an empty train or val split: no stage trains, calibrates or picks
    an epoch on nothing. An empty test split is returned empty (evaluate then scores val)."""
    rows = manifest[manifest["split"] == split]
    if rows.empty and split in ("train", "val"):
        where = ", ".join(f"{n} in {name}" for name, n in manifest["split"].value_counts().sort_index().items())
        fix = ("add images (a class needs 2 or more for one to reach val: dataset.checks.min_images_per_class: 2 "
               "makes validate stop on fewer) or raise dataset.split.val_fraction" if split == "val"
               else "add images or lower dataset.split.val_fraction and test_fraction")
        raise EmptySplitError(f"the {split} split has no image (the manifest's images: {where or 'none'}): "
                              f"{fix}, then run validate again")
    orientations = rows["orientation"].to_numpy(dtype=np.int32) if "orientation" in rows else None
    return Split([str(raw / p) for p in rows["path"]], rows["class_index"].to_numpy(dtype=np.int32), orientations)


def file_orientations(paths: list[str]) -> np.ndarray:
    """int32 EXIF orientation (1-8, 1 when absent) of each file, from its header (Pillow)."""
    from PIL import Image

    from mcuvision.data.images import exif_orientation

    def one(path: str) -> int:
        try:
            with Image.open(path) as image:
                return exif_orientation(image)
        except Exception:  # not an image Pillow reads: TensorFlow's decode will say what is wrong
            return 1
    return np.array([one(p) for p in paths], dtype=np.int32)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """`image` (H, W, C) turned as EXIF `orientation` (int32 scalar, 1-8) asks, as a phone gallery
    shows it (the transposes of Pillow's ImageOps.exif_transpose; EXIF 2.3, tag 0x0112)."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [lambda: image,                                        # 1: as stored
                lambda: tf.image.flip_left_right(image),              # 2: mirrored
                lambda: tf.image.rot90(image, 2),                     # 3: upside down
                lambda: tf.image.flip_up_down(image),                 # 4: mirrored upside down
                lambda: transpose(image),                             # 5: transposed
                lambda: tf.image.rot90(image, 3),                     # 6: a quarter turn clockwise
                lambda: tf.image.rot90(transpose(image), 2),          # 7: transversed
                lambda: tf.image.rot90(image, 1)]                     # 8: a quarter turn anticlockwise
    return tf.switch_case(tf.clip_by_value(orientation - 1, 0, 7), branches)


def decode(path: tf.Tensor, res: int, interpolation: str, orientation: tf.Tensor | int = 1) -> tf.Tensor:
    """Any JPEG/PNG/BMP/GIF, grayscale or RGBA included, turned by its EXIF `orientation`
    (file_orientations), to uint8 (res, res, 3)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = orient(image, tf.cast(orientation, tf.int32))
    image = tf.image.resize(image, (res, res), method=interpolation)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def decode_all(paths: list[str], res: int, interpolation: str, orientations: np.ndarray | None = None) -> np.ndarray:
    """Decode a list of images in parallel into one uint8 array (n, res, res, 3) (calibration,
    evaluation, predict); `orientations` (int32, one per path) read from the files when None."""
    if not paths:
        return np.zeros((0, res, res, 3), np.uint8)
    orientations = file_orientations(paths) if orientations is None else orientations
    # os.fsencode: a file name that is not valid UTF-8 reaches TensorFlow as its bytes on disk.
    encoded = [os.fsencode(p) for p in paths]
    ds = tf.data.Dataset.from_tensor_slices((encoded, np.asarray(orientations, np.int32))).map(
        lambda p, o: decode(p, res, interpolation, o), num_parallel_calls=AUTOTUNE, deterministic=True)
    return np.concatenate(list(ds.batch(256).as_numpy_iterator()), axis=0)


def drops_remainder(images: int, batch_size: int, training: bool) -> bool:
    """Training drops the last, short batch (its images are reshuffled into the next epoch): a batch
    of another shape re-traces the training step, ~10-20 s on a 2-core CPU. Kept when the split is
    smaller than one batch, and always for evaluation, which must see every image."""
    return training and images >= batch_size


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training batches per epoch, as make_dataset(training=True) yields them."""
    full, rest = divmod(images, batch_size)
    return full if drops_remainder(images, batch_size, True) else full + bool(rest)


def _to_side(images: tf.Tensor, side: tf.Variable, res: int) -> tf.Tensor:
    target = side.read_value()
    return tf.cond(target < res, lambda: tf.image.resize(images, tf.stack([target, target]), method="area"),
                   lambda: images)


# Decoded images a disk-cached training set shuffles in memory at once (its shuffle buffer).
DISK_SHUFFLE_BYTES = 1 << 30


def shuffle_images(images: int, res: int, cache: str) -> int:
    """Size of the training shuffle buffer, in images: the whole split for a memory cache (which
    holds it all anyway); for a disk cache, at most DISK_SHUFFLE_BYTES of decoded uint8 images, so
    a dataset that does not fit in memory is not held there by its shuffle buffer instead."""
    return images if cache != "disk" else max(1, min(images, DISK_SHUFFLE_BYTES // (res * res * 3)))


def make_dataset(split: Split, num_classes: int, res: int, interpolation: str, batch_size: int, *,
                 training: bool, cache: str = "memory", cache_dir: Path | None = None,
                 augment: tf.keras.Model | None = None, seed: int = 0,
                 side: tf.Variable | None = None, mix=None) -> tf.data.Dataset:
    """Batches of (float32 pixels 0..255 (n, res, res, 3), one-hot float32 labels (n, classes)).

    Images are decoded and resized to `res` once and cached (`cache`: memory, or a file under
    `cache_dir`); training batches are shuffled (shuffle_images), augmented, mixed by `mix` (a callable
    (images, labels) -> (images, labels) such as mcuvision.data.mix.BatchMix: labels become soft)
    and, when `side` (an int32 tf.Variable read at every batch) is below `res`, resized to `side` x
    `side` with area averaging, so that a callback can change the training side between epochs
    (mcuvision.model.training.TrainSide).
    Raises ValueError for cache='disk' without a cache_dir.
    """
    orientations = split.orientations if split.orientations is not None else file_orientations(split.paths)
    paths, labels = np.asarray([os.fsencode(p) for p in split.paths]), np.asarray(split.labels)
    buffer = shuffle_images(len(split), res, cache)
    if training and buffer < len(split):
        # The cache in a random order (seeded), so a shuffle buffer smaller than the split still
        # mixes classes (manifests list them one after the other).
        order = np.random.default_rng(seed).permutation(len(split))
        paths, labels, orientations = paths[order], labels[order], np.asarray(orientations)[order]
    ds = tf.data.Dataset.from_tensor_slices((paths, labels, orientations))
    ds = ds.map(lambda p, y, o: (decode(p, res, interpolation, o), tf.one_hot(y, num_classes)),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("train.cache=disk needs a cache folder")
        cache_dir.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_dir / "decoded"))
    else:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drops_remainder(len(split), batch_size, training))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
    if training and mix is not None:
        ds = ds.map(mix, num_parallel_calls=AUTOTUNE)
    if training and side is not None:
        ds = ds.map(lambda x, y: (_to_side(x, side, res), y), num_parallel_calls=AUTOTUNE)
    # Each op of the pipeline on one thread: on a few cores, ops that fan out over all of them
    # preempt the training step's own threads (the pipeline is far cheaper than the step).
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(AUTOTUNE).with_options(options)
