"""train: learns on tiny synthetic data, writes every output, resumes after an interruption."""
from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from mcuvision.config.model import ModelConfig
from mcuvision.config.train import TrainConfig
from mcuvision.data.synthetic import make_dataset
from stages import train as train_stage

CLASSES = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Synthetic class folders and a hand-made manifest: 3 classes, 24 train + 8 val images each."""
    raw = tmp_path_factory.mktemp("raw")
    make_dataset(raw, CLASSES, 32, 64, seed=3)
    rows = []
    for index in range(CLASSES):
        for n in range(32):
            rows.append({"path": f"class_{index:03d}/{n:04d}.jpg", "label": f"class_{index:03d}",
                         "class_index": index, "split": "train" if n < 24 else "val"})
    manifest = raw.parent / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return raw, manifest


def configs(params, epochs: int) -> tuple[TrainConfig, ModelConfig]:
    params["model"]["res"] = 64
    params["model"]["depth"] = 0.5  # every kind of block, half the repeats: half the tracing time
    params["train"].update(epochs=epochs, batch_size=8, learning_rate=0.002, warmup_epochs=0,
                           early_stopping_patience=10, label_smoothing=0.0)
    return TrainConfig.from_params(params), ModelConfig.from_params(params)


def outputs(tmp_path):
    return {"model_out": tmp_path / "models" / "float.keras", "metrics_out": tmp_path / "train.json",
            "live_dir": tmp_path / "live", "backup_root": tmp_path / "backup"}


def test_two_epochs_beat_chance_and_write_every_output(tmp_path, tiny, params):
    raw, manifest = tiny
    train, model = configs(params, epochs=2)
    out = outputs(tmp_path)
    metrics = train_stage.run(train, model, 127, manifest_path=manifest, raw=raw, **out)
    assert metrics["best_val_accuracy"] > 1.0 / CLASSES + 0.15, metrics
    assert metrics["epochs_run"] == 2 and metrics["images_per_s"] > 0 and metrics["train_images"] == 72
    assert json.loads(out["metrics_out"].read_text())["classes"] == ["class_000", "class_001", "class_002"]
    loaded = keras.models.load_model(out["model_out"])  # safe_mode=True by default
    assert loaded.output_shape == (None, CLASSES)
    assert (out["live_dir"] / "plots" / "metrics" / "eval" / "accuracy.tsv").is_file()
    assert not any(out["backup_root"].rglob("epoch-*")), "the resume backup is removed after success"


class Interrupt(keras.callbacks.Callback):
    """Stands in for a kill: stops the process's training after `epoch` epochs."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt(f"interrupted after epoch {self.after}")


def test_interrupted_run_leaves_no_model_and_resumes(tmp_path, tiny, params):
    raw, manifest = tiny
    train, model = configs(params, epochs=3)
    out = outputs(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_stage.run(train, model, 127, manifest_path=manifest, raw=raw, **out, extra_callbacks=[Interrupt(after=2)])
    assert not out["model_out"].exists(), "no half-written model after an interruption"
    folder = out["model_out"].parent
    assert not folder.exists() or not any(folder.iterdir()), "nor any temporary file beside it"
    metrics = train_stage.run(train, model, 127, manifest_path=manifest, raw=raw, **out)
    assert metrics["epochs_this_run"] == 1, "the re-run resumes after the 2 finished epochs"
    assert metrics["epochs_run"] == 3
    assert out["model_out"].is_file()


def test_progressive_resizing_trains_low_then_saves_the_fixed_side(tmp_path, tiny, params):
    """train.low_res: the first epochs see smaller images, the saved model takes model.res."""
    import tensorflow as tf

    from mcuvision.data.input_pipeline import Split, make_dataset

    raw, manifest = tiny
    params["train"].update(low_res=32, low_res_epochs=1, ema_momentum=0.9)
    train, model = configs(params, epochs=2)
    out = outputs(tmp_path)
    metrics = train_stage.run(train, model, 127, manifest_path=manifest, raw=raw, **out)
    assert metrics["epochs_run"] == 2
    loaded = keras.models.load_model(out["model_out"])
    assert loaded.input_shape == (None, 64, 64, 3)

    # The dataset follows the side variable between epochs.
    rows = pd.read_csv(manifest)
    split = Split([str(raw / p) for p in rows["path"][:16]], rows["class_index"][:16].to_numpy())
    side = tf.Variable(64, dtype=tf.int32)
    ds = make_dataset(split, CLASSES, 64, "nearest", 8, training=True, side=side)
    assert next(iter(ds))[0].shape == (8, 64, 64, 3)
    side.assign(32)
    assert next(iter(ds))[0].shape == (8, 32, 32, 3)
    # TrainSide sets that variable per epoch: low for the first low_epochs, then the model's side.
    from mcuvision.model.training import TrainSide
    schedule = TrainSide(side, 32, 3, 64)
    sides = []
    for epoch in range(5):
        schedule.on_epoch_begin(epoch)
        sides.append(int(side.numpy()))
    assert sides == [32, 32, 32, 64, 64]


def test_low_res_must_be_below_model_res(params):
    from mcuvision.config.base import ConfigError

    params["train"].update(low_res=128, low_res_epochs=2)
    train, model = TrainConfig.from_params(params), ModelConfig.from_params(params)
    with pytest.raises(ConfigError, match="train.low_res=128"):
        train_stage.check_low_res(train, model)
    params["train"].update(low_res=96)
    train_stage.check_low_res(TrainConfig.from_params(params), model)


def test_a_disk_cache_shuffles_in_a_bounded_buffer(tiny, tmp_path, monkeypatch):
    """cache: disk is for datasets that do not fit in memory: the shuffle buffer holds at most
    DISK_SHUFFLE_BYTES of images, over a cache written in a seeded random order."""
    from mcuvision.data import input_pipeline
    from mcuvision.data.input_pipeline import Split, make_dataset, shuffle_images

    assert shuffle_images(50_000, 224, "memory") == 50_000
    assert shuffle_images(50_000, 224, "disk") == (1 << 30) // (224 * 224 * 3)
    assert shuffle_images(10, 224, "disk") == 10
    raw, manifest = tiny
    rows = pd.read_csv(manifest)
    rows = rows[rows["split"] == "train"]  # 24 of class 0, then 24 of class 1, then of class 2
    split = Split([str(raw / p) for p in rows["path"]], rows["class_index"].to_numpy())
    monkeypatch.setattr(input_pipeline, "DISK_SHUFFLE_BYTES", 4 * 16 * 16 * 3)  # 4 images at 16x16
    assert shuffle_images(len(split), 16, "disk") == 4
    ds = make_dataset(split, CLASSES, 16, "nearest", 8, training=True, cache="disk", cache_dir=tmp_path, seed=5)
    epochs = [np.concatenate([labels.numpy().argmax(axis=1) for _, labels in ds]) for _ in range(2)]
    for labels in epochs:
        assert np.bincount(labels, minlength=CLASSES).tolist() == [24] * CLASSES, "every image once per epoch"
        assert len(set(labels[:8].tolist())) > 1, "classes mixed from the first batch"
    assert not np.array_equal(*epochs), "a new order every epoch"
