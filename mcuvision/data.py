"""tf.data input pipelines over the manifest: decode once, cache, augment on the fly, prefetch.

Images stay uint8 0..255 until the model's own Rescaling layer, so train, evaluate and the
int8 TFLite model (uint8 input) all see the same pixels. Decoding and resizing run in parallel
and are cached (in memory, or in a disk cache for datasets that do not fit), so only the first
epoch reads JPEGs; augmentation runs per batch after the cache, so every epoch differs
(mcuvision.augment: a few fused XLA ops per batch, a small fraction of a training step).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class Split:
    paths: list[str]
    labels: np.ndarray  # class indices

    def __len__(self) -> int:
        return len(self.paths)


def read_split(manifest: pd.DataFrame, raw: Path, split: str) -> Split:
    rows = manifest[manifest["split"] == split]
    return Split([str(raw / p) for p in rows["path"]], rows["class_index"].to_numpy(dtype=np.int32))


def decode(path: tf.Tensor, res: int, interpolation: str) -> tf.Tensor:
    """Any JPEG/PNG/BMP/GIF, grayscale or RGBA included, to uint8 (res, res, 3)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, (res, res), method=interpolation)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def decode_all(paths: list[str], res: int, interpolation: str) -> np.ndarray:
    """Decode a list of images in parallel into one uint8 array (calibration, evaluation)."""
    if not paths:
        return np.zeros((0, res, res, 3), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: decode(p, res, interpolation), num_parallel_calls=AUTOTUNE, deterministic=True)
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


def make_dataset(split: Split, num_classes: int, res: int, interpolation: str, batch_size: int, *,
                 training: bool, cache: str = "memory", cache_dir: Path | None = None,
                 augment: tf.keras.Model | None = None, seed: int = 0,
                 side: tf.Variable | None = None) -> tf.data.Dataset:
    """Batches of (float32 pixels 0..255 (n, res, res, 3), one-hot float32 labels (n, classes)).

    Images are decoded and resized to `res` once and cached (`cache`: memory, or a file under
    `cache_dir`); training batches are shuffled, augmented and, when `side` (an int32 tf.Variable
    read at every batch) is below `res`, resized to `side` x `side` with area averaging, so that
    a callback can change the training side between epochs (mcuvision.training.TrainSide).
    Raises ValueError for cache='disk' without a cache_dir.
    """
    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    ds = ds.map(lambda p, y: (decode(p, res, interpolation), tf.one_hot(y, num_classes)),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("train.cache=disk needs a cache folder")
        cache_dir.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(cache_dir / "decoded"))
    else:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drops_remainder(len(split), batch_size, training))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
    if training and side is not None:
        ds = ds.map(lambda x, y: (_to_side(x, side, res), y), num_parallel_calls=AUTOTUNE)
    # Each op of the pipeline on one thread: on a few cores, ops that fan out over all of them
    # preempt the training step's own threads (the pipeline is far cheaper than the step).
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    return ds.prefetch(AUTOTUNE).with_options(options)
