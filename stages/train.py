"""train: the manifest's train and val splits -> the float ST EfficientNet LC v1 (.keras) + metrics.

Interruptions: after every epoch the model and optimizer state, the best epoch's weights and
the epoch logs are backed up in a folder keyed by a fingerprint of (params, manifest), in a way
that a kill at any instant leaves usable (mcuvision.model.training.EpochBackup); a killed run re-run
with the same inputs RESUMES from the last finished epoch, with its early-stopping state, metrics
and plots continued. The backup is deleted once training ends. The .keras file appears only when
training has finished (written to a temporary name, then renamed), and with
train.deterministic the same inputs give the same bytes (mcuvision.model.training.save_model).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mcuvision.atomic import write_json
from mcuvision.config.base import as_dict, load_params, require, seed_of
from mcuvision.config.model import ModelConfig
from mcuvision.config.train import TrainConfig
from mcuvision.data.augment import build_augmenter
from mcuvision.data.input_pipeline import make_dataset, read_split, steps_per_epoch
from mcuvision.data.mix import build_mixer
from mcuvision.errors import PipelineError, fail, require_inputs
from mcuvision.model.architecture import build_model
from mcuvision.model.checkpoint import file_sha256, init_from_checkpoint
from mcuvision.model.training import (
    AveragedWeights,
    EpochBackup,
    PreciseBatchNorm,
    Throughput,
    TrainSide,
    compile_model,
    save_model,
    set_bn_momentum,
)


def pick_strategy() -> tf.distribute.Strategy:
    """One replica per logical GPU (MirroredStrategy when there are several); without a GPU, one per
    logical CPU device, of which TensorFlow makes one unless told otherwise (the tests split the CPU
    into two to run the several-replica path)."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if gpus:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def precision_policy(mixed: bool, on_gpu: bool) -> str:
    """Keras' dtype policy for training: float16 compute on a GPU, bfloat16 on a CPU (fast only where
    it has AVX-512 BF16 or AMX; elsewhere TensorFlow emulates it), float32 without train.mixed_precision.
    Variables stay float32 under either mixed policy, so the saved model is float32 (see run)."""
    if not mixed:
        return "float32"
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def fingerprint(train: TrainConfig, model: ModelConfig, seed: int, manifest: Path) -> str:
    digest = hashlib.sha256(json.dumps([as_dict(train), as_dict(model), seed], sort_keys=True).encode())
    digest.update(manifest.read_bytes())
    if train.init_from:  # a backup made from another checkpoint's content is not resumed
        digest.update(file_sha256(Path(train.init_from)).encode())
    return digest.hexdigest()[:16]


def check_low_res(train: TrainConfig, model_config: ModelConfig) -> None:
    """ConfigError unless train.low_res is null or below model.res (the side the model is saved at)."""
    require(train.low_res is None or train.low_res < model_config.res, "train.low_res", train.low_res,
            f"null or below model.res ({model_config.res})")


def callbacks(train: TrainConfig, backup_dir: Path, live_dir: Path, throughput: Throughput,
              precise_bn) -> tuple[list, EpochBackup]:
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    stateful = [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=train.early_stopping_patience,
                                              restore_best_weights=True, verbose=1)]
    if train.schedule == "plateau":
        stateful.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=train.plateau_factor,
                                                          patience=train.plateau_patience,
                                                          min_lr=train.min_learning_rate, verbose=1))
    live = DVCLiveCallback(live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False))
    # After the callbacks whose state it saves and restores (see EpochBackup).
    # Kept until the model and metrics are written: a kill while they are saved loses no epoch.
    backup = EpochBackup(backup_dir, stateful=stateful, replay=[live], remove_at_end=False)
    # Validation sees the averaged weights (a no-op without train.ema_momentum) with their own
    # BatchNorm statistics; EarlyStopping keeps them as the best, then the raw ones come back.
    averaged = AveragedWeights()
    return [averaged, precise_bn, *stateful, averaged.restore, backup, throughput, live], backup


def run(train: TrainConfig, model_config: ModelConfig, seed: int, *, manifest_path: Path, raw: Path,
        model_out: Path, metrics_out: Path, live_dir: Path, backup_root: Path, extra_callbacks=(),
        xla: bool | None = None) -> dict:
    """Train and write the float model and metrics; `xla`: compile the training step with XLA (None:
    on a GPU only). Returns the metrics written. Raises MissingInputError for a missing input."""
    require_inputs(manifest_path, raw)
    keras.utils.set_random_seed(seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = pick_strategy()
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    # XLA speeds GPUs up but, measured on a 2-core CPU at 128x128, made steps ~2.5x slower.
    xla = on_gpu if xla is None else xla
    policy = precision_policy(train.mixed_precision, on_gpu)
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _fit(train, model_config, seed, strategy, on_gpu, xla, manifest_path=manifest_path, raw=raw,
                    model_out=model_out, metrics_out=metrics_out, live_dir=live_dir, backup_root=backup_root,
                    extra_callbacks=extra_callbacks)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _fit(train: TrainConfig, model_config: ModelConfig, seed: int, strategy: tf.distribute.Strategy, on_gpu: bool,
         xla: bool, *, manifest_path: Path, raw: Path, model_out: Path, metrics_out: Path, live_dir: Path,
         backup_root: Path, extra_callbacks) -> dict:
    policy = keras.mixed_precision.global_policy().name

    manifest = pd.read_csv(manifest_path)
    classes = manifest.drop_duplicates("class_index").sort_values("class_index")["label"].tolist()
    train_split, val_split = read_split(manifest, raw, "train"), read_split(manifest, raw, "val")
    res, interpolation = model_config.res, model_config.interpolation
    augment = build_augmenter(train.augment, seed)
    work = backup_root / fingerprint(train, model_config, seed, manifest_path)
    # A disk cache is rebuilt every run: one left by a killed run is incomplete (and locked).
    cache_dir = work / "decoded"
    shutil.rmtree(cache_dir, ignore_errors=True)
    # Progressive resizing: the dataset resizes training batches to this side, set every epoch.
    progressive = train.low_res is not None and train.low_res_epochs > 0
    side = tf.Variable(res, dtype=tf.int32, trainable=False, name="train_side") if progressive else None
    train_ds = make_dataset(train_split, len(classes), res, interpolation, train.batch_size, training=True,
                            cache=train.cache, cache_dir=cache_dir / "train", augment=augment, seed=seed,
                            side=side, mix=build_mixer(train.augment, seed + 1))
    val_ds = make_dataset(val_split, len(classes), res, interpolation, train.batch_size, training=False,
                          cache=train.cache, cache_dir=cache_dir / "val")
    steps = steps_per_epoch(len(train_split), train.batch_size)

    def new_model(any_side: bool) -> keras.Model:
        model = build_model(len(classes), res, dropout=train.dropout, width=model_config.width,
                            depth=model_config.depth, expansion=model_config.expansion,
                            se_ratio=model_config.se_ratio, drop_connect=model_config.drop_connect,
                            any_side=any_side)
        set_bn_momentum(model, train.bn_momentum)
        return model

    with strategy.scope():
        model = new_model(any_side=progressive)
        checkpoint = (init_from_checkpoint(model, Path(train.init_from), train.frozen_layers)
                      if train.init_from else None)
        compile_model(model, train, steps, xla=xla)

    backup_dir = work / "state"
    throughput = Throughput(min(len(train_split), steps * train.batch_size))  # images actually trained on
    bn_batches = math.ceil(train.precise_bn_images / train.batch_size)
    precise_bn = PreciseBatchNorm(train_ds, min(bn_batches, steps))
    print(f"train: {len(train_split)} train / {len(val_split)} val images, {len(classes)} classes, "
          f"{res}x{res}, {strategy.num_replicas_in_sync} replica(s) on {'GPU' if on_gpu else 'CPU'}, {policy}"
          f"{', XLA' if xla else ''}", flush=True)
    start = time.perf_counter()
    chosen, backup = callbacks(train, backup_dir, live_dir, throughput, precise_bn)
    if progressive:
        chosen.insert(0, TrainSide(side, train.low_res, train.low_res_epochs, res))
    history = model.fit(train_ds, validation_data=val_ds, epochs=train.epochs, verbose=2, shuffle=False,
                        callbacks=chosen + list(extra_callbacks))
    wall = time.perf_counter() - start
    shutil.rmtree(cache_dir, ignore_errors=True)
    if progressive or policy != "float32":
        # The same weights in the model the exporters need: a fixed input side, float32 throughout
        # (a mixed policy's variables are float32 already; its casts must not reach the converters).
        keras.mixed_precision.set_global_policy("float32")
        fixed = new_model(any_side=False)
        fixed.set_weights(model.get_weights())
        model = fixed

    save_model(model, model_out)
    # Every epoch's logs, those a killed earlier run finished included (after a resume,
    # history.history holds only this run's epochs).
    val_acc = [logs["val_accuracy"] for logs in backup.logs if "val_accuracy" in logs]
    steady = throughput.per_epoch[1:] or throughput.per_epoch
    metrics = {
        "best_val_accuracy": float(max(val_acc)) if val_acc else None,
        "best_epoch": int(np.argmax(val_acc)) + 1 if val_acc else None,
        # The last epoch's, beside the best: how much choosing the epoch on val flatters the number.
        "final_val_accuracy": float(val_acc[-1]) if val_acc else None,
        "epochs_run": len(backup.logs), "epochs_this_run": len(history.epoch),
        "wall_time_s": round(wall, 1),
        "images_per_s": round(float(np.median(steady)), 1) if steady else None,
        "train_images": len(train_split), "val_images": len(val_split), "classes": classes,
        "device": "GPU" if on_gpu else "CPU", "replicas": strategy.num_replicas_in_sync,
        "precision_policy": policy, "xla": xla,
        "init_from": checkpoint,
    }
    write_json(metrics_out, metrics)
    # Only now: a kill before metrics/train.json exists makes DVC re-run train, which resumes here.
    backup.remove()
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the float model.")
    for name in ("manifest", "raw", "model", "metrics", "live", "backup"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        train, model_config = TrainConfig.from_params(params), ModelConfig.from_params(params)
        seed = seed_of(params)
        check_low_res(train, model_config)
        metrics = run(train, model_config, seed, manifest_path=args.manifest, raw=args.raw, model_out=args.model,
                      metrics_out=args.metrics, live_dir=args.live, backup_root=args.backup)
    except PipelineError as error:
        fail("train", error)
    print(f"train: best val accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
          f"{metrics['epochs_run']} epochs in {metrics['wall_time_s']} s, {metrics['images_per_s']} img/s "
          f"-> {args.model}")


if __name__ == "__main__":
    main()
