"""Start training from a checkpoint: ST's `model_path` with `frozen_layers`.

`init_from_checkpoint` copies the weights of a saved ST EfficientNet LC v1 into a freshly built
model (mcuvision.model.architecture.build_model), layer by layer, matched by layer NAME and weight SHAPES, and
optionally freezes a range of layers. Accepted files:

- `.keras`: a full model saved by Keras 3 (loaded with compile=False and safe_mode on);
- `.h5` / `.hdf5` holding a full model (Keras 2/3 legacy format, e.g. ST's published models):
  loaded with Keras; when that fails (ST clips the excitation with a Lambda, which safe mode
  refuses, or a layer class this project does not define), the weights are read per layer name
  straight from the file's `model_weights` group with h5py;
- `.h5` / `.hdf5` holding weights only: the legacy format (`layer_names` / `weight_names`, read
  per layer name with h5py), or Keras 3's `save_weights` format (`*.weights.h5`), which keeps no
  layer names and so only loads into exactly this architecture AND class count.

Only layers holding weights are compared: a weightless layer (ST's Lambda clip against this
project's `Clip`, activations, pooling) may differ in name or kind without harm.

The classifier, the Dense layer named `predictions`, is left freshly initialised when the
checkpoint was trained on another number of classes (the usual fine-tuning case); any other
difference (a layer missing on either side, another shape, another weight count) stops with a
`CheckpointError` naming the first mismatching layer, before any weight is written.

Frozen range syntax, `FIRST:LAST`: layer names of the model, inclusive, in model order (the order
of `model.layers`, i.e. `model.summary()`); either end may be left empty for the first or the last
layer, e.g. `stem_conv:block3b_add`, `:block5c_add`. A frozen layer gets `trainable = False`, which
in Keras 3 also makes a BatchNormalization layer run in inference mode (moving statistics used,
never updated), as fine-tuning needs. Freeze before `compile`: Keras collects the trainable
weights when the train step is built.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import h5py
import keras
import numpy as np

# Registers mcuvision>Clip, so that this project's .keras files load under safe_mode.
import mcuvision.model.layers  # noqa: F401
from mcuvision.errors import PipelineError

CLASSIFIER = "predictions"
SUFFIXES = (".keras", ".h5", ".hdf5")


class CheckpointError(PipelineError, ValueError):
    """A checkpoint that is missing, is not a Keras model, or does not fit the model."""


def init_from_checkpoint(model: keras.Model, path: str | Path, frozen: str | None = None) -> dict:
    """Copy a checkpoint's weights into `model` and optionally freeze a range of its layers.

    Args:
        model: the model to initialise, built by `mcuvision.model.architecture.build_model` (weights created);
            modified in place. Call inside the distribution strategy's scope, before compile.
        path: a `.keras`, `.h5` or `.hdf5` file of this architecture (see the module docstring).
        frozen: `FIRST:LAST` range of layer names to freeze (inclusive, model order, either end
            may be empty), or None to train every layer.

    Returns:
        A JSON-ready record: `path` (str), `sha256` (hex str of the file's bytes), `reader` (how
        the file was read), `layers_copied` (int, layers whose weights were copied),
        `classifier_replaced` (bool, True when the checkpoint's class count differs and
        `predictions` keeps its fresh initialisation), `checkpoint_classes` (int),
        `frozen_range` (str or None, the range as given) and `frozen_layers` (int, layers frozen).

    Raises:
        CheckpointError (a ValueError): the file is missing or is not a Keras model or weights
            file (the message names the file); the checkpoint does not fit (the message names the
            first mismatching layer; `model` is left untouched); the range is malformed, names a
            layer the model lacks, or includes a replaced classifier.
    """
    path = Path(path)
    sha256 = file_sha256(path)
    source, reader = read_weights(path, model)
    copied, replaced = copy_weights(model, source, path)
    names = freeze_layers(model, frozen, replaced=(CLASSIFIER,) if replaced else ()) if frozen else []
    return {"path": str(path), "sha256": sha256, "reader": reader, "layers_copied": copied,
            "classifier_replaced": replaced, "checkpoint_classes": _classes(source),
            "frozen_range": frozen, "frozen_layers": len(names)}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; CheckpointError naming the file if it is absent."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: give an existing .keras or .h5 file")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights(path: Path, model: keras.Model) -> tuple[dict[str, list[np.ndarray]], str]:
    """A checkpoint's weights per layer name, in the checkpoint's layer order.

    Returns ({layer name: [array per weight, in the layer's weight order]}, reader), only for layers
    that hold weights; arrays are float numpy arrays as saved. `model` is only used as the
    architecture for Keras 3 weights-only files, which store no names (a clone is loaded, `model`
    itself is not touched). Raises CheckpointError naming the file when it cannot be read as a
    Keras model or weights file.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: give an existing .keras or .h5 file")
    if path.suffix.lower() not in SUFFIXES:
        raise CheckpointError(f"checkpoint {path} is not a Keras model file: expected one of {', '.join(SUFFIXES)}")
    if path.suffix.lower() == ".keras":
        try:
            return _weights_of(keras.saving.load_model(path, compile=False)), "keras model"
        except Exception as error:  # a zip that is not a model, an unknown layer, a Lambda...
            raise CheckpointError(f"checkpoint {path} is not a loadable Keras model: {_first_line(error)}") from error

    try:
        with h5py.File(path, "r") as h5:
            kind = _h5_kind(h5)
            # Read by name now, while the file is open: the answer when Keras cannot rebuild the model.
            by_name = None
            if kind in ("model", "weights"):
                by_name = _h5_by_name(h5["model_weights"] if kind == "model" else h5)
    except (OSError, KeyError) as error:  # not HDF5 at all, or a layer group its index lists is absent
        raise CheckpointError(f"checkpoint {path} is not a readable HDF5 Keras file: {_first_line(error)}") from error
    if kind is None:
        raise CheckpointError(f"checkpoint {path} is an HDF5 file but neither a Keras model nor Keras weights")
    if kind == "model":
        try:
            return _weights_of(keras.saving.load_model(path, compile=False)), "keras h5 model"
        except Exception:  # ST's Lambda clip, layers this project lacks: the weights are still usable
            return by_name, "hdf5 by layer name"
    if kind == "weights":
        return by_name, "hdf5 by layer name"
    return _keras3_weights(path, model), "keras weights (positional)"


def copy_weights(model: keras.Model, source: dict[str, list[np.ndarray]], path: Path) -> tuple[int, bool]:
    """Copy `source` ({layer name: arrays}) into `model` by name; returns (layers copied, classifier replaced).

    Every weighted layer is checked before any weight is written, so a mismatch leaves `model`
    untouched. Raises CheckpointError naming the first mismatching layer: first in model order
    (missing from the checkpoint, or other weight shapes), else the first checkpoint layer the
    model lacks. `predictions` differing only in its class count is not a mismatch: it is skipped
    and reported as replaced.
    """
    layers = [layer for layer in model.layers if layer.weights]
    replaced = False
    for layer in layers:
        if layer.name not in source:
            raise _mismatch(path, layer.name, "the checkpoint has no layer of that name with weights")
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(a.shape) for a in source[layer.name]]
        if want == have:
            continue
        if layer.name == CLASSIFIER and _only_classes_differ(want, have):
            replaced = True
            continue
        raise _mismatch(path, layer.name, f"weight shapes {have} in the checkpoint, {want} in the model")
    names = {layer.name for layer in layers}
    extra = [name for name in source if name not in names]
    if extra:
        raise _mismatch(path, extra[0], "the model has no layer of that name with weights")
    copied = 0
    for layer in layers:
        if replaced and layer.name == CLASSIFIER:
            continue
        layer.set_weights(source[layer.name])
        copied += 1
    return copied, replaced


def parse_layer_range(spec: str) -> tuple[str | None, str | None]:
    """`FIRST:LAST` -> (FIRST or None, LAST or None); CheckpointError if not exactly one ':' and a name."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not spec.replace(":", "").strip():
        raise CheckpointError(f"frozen layer range {spec!r} is malformed: write FIRST:LAST with layer names "
                              "(either may be empty for the first or last layer), e.g. stem_conv:block3b_add")
    first, last = (part.strip() or None for part in spec.split(":"))
    return first, last


def freeze_layers(model: keras.Model, spec: str, replaced: tuple[str, ...] = ()) -> list[str]:
    """Set `trainable = False` on the layers of `spec` (`FIRST:LAST`, inclusive, model order).

    Returns the frozen layer names, in model order. A frozen BatchNormalization runs in inference
    mode (Keras 3). Raises CheckpointError when the range is malformed, names a layer the model
    lacks, ends before it starts, or includes a layer of `replaced` (a freshly initialised
    classifier would stay random).
    """
    first, last = parse_layer_range(spec)
    names = [layer.name for layer in model.layers]
    for name in (first, last):
        if name is not None and name not in names:
            raise CheckpointError(f"frozen layer range {spec!r} names {name!r}, which the model does not have")
    start = names.index(first) if first else 0
    end = names.index(last) if last else len(names) - 1
    if end < start:
        raise CheckpointError(f"frozen layer range {spec!r} ends before it starts: {last!r} comes before {first!r}")
    chosen = model.layers[start:end + 1]
    kept_random = [layer.name for layer in chosen if layer.name in replaced]
    if kept_random:
        raise CheckpointError(f"frozen layer range {spec!r} includes {kept_random[0]!r}, which was re-initialised "
                              "for the new class count and must train")
    for layer in chosen:
        layer.trainable = False
    return [layer.name for layer in chosen]


def _weights_of(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """{layer name: weights} of a loaded model; a nested model (a backbone wrapped by a
    Sequential, say) contributes its own layers, since names are matched at any depth."""
    weights = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            weights.update(_weights_of(layer))
        elif layer.weights:
            weights[layer.name] = layer.get_weights()
    return weights


def _h5_kind(h5: h5py.File) -> str | None:
    """'model' (legacy full model), 'weights' (legacy weights), 'keras3' (save_weights) or None."""
    if "model_config" in h5.attrs and "model_weights" in h5 and "layer_names" in h5["model_weights"].attrs:
        return "model"
    if "layer_names" in h5.attrs:
        return "weights"
    if "layers" in h5 and isinstance(h5["layers"], h5py.Group):
        return "keras3"
    return None


def _h5_by_name(group: h5py.Group) -> dict[str, list[np.ndarray]]:
    """Keras' legacy HDF5 layout: `layer_names` attribute, one group per layer whose
    `weight_names` attribute lists its weights' dataset paths in the layer's weight order."""
    weights = {}
    for name in map(_text, group.attrs["layer_names"]):
        names = [_text(w) for w in group[name].attrs.get("weight_names", [])]
        if names:
            weights[name] = [np.asarray(group[name][w]) for w in names]
    return weights


def _keras3_weights(path: Path, model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Keras 3 `save_weights` files address layers by class and position, not name: load one into a
    clone of `model` (same names), which Keras only accepts for the same architecture and classes."""
    clone = keras.models.clone_model(model)
    try:
        with tempfile.TemporaryDirectory() as folder:
            # Keras picks the reader from the file name: this format must end in .weights.h5.
            link = Path(folder) / "checkpoint.weights.h5"
            link.symlink_to(path.resolve())
            clone.load_weights(link)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} is a Keras 3 weights-only file, which stores no layer names and only loads "
            f"into exactly this architecture and class count, and it does not fit ({_first_line(error)}): "
            "start from the full model (.keras) instead") from error
    return _weights_of(clone)


def _only_classes_differ(want: list[tuple], have: list[tuple]) -> bool:
    """Dense kernel (features, classes) and bias (classes,) with the same features, other classes."""
    return (len(want) == len(have) == 2 and all(len(s) == 2 for s in (want[0], have[0]))
            and want[0][0] == have[0][0] and have[1] == (have[0][1],))


def _classes(source: dict[str, list[np.ndarray]]) -> int | None:
    weights = source.get(CLASSIFIER)
    return int(weights[0].shape[-1]) if weights else None


def _mismatch(path: Path, layer: str, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} does not fit this model: "
                           f"the first mismatching layer is {layer!r} ({why})")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
