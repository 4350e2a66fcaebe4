"""params.yaml is the committed composition of conf/: nobody edits one and forgets the other."""
import yaml

from conftest import ROOT
from mcuvision.compose import compose


def test_params_yaml_equals_composition_of_conf():
    committed = (ROOT / "params.yaml").read_text(encoding="utf-8")
    composed = compose()
    assert yaml.safe_load(composed) == yaml.safe_load(committed), (
        "params.yaml differs from conf/: run `make params` (or `python -m mcuvision.compose`) and commit")
    assert composed == committed


def test_config_yaml_holds_only_defaults_and_seed():
    config = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text(encoding="utf-8"))
    assert set(config) == {"defaults", "seed"}
    axes = [next(iter(d)) if isinstance(d, dict) else d for d in config["defaults"]]
    assert axes == ["dataset", "model", "train", "quantize", "board", "evaluate", "_self_"]


def test_overrides_compose_like_dvc_exp_run():
    switched = yaml.safe_load(compose(["dataset=synthetic", "model.res=128"]))
    assert switched["dataset"]["name"] == "synthetic"
    assert switched["model"]["res"] == 128


def test_dvc_config_enables_hydra():
    text = (ROOT / ".dvc" / "config").read_text(encoding="utf-8")
    assert "[hydra]" in text and "enabled = true" in text and "config_dir = conf" in text
