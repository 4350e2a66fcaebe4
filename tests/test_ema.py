"""The weight average (train.ema_momentum): validation and the kept best weights are the optimizer's
EMA, the raw weights carry on training, and the resume backup stores the right ones."""
from __future__ import annotations

import keras
import numpy as np

from mcuvision.model.training import BEST_WEIGHTS, AveragedWeights, EpochBackup, PreciseBatchNorm, load_arrays


def tiny_data(n: int = 32, res: int = 8):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, res, res, 3)).astype(np.float32)
    y = keras.utils.to_categorical((x.mean(axis=(1, 2, 3)) > 0.5).astype(int), 2)
    return x, y


def tiny_model(momentum: float) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    ema = {"use_ema": True, "ema_momentum": momentum} if momentum else {}
    model.compile(keras.optimizers.Adam(0.05, **ema), "categorical_crossentropy", metrics=["accuracy"])
    return model


class Probe(keras.callbacks.Callback):
    """Records the trainable weights seen by validation and at the very end of each epoch."""

    def __init__(self):
        super().__init__()
        self.validated, self.averages, self.after_epoch = [], [], []

    def on_test_end(self, logs=None):
        self.validated.append([v.numpy().copy() for v in self.model.trainable_variables])
        self.averages.append([v.numpy().copy() for v in self.model.optimizer._model_variables_moving_average])

    def on_epoch_end(self, epoch, logs=None):
        self.after_epoch.append([v.numpy().copy() for v in self.model.trainable_variables])


def fit(model, callbacks, epochs=3):
    x, y = tiny_data()
    return model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x, y), verbose=0, shuffle=False,
                     callbacks=callbacks)


def test_validation_sees_the_average_and_training_the_raw_weights():
    model = tiny_model(0.9)
    averaged, probe = AveragedWeights(), Probe()
    stopping = keras.callbacks.EarlyStopping("val_accuracy", patience=10, restore_best_weights=True)
    fit(model, [averaged, stopping, averaged.restore, probe])
    for validated, average, after in zip(probe.validated, probe.averages, probe.after_epoch):
        for v, a in zip(validated, average):
            np.testing.assert_array_equal(v, a)
        # After the epoch the raw weights are back: they differ from the average.
        assert any(not np.allclose(r, a) for r, a in zip(after, average))
    # EarlyStopping kept the averaged weights of its best epoch.
    best = [w for w in stopping.best_weights]
    trainable_best = [best[i] for i, v in enumerate(model.weights) if v.trainable]
    for kept, average in zip(trainable_best, probe.averages[stopping.best_epoch]):
        np.testing.assert_array_equal(kept, average)


def test_average_changes_the_validated_numbers():
    """Same seed, same data: with the average swapped in, the validation loss is not the raw one."""
    raw = fit(tiny_model(0.0), [AveragedWeights()]).history["val_loss"]
    model = tiny_model(0.9)
    averaged = AveragedWeights()
    with_average = fit(model, [averaged, averaged.restore]).history["val_loss"]
    assert not np.allclose(raw, with_average)


def test_without_ema_it_is_a_no_op():
    model = tiny_model(0.0)
    averaged, probe = AveragedWeights(), Probe()
    probe.on_test_end = lambda logs=None: probe.validated.append(
        [v.numpy().copy() for v in model.trainable_variables])
    fit(model, [averaged, averaged.restore, probe], epochs=2)
    for validated, after in zip(probe.validated, probe.after_epoch):
        for v, a in zip(validated, after):
            np.testing.assert_array_equal(v, a)


def test_precise_bn_runs_on_the_averaged_weights():
    """PreciseBatchNorm after the swap: the BatchNorm statistics validation uses are those of the
    averaged weights (recomputing them by hand from the average gives the same numbers)."""
    x, y = tiny_data()
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = tiny_model(0.9)
    averaged = AveragedWeights()
    seen = {}

    class Stats(keras.callbacks.Callback):
        def on_test_end(self, logs=None):
            bn = next(layer for layer in self.model.layers if isinstance(layer, keras.layers.BatchNormalization))
            seen["mean"] = bn.moving_mean.numpy().copy()
            conv = self.model.layers[1]
            features = conv(x).numpy()
            seen["expected"] = features.reshape(4, 8, *features.shape[1:]).mean(axis=(1, 2, 3)).mean(axis=0)

    fit(model, [averaged, PreciseBatchNorm(ds, 4), Stats(), averaged.restore], epochs=1)
    np.testing.assert_allclose(seen["mean"], seen["expected"], rtol=1e-4, atol=1e-5)


def test_backup_stores_the_best_averaged_weights(tmp_path):
    model = tiny_model(0.9)
    averaged = AveragedWeights()
    stopping = keras.callbacks.EarlyStopping("val_accuracy", patience=10, restore_best_weights=True)
    backup = EpochBackup(tmp_path, stateful=[stopping], remove_at_end=False)
    fit(model, [averaged, stopping, averaged.restore, backup], epochs=2)
    latest = backup.latest()
    saved_best = load_arrays(latest / BEST_WEIGHTS, model.weights, "weights")
    for saved, kept in zip(saved_best, stopping.best_weights):
        np.testing.assert_array_equal(saved, kept)


def test_compiled_training_step_is_traced_once():
    """A variable first created inside the traced step (a metric named by a string, the optimizer's
    slots and weight average) makes TensorFlow trace the whole step twice: compile_model creates
    them all before fit."""
    import yaml

    from mcuvision.compose import compose
    from mcuvision.config.train import TrainConfig
    from mcuvision.model.training import compile_model

    train = TrainConfig.from_params(yaml.safe_load(compose(["train=fast"])))
    assert train.ema_momentum > 0 and train.optimizer == "adamw"
    model = tiny_model(0.0)
    compile_model(model, train, steps_per_epoch=4, xla=False)
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(traces) == 1
    assert model.optimizer.built and model.optimizer.use_ema
