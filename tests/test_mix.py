"""Batch mixing (MixUp, CutMix): what each does to images and labels, and its switches."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import ROOT
from mcuvision.compose import compose
from mcuvision.config.base import ConfigError
from mcuvision.config.train import AugmentConfig
from mcuvision.data.input_pipeline import Split, make_dataset
from mcuvision.data.mix import build_mixer
from test_augment import OFF

N = 6  # images per batch, one class each: a label row names the image and its partner


def constant_batch(size: int = 32) -> tuple[tf.Tensor, tf.Tensor]:
    """Image i is a flat grey of value 20 + 40 i, label i is one-hot class i."""
    values = 20.0 + 40.0 * np.arange(N, dtype=np.float32)
    images = np.broadcast_to(values[:, None, None, None], (N, size, size, 3)).copy()
    return tf.constant(images), tf.constant(np.eye(N, dtype=np.float32))


def mixed(config: AugmentConfig, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    images, labels = constant_batch()
    out_images, out_labels = build_mixer(config, seed)(images, labels)
    return out_images.numpy(), out_labels.numpy()


MIXUP = dataclasses.replace(OFF, mix_rate=1.0, mixup_alpha=0.4, cutmix_factor=0.0)
CUTMIX = dataclasses.replace(OFF, mix_rate=1.0, mixup_alpha=0.0, cutmix_factor=1.0)
VALUES = 20.0 + 40.0 * np.arange(N)


@pytest.mark.parametrize("config", [MIXUP, CUTMIX], ids=["mixup", "cutmix"])
def test_shapes_dtypes_ranges_and_label_sums(config):
    images, labels = mixed(config)
    assert images.shape == (N, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (N, N) and labels.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert (labels >= -1e-6).all()
    assert not np.allclose(labels, np.eye(N)), "rate 1: every batch is mixed"


@pytest.mark.parametrize("config", [MIXUP, CUTMIX], ids=["mixup", "cutmix"])
def test_same_seed_same_mix_other_seed_other_mix(config):
    first, again, other = mixed(config, 5), mixed(config, 5), mixed(config, 6)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_mixup_blends_pixels_with_the_label_weights():
    images, labels = mixed(MIXUP)
    # Each image is w * own + (1 - w) * partner, and its label row holds w and 1 - w on those classes.
    expected = labels @ VALUES
    np.testing.assert_allclose(images[:, :, :, 0].mean(axis=(1, 2)), expected, rtol=1e-4)
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 0.0, atol=1e-3)  # a blend of flat images


def test_cutmix_pastes_a_rectangle_whose_area_is_the_label_weight():
    images, labels = mixed(CUTMIX)
    for i in range(N):
        own = labels[i, i]
        partner = [j for j in range(N) if j != i and labels[i, j] > 1e-6]
        pixels = images[i, :, :, 0]
        assert set(np.unique(pixels)) <= {VALUES[i], *VALUES[partner]}  # pasted, not blended
        if partner:
            share = np.mean(pixels == VALUES[partner[0]])
            assert abs(share - labels[i, partner[0]]) < 0.07, (i, share, labels[i])  # pixel rounding
            rows, cols = np.nonzero(pixels == VALUES[partner[0]])
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box == rows.size, "the pasted part is one rectangle"
        else:
            assert own == pytest.approx(1.0, abs=1e-5)


def test_rate_decides_per_batch():
    config = dataclasses.replace(MIXUP, mix_rate=0.5)
    mixer = build_mixer(config, 1)
    images, labels = constant_batch()
    changed = [not np.allclose(mixer(images, labels)[1].numpy(), np.eye(N)) for _ in range(60)]
    assert 15 <= sum(changed) <= 45


@pytest.mark.parametrize("off", [{"mix_rate": 0.0}, {"mixup_alpha": 0.0, "cutmix_factor": 0.0}])
def test_off_builds_nothing(off):
    assert build_mixer(dataclasses.replace(MIXUP, **{"cutmix_factor": 1.0, **off}), 0) is None


def test_both_kinds_each_take_batches():
    mixer = build_mixer(dataclasses.replace(MIXUP, cutmix_factor=1.0), 2)
    images, labels = constant_batch()
    kinds = set()
    for _ in range(20):
        out = mixer(images, labels)[0].numpy()
        kinds.add("cutmix" if np.any(out.std(axis=(1, 2, 3)) > 1e-3) else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_dataset_mixes_training_batches_only(tmp_path):
    from PIL import Image

    paths = []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(path)
        paths.append(str(path))
    split = Split(paths=paths, labels=np.arange(8) % 4, orientations=np.ones(8, np.int32))
    mixer = build_mixer(CUTMIX, 0)
    train = make_dataset(split, 4, 32, "bilinear", 8, training=True, mix=mixer, seed=0)
    val = make_dataset(split, 4, 32, "bilinear", 8, training=False, mix=mixer)
    train_labels = next(iter(train))[1].numpy()
    val_labels = next(iter(val))[1].numpy()
    np.testing.assert_allclose(train_labels.sum(axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(np.sort(train_labels, axis=1)[:, -1], np.ones(8)), "training labels became soft"
    np.testing.assert_array_equal(np.sort(val_labels, axis=1)[:, -1], np.ones(8))


@pytest.mark.parametrize("key,value", [("mix_rate", 1.5), ("mixup_alpha", -0.1), ("cutmix_factor", 2.0),
                                       ("mix_rate", None)])
def test_bad_mixing_keys_name_the_key(key, value):
    section = yaml.safe_load(compose([], ROOT / "conf"))["train"]["augment"]
    section[key] = value
    with pytest.raises(ConfigError, match=f"train.augment.{key}"):
        AugmentConfig.from_section(section)
