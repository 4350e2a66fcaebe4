"""How the train stage compiles and saves the model, and the Keras callbacks it relies on."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mcuvision.atomic import atomic_dir, atomic_path
from mcuvision.config.train import TrainConfig
from mcuvision.errors import PipelineError
from mcuvision.model.optimizer import make_optimizer


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

    The forward pass is one traced function in which every BatchNorm layer has momentum 0, so
    after a call each layer's moving mean and variance hold that batch's statistics; they are
    averaged here and assigned at the end. Traced once: an eager pass of this model costs about
    4x a graph one (1.7 s against 0.4 s for 64 images at 128x128, measured on a 2-core AMD EPYC).
    The batches come from ONE iterator over `dataset`, repeated, kept for the whole run: a new
    iterator per epoch (its shuffle buffer refilled, its pipeline started and torn down) made this
    callback take 3.0 s per epoch instead of 1.25 s on the embedded sample (2-core AMD EPYC).
    """

    def __init__(self, dataset, batches: int):
        super().__init__()
        self.dataset, self.batches = dataset, batches
        self._forward = None
        self._batches = None

    def _norms(self):
        return [layer for layer in self.model.layers if isinstance(layer, keras.layers.BatchNormalization)]

    def on_test_begin(self, logs=None):
        if self.batches <= 0:
            return
        norms = self._norms()
        kept = [layer.momentum for layer in norms]
        try:
            for layer in norms:
                layer.momentum = 0.0  # read when the function is traced: moving stats = batch stats
            if self._forward is None:
                model = self.model
                self._forward = tf.function(lambda images: model(images, training=True), reduce_retracing=True)
                self._batches = iter(self.dataset.repeat())
            sums = None
            count = 0
            for _ in range(self.batches):
                images, _ = next(self._batches)
                self._forward(images)
                stats = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]
                sums = stats if sums is None else [(m + a, v + b) for (m, v), (a, b) in zip(sums, stats)]
                count += 1
            for layer, (mean, variance) in zip(norms, sums or []):
                layer.moving_mean.assign(mean / count)
                layer.moving_variance.assign(variance / count)
        finally:
            for layer, momentum in zip(norms, kept):
                layer.momentum = momentum


class AveragedWeights(keras.callbacks.Callback):
    """Validate the exponential moving average (EMA) of the weights instead of the raw weights.

    The average itself is Keras' optimizer EMA (`use_ema=True`: after every step,
    average = m * average + (1 - m) * weights, for the trainable variables only). Before each
    validation the averaged values are swapped into the model; BatchNorm moving statistics are
    not averaged, so `PreciseBatchNorm` (placed AFTER this callback) then recomputes them for the
    averaged weights, which is how an EMA is evaluated fairly (Morales-Brotons et al., "Exponential
    Moving Average of Weights in Deep Learning: Dynamics and Benefits", TMLR 2024). The averaged
    weights stay in the model until `on_epoch_end`, so EarlyStopping (placed BEFORE the swap back in
    the callback list, i.e. between this callback's two halves: see `restore`) keeps them as the
    best weights; then the raw weights come back and training continues from them.

    Use two entries in the callback list: `averaged` before PreciseBatchNorm and `averaged.restore`
    after EarlyStopping and before EpochBackup. A no-op when the optimizer has no EMA.
    """

    def __init__(self):
        super().__init__()
        self._raw: list | None = None
        self.restore = _RestoreRawWeights(self)

    def _variables(self):
        optimizer = self.model.optimizer
        if not getattr(optimizer, "use_ema", False) or not optimizer.built:
            return None
        return list(zip(self.model.trainable_variables, optimizer._model_variables_moving_average))

    def on_test_begin(self, logs=None):
        pairs = self._variables()
        if pairs is None or self._raw is not None:
            return
        self._raw = [var.numpy() for var, _ in pairs]
        for var, average in pairs:
            var.assign(average)

    def swap_back(self):
        pairs = self._variables()
        if pairs is None or self._raw is None:
            return
        for (var, _), value in zip(pairs, self._raw):
            var.assign(value)
        self._raw = None


class _RestoreRawWeights(keras.callbacks.Callback):
    """The second half of AveragedWeights: the raw weights back after the epoch's bookkeeping."""

    def __init__(self, owner: AveragedWeights):
        super().__init__()
        self.owner = owner

    def on_epoch_end(self, epoch, logs=None):
        self.owner.swap_back()


class TrainSide(keras.callbacks.Callback):
    """Progressive resizing: epochs before `low_epochs` train on `low` x `low` images, the later ones
    on `res` x `res`, by setting the int32 variable that the training dataset resizes to
    (mcuvision.data.input_pipeline.make_dataset(side=...)). Validation always runs at `res`.

    Fewer pixels make the early epochs cheaper (convolution cost grows with the pixel count), and
    ending at the test side lets the network settle on the statistics it will be tested at
    ("train low, test high": Touvron et al., "Fixing the train-test resolution discrepancy",
    NeurIPS 2019). The model needs an open input side (build_model(any_side=True)); switching
    traces the training step once more.
    """

    def __init__(self, side, low: int, low_epochs: int, res: int):
        super().__init__()
        self.side, self.low, self.low_epochs, self.res = side, low, low_epochs, res

    def on_epoch_begin(self, epoch, logs=None):
        self.side.assign(self.low if epoch < self.low_epochs else self.res)


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
    # The weight average lives in the optimizer (updated inside the compiled step, no Python per step).
    optimizer = make_optimizer(train, learning_rate(train, steps_per_epoch))
    # The metric as an object and the optimizer built here, eagerly: a variable first created inside
    # the traced training step (the "accuracy" string's metric, the optimizer's slots) makes
    # TensorFlow trace the whole step a second time, about half of the first epoch's extra time.
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], jit_compile=xla)
    optimizer.build(model.trainable_variables)


# -- saving -------------------------------------------------------------------------------------
_SHARED_ID = re.compile(rb'"shared_object_id": (\d+)')
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def reproducible_keras(data: bytes) -> bytes:
    """The same .keras archive without the bytes that change on every save of the same model.

    A .keras file is a zip of metadata.json, config.json and model.weights.h5. Saving the same
    weights twice gives different files because of metadata.json's `date_saved`, the
    `shared_object_id`s in config.json (Python id()s, i.e. memory addresses, of objects the
    config refers to more than once, such as the shared float32 DTypePolicy) and the weights
    entry's zip timestamp. Here the save date is dropped, the ids are renumbered 1, 2, ... in
    order of first appearance (loading only matches them with each other) and every entry gets
    the zip epoch. The weights file is copied unchanged.
    """
    renumbered: dict[bytes, int] = {}

    def renumber(match: re.Match) -> bytes:
        return b'"shared_object_id": %d' % renumbered.setdefault(match.group(1), len(renumbered) + 1)

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                content = _SHARED_ID.sub(renumber, content)
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            entry.compress_type, entry.external_attr = info.compress_type, 0o644 << 16
            target.writestr(entry, content)
    return out.getvalue()


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """`model.save` to `path`, atomically, as a file that depends only on the model's config and
    weights: with `train.deterministic` the same inputs give a byte-identical .keras, so DVC sees
    an unchanged output and skips what depends on it."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        tmp.write_bytes(reproducible_keras(tmp.read_bytes()))


# -- resuming after a kill ----------------------------------------------------------------------
WEIGHTS, BEST_WEIGHTS, JOURNAL = "state.npz", "best.npz", "journal.json"
# Keras' own format (save_weights), as backups made before state.npz hold it: still resumed.
LEGACY_WEIGHTS, LEGACY_BEST_WEIGHTS = "state.weights.h5", "best.weights.h5"
# What EarlyStopping and ReduceLROnPlateau learnt from the finished epochs (their on_train_begin
# resets it; the learning rate itself is an optimizer variable, saved with the weights).
_CALLBACK_STATE = {keras.callbacks.EarlyStopping: ("best", "best_epoch", "wait"),
                   keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter")}


def save_arrays(path: Path, arrays) -> None:
    """Numpy arrays, in order, to an uncompressed .npz file.

    The backup's format: Keras' `save_weights` walks every layer and optimizer attribute and
    took about 1 s per file for this model (2-core AMD EPYC), two files on an epoch that improves;
    the same values as arrays take a few hundredths of a second."""
    np.savez(path, *arrays)


def load_arrays(path: Path, variables, what: str) -> list[np.ndarray]:
    """The arrays of save_arrays(path), checked against `variables` (count and shapes) and
    returned in order. Raises PipelineError naming the file when they do not fit (the backup
    of another version of the model)."""
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    shapes = [tuple(v.shape) for v in variables]
    if len(arrays) != len(shapes) or any(a.shape != s for a, s in zip(arrays, shapes)):
        raise PipelineError(f"{path} holds {len(arrays)} arrays that do not fit the {len(shapes)} {what} "
                            f"of this model; delete {path.parent.parent} to train from scratch")
    return arrays


def _epoch_of(folder: Path) -> int | None:
    match = re.fullmatch(r"epoch-(\d+)", folder.name)
    return int(match.group(1)) if match and folder.is_dir() else None


class EpochBackup(keras.callbacks.Callback):
    """After every epoch, the state a killed run resumes from; a kill at any instant leaves it usable.

    keras.callbacks.BackupAndRestore overwrites one weights file in place: a kill while it is
    written leaves a truncated HDF5 file that every later run fails to open (OSError) until the
    folder is deleted by hand. It also restores only weights and optimizer, so after a resume
    EarlyStopping knows only the new epochs (the best weights and best accuracy of the finished
    ones are lost) and the dvclive plots start again at step 0.

    Here the state after epoch N is a new folder `epoch-NNNN` holding the weights and optimizer,
    the weights of the best epoch so far (what EarlyStopping restores at the end), every epoch's
    logs and the state of `stateful` callbacks. It is written under a temporary name and renamed
    once complete (mcuvision.atomic), so a folder under that name is always whole; the previous
    one is deleted after. On train begin the newest is restored and its epoch logs are replayed
    to `replay` (the dvclive callback). Place it after `stateful` in the callback list, so that it
    restores their state after they reset it and saves it after they updated it. With
    `remove_at_end=False` the backup stays until `remove()`, e.g. once the model file is written:
    a run killed after its last epoch then resumes with no epoch left and only saves the model.

    Not restored: the position of the tf.data shuffle and of the augmentation and Dropout random
    streams, which restart from the seed; so a resumed run is not bit-identical to an
    uninterrupted one.
    """

    def __init__(self, folder: str | os.PathLike, stateful=(), replay=(), remove_at_end: bool = True):
        super().__init__()
        self.folder, self.stateful, self.replay = Path(folder), list(stateful), list(replay)
        self.remove_at_end = remove_at_end
        self.logs: list[dict] = []  # every finished epoch's logs, those of a resumed run included
        self.resumed_epochs = 0

    def latest(self) -> Path | None:
        done = [p for p in self.folder.glob("epoch-*") if _epoch_of(p) is not None]
        return max(done, key=_epoch_of, default=None)

    def _early_stopping(self) -> keras.callbacks.EarlyStopping | None:
        return next((c for c in self.stateful if isinstance(c, keras.callbacks.EarlyStopping)), None)

    def on_train_begin(self, logs=None):
        for partial in self.folder.glob(".epoch-*"):  # a write that a kill cut short: never read
            shutil.rmtree(partial, ignore_errors=True)
        latest = self.latest()
        if latest is None:
            return
        journal = json.loads((latest / JOURNAL).read_text(encoding="utf-8"))
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        stopping = self._early_stopping()
        if (latest / LEGACY_WEIGHTS).is_file():
            if stopping is not None and stopping.restore_best_weights and (latest / LEGACY_BEST_WEIGHTS).is_file():
                self.model.load_weights(latest / LEGACY_BEST_WEIGHTS)
                stopping.best_weights = self.model.get_weights()
            self.model.load_weights(latest / LEGACY_WEIGHTS)
        else:
            if stopping is not None and stopping.restore_best_weights and (latest / BEST_WEIGHTS).is_file():
                stopping.best_weights = load_arrays(latest / BEST_WEIGHTS, self.model.weights, "weights")
            self._restore_state(latest / WEIGHTS)
        for callback, state in zip(self.stateful, journal["callbacks"]):
            for name, value in state.items():
                setattr(callback, name, value)
        self.logs = journal["logs"]
        self.resumed_epochs = len(self.logs)
        for callback in self.replay:
            for epoch, epoch_logs in enumerate(self.logs):
                callback.on_epoch_end(epoch, dict(epoch_logs))
        # fit() starts from this epoch: the hook keras.callbacks.BackupAndRestore sets too.
        self.model._initial_epoch = self.resumed_epochs
        print(f"train: resumed after epoch {self.resumed_epochs} from {latest}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append({name: float(value) for name, value in (logs or {}).items()})
        previous = self.latest()
        stopping = self._early_stopping()
        with atomic_dir(self.folder / f"epoch-{epoch + 1:04d}") as tmp:
            save_arrays(tmp / WEIGHTS, self.model.get_weights() + self._optimizer_arrays())
            if stopping is not None and stopping.best_weights is not None:
                if stopping.best_epoch == epoch:
                    # EarlyStopping's copy, not the model's current weights: with a weight
                    # average the best ones are the averaged weights, already swapped out.
                    save_arrays(tmp / BEST_WEIGHTS, stopping.best_weights)
                elif previous is not None and (previous / BEST_WEIGHTS).is_file():
                    _link(previous / BEST_WEIGHTS, tmp / BEST_WEIGHTS)
            state = [{name: _plain(getattr(c, name)) for name in _kept(c)} for c in self.stateful]
            (tmp / JOURNAL).write_text(json.dumps({"logs": self.logs, "callbacks": state}), encoding="utf-8")
        if previous is not None and previous.name != f"epoch-{epoch + 1:04d}":
            shutil.rmtree(previous, ignore_errors=True)

    def _optimizer_arrays(self) -> list[np.ndarray]:
        optimizer = self.model.optimizer
        return [np.asarray(v.numpy()) for v in optimizer.variables] if optimizer is not None else []

    def _restore_state(self, path: Path) -> None:
        """The model's weights, then the optimizer's variables (iterations, moments, weight average)."""
        optimizer = self.model.optimizer
        variables = list(self.model.weights) + (list(optimizer.variables) if optimizer is not None else [])
        for variable, value in zip(variables, load_arrays(path, variables, "weights and optimizer variables")):
            variable.assign(value)

    def on_train_end(self, logs=None):
        if self.remove_at_end:
            self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    """A hard link (no copy of megabytes every epoch), or a copy where links are not supported."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _kept(callback) -> tuple[str, ...]:
    return next((names for kind, names in _CALLBACK_STATE.items() if isinstance(callback, kind)), ())


def _plain(value):
    """A callback attribute as JSON (numpy scalars to Python numbers; inf stays inf)."""
    return value.item() if hasattr(value, "item") else value
