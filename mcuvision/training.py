"""How the train stage compiles the model, and the Keras callbacks it relies on."""
from __future__ import annotations

import time

import keras

from .config.train import TrainConfig


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Momentum of every BatchNormalization layer's moving statistics (Keras' default is 0.99)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation, set BatchNorm moving statistics to the exact average over a few
    training batches under the current weights ("precise BN").

    With few steps per epoch the exponential moving averages lag far behind the weights, and
    validation sits at chance for many epochs while training accuracy climbs. Averaging the
    batch statistics of `batches` forward passes removes that lag at the cost of a short
    forward-only pass. Single-replica only (an eager call cannot update mirrored variables).
    """

    def __init__(self, dataset, batches: int):
        super().__init__()
        self.dataset, self.batches = dataset, batches

    def on_test_begin(self, logs=None):
        if self.batches <= 0:
            return
        norms = [layer for layer in self.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        kept = [layer.momentum for layer in norms]
        try:
            for k, (images, _) in enumerate(self.dataset.take(self.batches)):
                # momentum k/(k+1) makes the moving value the running mean of the k+1 batch values.
                for layer in norms:
                    layer.momentum = k / (k + 1)
                self.model(images, training=True)
        finally:
            for layer, momentum in zip(norms, kept):
                layer.momentum = momentum


class Throughput(keras.callbacks.Callback):
    """Training images/s per epoch, timed over the training batches only (not validation)."""

    def __init__(self, images: int):
        super().__init__()
        self.images, self.per_epoch = images, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(self.images / max(self.last - self.start, 1e-9))


def learning_rate(train: TrainConfig, steps_per_epoch: int):
    if train.schedule != "cosine":
        return train.learning_rate  # constant, or lowered by ReduceLROnPlateau
    warmup = train.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=train.learning_rate * (0.01 if warmup else 1.0),
        decay_steps=max(1, train.epochs * steps_per_epoch - warmup),
        warmup_target=train.learning_rate if warmup else None, warmup_steps=warmup)


def compile_model(model: keras.Model, train: TrainConfig, steps_per_epoch: int, xla: bool) -> None:
    rate = learning_rate(train, steps_per_epoch)
    if train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
                  metrics=["accuracy"], jit_compile=xla)
