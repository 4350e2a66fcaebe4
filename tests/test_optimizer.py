"""The fused optimizer update: the same numbers as Keras' own Adam / AdamW / weight average, far
fewer graph operations to trace, and a saved model that plain Keras loads."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from mcuvision.config.train import TrainConfig
from mcuvision.model.optimizer import fuse_updates, make_optimizer

SHAPES = [(3, 3, 4, 8), (8,), (8,), (16, 5), (5,)]


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=shape).astype("float32"), name=f"w{i}")
            for i, shape in enumerate(SHAPES)]


def _run(optimizer, steps=6, seed=1):
    """Apply `steps` random gradient steps in a traced function; every variable's final value."""
    variables = _variables()
    optimizer.build(variables)
    rng = np.random.default_rng(seed)
    grads = [[tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables] for _ in range(steps)]
    step = tf.function(lambda g: optimizer.apply(g, variables))
    for g in grads:
        step(g)
    averages = [a.numpy() for a in getattr(optimizer, "_model_variables_moving_average", [])]
    slots = [v.numpy() for v in optimizer._momentums + optimizer._velocities]
    return [v.numpy() for v in variables], slots, averages


KINDS = {
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.05),
    "adamw_ema_schedule": lambda: keras.optimizers.AdamW(
        keras.optimizers.schedules.CosineDecay(0.0001, 10, warmup_target=0.01, warmup_steps=3),
        weight_decay=0.05, use_ema=True, ema_momentum=0.9),
    "adam_ema": lambda: keras.optimizers.Adam(0.01, use_ema=True, ema_momentum=0.5),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fused_update_equals_keras(kind):
    keras_vars, keras_slots, keras_avg = _run(KINDS[kind]())
    fused_vars, fused_slots, fused_avg = _run(fuse_updates(KINDS[kind]()))
    start = [v.numpy() for v in _variables()]
    assert max(np.abs(a - b).max() for a, b in zip(keras_vars, start)) > 1e-2  # the steps moved the weights
    for ours, theirs in zip(fused_vars + fused_slots + fused_avg, keras_vars + keras_slots + keras_avg):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert len(fused_avg) == (len(SHAPES) if "ema" in kind else 0)


def test_weight_decay_exclusions_are_kept():
    def make():
        optimizer = keras.optimizers.AdamW(0.01, weight_decay=0.5)
        optimizer.exclude_from_weight_decay(var_names=["w1", "w2"])
        return optimizer

    keras_vars, _, _ = _run(make())
    fused_vars, _, _ = _run(fuse_updates(make()))
    for ours, theirs in zip(fused_vars, keras_vars):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _graph(optimizer):
    variables = _variables()
    optimizer.build(variables)
    grads = [tf.zeros_like(v) for v in variables]
    return tf.function(lambda g: optimizer.apply(g, variables)).get_concrete_function(grads).graph


def test_one_fused_kernel_per_variable_and_a_smaller_graph():
    make = KINDS["adamw_ema_schedule"]
    fused, plain = _graph(fuse_updates(make())), _graph(make())
    kinds = [op.type for op in fused.get_operations()]
    assert kinds.count("ResourceApplyAdam") == len(SHAPES)
    assert "ResourceApplyAdam" not in [op.type for op in plain.get_operations()]
    assert len(fused.get_operations()) < len(plain.get_operations()) / 2


def test_amsgrad_falls_back_to_keras():
    graph = _graph(fuse_updates(keras.optimizers.Adam(0.01, amsgrad=True)))
    assert "ResourceApplyAdam" not in [op.type for op in graph.get_operations()]


def test_only_adam_is_fused():
    with pytest.raises(TypeError, match="SGD"):
        fuse_updates(keras.optimizers.SGD(0.1))


def test_make_optimizer_follows_the_config_and_saves_as_keras_own(tmp_path, base_params):
    default = TrainConfig.from_params(base_params)
    train = dataclasses.replace(default, optimizer="adamw", weight_decay=0.02, ema_momentum=0.99)
    optimizer = make_optimizer(train, 0.001)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert (optimizer.weight_decay, optimizer.use_ema, optimizer.ema_momentum) == (0.02, True, 0.99)
    plain = make_optimizer(dataclasses.replace(default, optimizer="adam", ema_momentum=0.0), 0.001)
    assert type(plain) is keras.optimizers.Adam and not plain.use_ema and not plain.weight_decay

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 3), "float32"), epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no project import needed for the optimizer
    assert type(loaded.optimizer) is keras.optimizers.AdamW
    np.testing.assert_allclose(loaded.predict(np.ones((1, 4), "float32"), verbose=0),
                               model.predict(np.ones((1, 4), "float32"), verbose=0), rtol=1e-6)


def test_a_learning_rate_set_after_tracing_is_used():
    """ReduceLROnPlateau assigns the rate between epochs, after the step was traced."""
    variables = _variables()
    optimizer = fuse_updates(keras.optimizers.AdamW(0.01, weight_decay=0.1))
    optimizer.build(variables)
    grads = [tf.ones_like(v) for v in variables]
    step = tf.function(lambda g: optimizer.apply(g, variables))
    step(grads)
    moved = [v.numpy() for v in variables]
    optimizer.learning_rate = 0.0
    step(grads)
    for var, before in zip(variables, moved):
        np.testing.assert_array_equal(var.numpy(), before)
