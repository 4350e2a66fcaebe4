"""The train stage's optimizer: Keras' Adam / AdamW (with its weight average), updated with fused kernels.

Keras 3 writes the Adam update of each variable as about twenty small operations (casts, powers,
the two moment updates, the step) and as many again for decoupled weight decay and the weight
average. For this model's 262 trainable variables that is ~16,500 graph operations, which
TensorFlow traces and then optimizes before the first training step: measured on a 2-core AMD
EPYC, 6.4 s of tracing and 3.9 s of first call for the update alone, about a third of the first
epoch's extra time. TensorFlow's own fused kernel, `ResourceApplyAdam`, does the same arithmetic
in one operation per variable (its formula is Keras': lr_t = lr * sqrt(1 - beta_2^t) /
(1 - beta_1^t), var -= lr_t * m / (sqrt(v) + epsilon)). Fused: ~4,000 operations, 1.2 s + 1.0 s.

`fuse_updates` keeps Keras' optimizer object (its class, config, variables and saved form do not
change; a .keras file loads anywhere) and replaces only how one instance applies its gradients.
It falls back to Keras' own code wherever the fused path is not the same arithmetic or not
tested: several replicas, gradient accumulation, periodic EMA overwrite, AMSGrad, non-float32
variables.
"""
from __future__ import annotations

import types

import keras
import tensorflow as tf

from mcuvision.config.train import TrainConfig


def make_optimizer(train: TrainConfig, rate) -> keras.optimizers.Optimizer:
    """Adam (`train.optimizer: adam`) or AdamW (decoupled `train.weight_decay`), with the weight
    average when `train.ema_momentum` > 0, at learning rate `rate` (a float or a Keras schedule),
    its update fused (`fuse_updates`)."""
    ema = {"use_ema": True, "ema_momentum": train.ema_momentum} if train.ema_momentum > 0 else {}
    if train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train.weight_decay, **ema)
    else:
        optimizer = keras.optimizers.Adam(rate, **ema)
    return fuse_updates(optimizer)


def fuse_updates(optimizer: keras.optimizers.Adam) -> keras.optimizers.Adam:
    """The same `optimizer`, whose gradient application (weight decay, Adam step, weight average)
    uses one fused TensorFlow kernel per variable and step where it can. Results equal Keras' own
    update within float32 rounding (tests/test_optimizer.py). Returns `optimizer` itself.

    Raises TypeError for an optimizer other than keras.optimizers.Adam (AdamW included)."""
    if not isinstance(optimizer, keras.optimizers.Adam):
        raise TypeError(f"fuse_updates takes a keras.optimizers.Adam, not {type(optimizer).__name__}")
    keras_apply = optimizer._backend_apply_gradients

    def apply(self, grads, trainable_variables):
        if not _fusable(self, trainable_variables):
            return keras_apply(grads, trainable_variables)
        _fused_apply(self, self._clip_gradients(grads), trainable_variables)

    optimizer._backend_apply_gradients = types.MethodType(apply, optimizer)
    return optimizer


def _fusable(optimizer: keras.optimizers.Adam, variables) -> bool:
    return (not tf.distribute.has_strategy() and not optimizer.gradient_accumulation_steps
            and not optimizer.ema_overwrite_frequency and not optimizer.amsgrad
            and all(var.dtype == "float32" for var in variables))


def _fused_apply(optimizer: keras.optimizers.Adam, grads, variables) -> None:
    # Everything that does not depend on the variable is computed once per step, not per variable.
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    lr = tf.cast(optimizer.learning_rate, tf.float32)
    beta_1, beta_2 = tf.constant(optimizer.beta_1, tf.float32), tf.constant(optimizer.beta_2, tf.float32)
    beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
    epsilon = tf.constant(optimizer.epsilon, tf.float32)
    decay = lr * optimizer.weight_decay if optimizer.weight_decay else None
    for grad, var in zip(grads, variables):
        index = optimizer._get_variable_index(var)
        value = var.value  # the tf.Variable behind the Keras variable
        if decay is not None and optimizer._use_weight_decay(var):  # var -= lr * wd * var, before the step
            tf.raw_ops.ResourceApplyGradientDescent(var=value.handle, alpha=decay, delta=value.read_value())
        tf.raw_ops.ResourceApplyAdam(
            var=value.handle, m=optimizer._momentums[index].value.handle,
            v=optimizer._velocities[index].value.handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
            grad=tf.convert_to_tensor(grad))
    if optimizer.use_ema:
        # Keras' rule: average = m * average + (1 - m) * var, with m = 0 at the very first step
        # (the average starts as the weights); written as average -= (1 - m) * (average - var).
        momentum = tf.cast(tf.not_equal(optimizer.iterations, 0), tf.float32) * optimizer.ema_momentum
        for var, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
            if average is None:
                continue
            held = average.value
            tf.raw_ops.ResourceApplyGradientDescent(var=held.handle, alpha=1.0 - momentum,
                                                    delta=held.read_value() - var.value.read_value())
