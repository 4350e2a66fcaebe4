"""Typed config: bad values stop a stage with the key, the value and what is allowed."""
import pytest
import yaml

from mcuvision.config.base import ConfigError, seed_of
from mcuvision.config.dataset import DatasetConfig, known_datasets
from mcuvision.config.model import ModelConfig


def test_project_params_are_valid(params):
    dataset = DatasetConfig.from_params(params)
    model = ModelConfig.from_params(params)
    assert dataset.name == "flowers_mini" and dataset.source.kind == "sample"
    assert model.res % 32 == 0
    assert seed_of(params) == 127


def test_known_datasets_are_the_conf_variants():
    assert set(known_datasets()) == {"flowers_mini", "flowers", "plant_village", "food101", "folder", "synthetic"}


@pytest.mark.parametrize("edit, key, allowed", [
    (lambda p: p["dataset"].update(name="imagenet"), "dataset.name=", "one of"),
    (lambda p: p["dataset"]["source"].update(kind="ftp"), "dataset.source.kind='ftp'",
     "one of sample, folder, url, synthetic"),
    (lambda p: p["model"].update(res=100), "model.res=100", "positive multiple of 32"),
    (lambda p: p["model"].update(res=0), "model.res=0", "positive multiple of 32"),
    (lambda p: p["model"].update(res=-64), "model.res=-64", "positive multiple of 32"),
    (lambda p: p["model"].update(res="224"), "model.res='224'", "positive multiple of 32"),
    (lambda p: p["dataset"]["split"].update(val_fraction=1.2), "dataset.split.val_fraction=1.2", "(0.0, 1.0)"),
    (lambda p: p["dataset"]["split"].update(val_fraction=0.0), "dataset.split.val_fraction=0.0", "(0.0, 1.0)"),
    (lambda p: p["dataset"]["split"].update(test_fraction=-0.1), "dataset.split.test_fraction=-0.1", "[0.0, 1.0)"),
    (lambda p: p["dataset"]["split"].update(val_fraction=0.6, test_fraction=0.5), "dataset.split.test_fraction=0.5",
     "< 1"),
    (lambda p: p["dataset"]["checks"].update(min_images_per_class=-3), "dataset.checks.min_images_per_class=-3",
     "integer >= 1"),
    (lambda p: p["dataset"].update(num_classes=-5), "dataset.num_classes=-5", "integer >= 2"),
    (lambda p: p["model"].update(interpolation="lanczos7"), "model.interpolation='lanczos7'", "nearest"),
])
def test_bad_values_name_key_value_and_allowed(params, edit, key, allowed):
    edit(params)
    with pytest.raises(ConfigError) as error:
        DatasetConfig.from_params(params)
        ModelConfig.from_params(params)
    assert key in str(error.value) and allowed in str(error.value)


def test_url_source_needs_url_and_well_formed_sha256(params):
    params["dataset"]["source"] = {"kind": "url", "path": "p", "url": "ftp://x/y.tgz"}
    with pytest.raises(ConfigError, match="dataset.source.url='ftp://x/y.tgz'"):
        DatasetConfig.from_params(params)
    params["dataset"]["source"] = {"kind": "url", "path": "p", "url": "http://x/y.tgz", "sha256": "abc"}
    with pytest.raises(ConfigError, match="dataset.source.sha256='abc'.*64 hex"):
        DatasetConfig.from_params(params)


def test_folder_source_needs_a_path(params):
    params["dataset"].update(name="folder", source={"kind": "folder", "path": None})
    with pytest.raises(ConfigError, match="dataset.source.path=None.*required"):
        DatasetConfig.from_params(params)


def test_missing_seed_is_named():
    with pytest.raises(ConfigError, match="seed=None"):
        seed_of({})


@pytest.mark.parametrize("key, value, allowed", [
    ("epochs", -1, "integer >= 1"), ("batch_size", 0, "integer >= 1"), ("optimizer", "sgd", "adam, adamw"),
    ("schedule", "step", "cosine, plateau, constant"), ("learning_rate", 0, "(0.0, 10.0]"),
    ("cache", "gpu", "memory, disk"), ("deterministic", "yes", "true or false"),
])
def test_bad_train_values_are_named(params, key, value, allowed):
    from mcuvision.config.train import TrainConfig
    params["train"][key] = value
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_params(params)
    assert f"train.{key}={value!r}" in str(error.value) and allowed in str(error.value)


def test_bad_augmentation_is_named(params):
    from mcuvision.config.train import TrainConfig
    params["train"]["augment"]["rotation"] = 2.5
    with pytest.raises(ConfigError, match=r"train.augment.rotation=2.5 .*\[0.0, 1.0\]"):
        TrainConfig.from_params(params)


@pytest.mark.parametrize("section, typo, nearest", [
    (("train",), "epoch", "train.epochs"),                       # `dvc exp run -S +train.epoch=1`
    (("train", "augment"), "flip_rat", "train.augment.flip_rate"),
    (("dataset",), "num_class", "dataset.num_classes"),
    (("dataset", "split"), "val_fration", "dataset.split.val_fraction"),
    (("dataset", "source"), "test_pth", "dataset.source.test_path"),
    (("model",), "rez", "model.res"),
    (("quantize", "tflite"), "granularty", "quantize.tflite.granularity"),
    (("quantize", "w4w8"), "tolerance", "quantize.w4w8.tolerance_points"),
    (("evaluate", "guards"), "max_int8_drop_point", "evaluate.guards.max_int8_drop_points"),
    (("board",), "clock_mhs", "board.clock_mhz"),
    (("board", "latency"), "modle", "board.latency.model"),
])
def test_unknown_key_stops_naming_it_and_the_nearest_known_one(params, section, typo, nearest):
    from mcuvision.config.board import BoardConfig
    from mcuvision.config.evaluate import EvaluateConfig
    from mcuvision.config.quantize import QuantizeConfig
    from mcuvision.config.train import TrainConfig
    loader = {"train": TrainConfig, "dataset": DatasetConfig, "model": ModelConfig, "quantize": QuantizeConfig,
              "evaluate": EvaluateConfig, "board": BoardConfig}[section[0]]
    loader.from_params(params)  # loads as it is
    target = params
    for key in section:
        target = target[key]
    target[typo] = 1
    with pytest.raises(ConfigError) as error:
        loader.from_params(params)
    assert ".".join((*section, typo)) in str(error.value) and nearest in str(error.value)


def test_unknown_key_in_a_board_calibration_point_is_named(params):
    from mcuvision.config.board import BoardConfig
    params["board"]["latency"]["calibration"][0]["publised_ms"] = 1.0
    with pytest.raises(ConfigError, match=r"calibration\[0\]\.publised_ms.*published_ms"):
        BoardConfig.from_params(params)


def test_every_conf_variant_loads_into_every_typed_config():
    """No key of any conf/<axis>/<variant>.yaml is unknown to its typed config."""
    import yaml

    from conftest import ROOT
    from mcuvision.compose import compose
    from mcuvision.config.board import BoardConfig, load_board_dir
    from mcuvision.config.evaluate import EvaluateConfig
    from mcuvision.config.quantize import QuantizeConfig
    from mcuvision.config.train import TrainConfig

    variants = sorted((p.parent.name, p.stem) for p in (ROOT / "conf").glob("*/*.yaml"))
    assert len(variants) >= 20
    for axis, name in variants:
        params = yaml.safe_load(compose([f"{axis}={name}"]))
        for config in (DatasetConfig, ModelConfig, TrainConfig, QuantizeConfig, BoardConfig, EvaluateConfig):
            config.from_params(params)
    assert len(load_board_dir(ROOT / "conf" / "board")) >= 7


def test_split_rules_of_the_config_are_those_of_the_splitter():
    from mcuvision.config.dataset import SPLIT_RULES
    from mcuvision.data.splits import RULES
    assert SPLIT_RULES == RULES


def test_thorough_is_fast_over_a_longer_budget():
    """conf/train/thorough.yaml: fast's recipe; only the budget, its share at low_res and the patience
    (never reached: the budget ends the run) differ. The cosine schedule follows train.epochs."""
    from mcuvision.compose import compose

    fast, thorough = (yaml.safe_load(compose([f"train={name}"]))["train"] for name in ("fast", "thorough"))
    assert {key for key in fast if fast[key] != thorough[key]} == {"name", "epochs", "low_res_epochs",
                                                                   "early_stopping_patience"}
    assert thorough["epochs"] == 2 * fast["epochs"] and thorough["low_res_epochs"] < thorough["epochs"]
    assert thorough["early_stopping_patience"] >= thorough["epochs"]
