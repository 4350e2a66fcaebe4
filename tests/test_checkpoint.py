"""Start from a checkpoint: weights copied by layer name and shape, classifier replaced for another
class count, clear errors naming the file or the first mismatching layer, frozen layer ranges."""
from __future__ import annotations

import hashlib
import json

import h5py
import keras
import numpy as np
import pytest

from mcuvision.config.base import ConfigError
from mcuvision.config.train import TrainConfig
from mcuvision.model.architecture import build_model
from mcuvision.model.checkpoint import CLASSIFIER, CheckpointError, freeze_layers, init_from_checkpoint

RES, CLASSES = 32, 3


def tiny(classes: int = CLASSES, **kwargs) -> keras.Model:
    return build_model(classes, RES, **kwargs)


def weighted(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def write_legacy_weights(model: keras.Model, path, skip: tuple[str, ...] = ()) -> None:
    """A weights-only file in Keras 2's layout (`model.save_weights("x.h5")` there): `layer_names`,
    then per layer `weight_names` and one dataset per weight; `skip` leaves layers out."""
    with h5py.File(path, "w") as f:
        names = [layer.name for layer in model.layers if layer.name not in skip]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            if layer.name in skip:
                continue
            group = f.create_group(layer.name)
            weight_names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in weight_names]
            for name, value in zip(weight_names, layer.get_weights()):
                group.create_dataset(name, data=value)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One trained-looking source model (3 classes) saved in every accepted format."""
    folder = tmp_path_factory.mktemp("checkpoints")
    source = tiny()
    # Moving statistics away from their (0, 1) start, so that copying them is visible.
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.5, "float32"))
    files = {"keras": folder / "source.keras", "h5": folder / "source.h5",
             "weights_h5": folder / "legacy_weights.h5", "keras3_weights": folder / "source.weights.h5"}
    source.save(files["keras"])
    source.save(files["h5"])
    write_legacy_weights(source, files["weights_h5"])
    source.save_weights(files["keras3_weights"])
    # A full .h5 model that Keras cannot rebuild, as ST's own (a Lambda clips the excitation):
    # its weights are still read per layer name straight from the file.
    files["h5_lambda"] = folder / "st_like.h5"
    files["h5_lambda"].write_bytes(files["h5"].read_bytes())
    with h5py.File(files["h5_lambda"], "r+") as f:
        config = f.attrs["model_config"]
        config = json.loads(config.decode() if isinstance(config, bytes) else config)
        clips = [layer for layer in config["config"]["layers"] if layer["class_name"] == "mcuvision>Clip"]
        for layer in clips:
            # A serialized Python lambda (never decoded here: safe mode refuses it first).
            layer.update(class_name="Lambda", module="keras.layers", registered_name=None)
            layer["config"] = {"name": layer["config"]["name"], "function_type": "lambda", "function": {
                "class_name": "__lambda__", "config": {"code": "", "defaults": None, "closure": None}}}
        assert clips
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="lambda"):
        keras.saving.load_model(files["h5_lambda"], compile=False)
    return source, files


@pytest.mark.parametrize("kind, reader", [
    ("keras", "keras model"), ("h5", "keras h5 model"), ("h5_lambda", "hdf5 by layer name"),
    ("weights_h5", "hdf5 by layer name"), ("keras3_weights", "keras weights (positional)"),
])
def test_matching_checkpoint_copies_every_weight(saved, kind, reader):
    source, files = saved
    model = tiny()
    assert not same(model.get_layer("stem_conv").get_weights(), source.get_layer("stem_conv").get_weights())
    record = init_from_checkpoint(model, files[kind])
    expected = weighted(source)
    assert all(same(weights, expected[name]) for name, weights in weighted(model).items())
    assert record["reader"] == reader
    assert record["layers_copied"] == len(expected) and not record["classifier_replaced"]
    assert record["checkpoint_classes"] == CLASSES and record["frozen_layers"] == 0
    assert record["sha256"] == hashlib.sha256(files[kind].read_bytes()).hexdigest()
    assert record["path"] == str(files[kind])
    json.dumps(record)  # ready for metrics/train.json
    assert all(layer.trainable for layer in model.layers)


@pytest.mark.parametrize("kind", ["keras", "h5_lambda"])
def test_other_class_count_copies_all_but_the_classifier(saved, kind):
    source, files = saved
    model = tiny(classes=5)
    fresh = model.get_layer(CLASSIFIER).get_weights()
    record = init_from_checkpoint(model, files[kind])
    assert record["classifier_replaced"] and record["checkpoint_classes"] == CLASSES
    expected, got = weighted(source), weighted(model)
    assert record["layers_copied"] == len(expected) - 1
    assert all(same(got[name], expected[name]) for name in got if name != CLASSIFIER)
    assert same(got[CLASSIFIER], fresh), "the classifier keeps its fresh initialisation"
    assert got[CLASSIFIER][0].shape[-1] == 5


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras' own note on the refused file
def test_keras3_weights_only_file_needs_the_same_class_count(saved):
    _, files = saved
    with pytest.raises(CheckpointError, match=r"source\.weights\.h5 is a Keras 3 weights-only file.*\.keras"):
        init_from_checkpoint(tiny(classes=5), files["keras3_weights"])


def test_other_width_names_the_first_mismatching_layer_and_writes_nothing(tmp_path, shared):
    path = tmp_path / "narrow.h5"
    write_legacy_weights(tiny(width=0.25), path)
    model = shared
    before = weighted(model)
    with pytest.raises(CheckpointError, match=r"narrow\.h5 does not fit this model: the first mismatching "
                                              r"layer is 'stem_conv' \(weight shapes"):
        init_from_checkpoint(model, path)
    assert all(same(weights, before[name]) for name, weights in weighted(model).items()), "model untouched"


def test_layer_missing_from_checkpoint_is_named(saved, tmp_path, shared):
    source, _ = saved
    path = tmp_path / "holed.h5"
    write_legacy_weights(source, path, skip=("block2b_dwconv", "block3a_dwconv"))
    with pytest.raises(CheckpointError, match=r"first mismatching layer is 'block2b_dwconv' "
                                              r"\(the checkpoint has no layer of that name"):
        init_from_checkpoint(shared, path)


def test_layer_the_model_lacks_is_named(saved, tmp_path, shared):
    source, _ = saved
    path = tmp_path / "deeper.h5"
    write_legacy_weights(source, path)
    with h5py.File(path, "r+") as f:
        f.attrs["layer_names"] = np.array([*f.attrs["layer_names"], b"block8a_conv"], dtype="S")
        group = f.create_group("block8a_conv")
        group.attrs["weight_names"] = [b"block8a_conv/kernel:0"]
        group.create_dataset("block8a_conv/kernel:0", data=np.zeros((1, 1, 8, 8), "float32"))
    with pytest.raises(CheckpointError, match=r"first mismatching layer is 'block8a_conv' \(the model has no layer"):
        init_from_checkpoint(shared, path)


def test_missing_or_foreign_files_are_named(tmp_path, shared):
    model = shared
    with pytest.raises(CheckpointError, match=r"checkpoint .*absent\.keras not found"):
        init_from_checkpoint(model, tmp_path / "absent.keras")
    (tmp_path / "notes.h5").write_text("not a model")
    with pytest.raises(CheckpointError, match=r"checkpoint .*notes\.h5 is not a readable HDF5 Keras file"):
        init_from_checkpoint(model, tmp_path / "notes.h5")
    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(CheckpointError, match=r"checkpoint .*notes\.keras is not a loadable Keras model"):
        init_from_checkpoint(model, tmp_path / "notes.keras")
    (tmp_path / "model.pt").write_bytes(b"\0")
    with pytest.raises(CheckpointError, match=r"model\.pt is not a Keras model file: expected one of \.keras"):
        init_from_checkpoint(model, tmp_path / "model.pt")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"data\.h5 is an HDF5 file but neither a Keras model nor Keras weights"):
        init_from_checkpoint(model, tmp_path / "data.h5")
    assert issubclass(CheckpointError, ValueError)


def test_frozen_range_sets_trainable_and_freezes_batchnorm_statistics(saved):
    _, files = saved
    model = tiny()
    record = init_from_checkpoint(model, files["weights_h5"], frozen="stem_conv:block2a_project_bn")
    names = [layer.name for layer in model.layers]
    start, end = names.index("stem_conv"), names.index("block2a_project_bn")
    assert record["frozen_layers"] == end - start + 1 and record["frozen_range"] == "stem_conv:block2a_project_bn"
    assert [layer.trainable for layer in model.layers] == [not start <= i <= end for i in range(len(names))]
    frozen_bn, free_bn = model.get_layer("block1a_bn"), model.get_layer("block3a_bn")
    kept = [np.array(layer.moving_mean) for layer in (frozen_bn, free_bn)]
    # A training-mode forward pass (what fit and precise BN do) updates only the free BatchNorm.
    model(np.random.default_rng(0).uniform(0, 255, (4, RES, RES, 3)).astype("float32"), training=True)
    assert np.array_equal(np.array(frozen_bn.moving_mean), kept[0]), "frozen BatchNorm runs in inference mode"
    assert not np.array_equal(np.array(free_bn.moving_mean), kept[1])
    frozen_paths = {v.path for name in names[start:end + 1] for v in model.get_layer(name).weights}
    assert frozen_paths and not frozen_paths & {v.path for v in model.trainable_weights}, "compile sees none"


@pytest.fixture(scope="module")
def shared() -> keras.Model:
    """A model for tests that only read layer names or fail before changing anything."""
    return tiny()


def test_open_ended_ranges_reach_the_first_and_last_layers():
    model = tiny()
    names = freeze_layers(model, ":top_bn")
    assert names[0] == "image" and names[-1] == "top_bn" and len(names) == len(model.layers) - 4
    assert not model.get_layer("stem_conv").trainable and model.get_layer(CLASSIFIER).trainable
    names = freeze_layers(model, "block7a_project_conv:")
    assert names[-1] == CLASSIFIER and not model.get_layer(CLASSIFIER).trainable


@pytest.mark.parametrize("spec, message", [
    ("stem_conv-block2a_add", "malformed: write FIRST:LAST"),
    (":", "malformed"),
    ("stem_conv:block9z_add", "names 'block9z_add', which the model does not have"),
    ("block2a_dwconv:stem_conv", "ends before it starts"),
])
def test_bad_frozen_ranges_are_explained(shared, spec, message):
    with pytest.raises(CheckpointError, match=message):
        freeze_layers(shared, spec)
    assert all(layer.trainable for layer in shared.layers)


def test_a_replaced_classifier_cannot_be_frozen(saved):
    _, files = saved
    with pytest.raises(CheckpointError, match="includes 'predictions', which was re-initialised for the new class"):
        init_from_checkpoint(tiny(classes=5), files["weights_h5"], frozen="top_conv:")


def test_config_keys_are_checked(params):
    assert TrainConfig.from_params(params).init_from is None  # the project's default: random weights
    params["train"].update(init_from="checkpoints/flowers.keras", frozen_layers="stem_conv:block3b_add")
    config = TrainConfig.from_params(params)
    assert (config.init_from, config.frozen_layers) == ("checkpoints/flowers.keras", "stem_conv:block3b_add")
    for key, value, message in [
        ("init_from", "/data/flowers.keras", "train.init_from='/data/flowers.keras' is not allowed: null, or a"),
        ("init_from", "checkpoints/../models/float.keras", "inside checkpoints/"),
        ("init_from", "checkpoints/weights.pt", "train.init_from='checkpoints/weights.pt'"),
        ("frozen_layers", "stem_conv", "train.frozen_layers='stem_conv' is not allowed: null, or FIRST:LAST"),
    ]:
        bad = {**params["train"], key: value}
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
            TrainConfig.from_params({**params, "train": bad})
    params["train"].update(init_from=None)
    with pytest.raises(ConfigError, match=r"train\.frozen_layers='stem_conv:block3b_add' is not allowed: "
                                          r"null unless train\.init_from"):
        TrainConfig.from_params(params)
