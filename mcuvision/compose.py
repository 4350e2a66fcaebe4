"""Compose conf/ into the params.yaml text exactly as DVC's Hydra integration does.

`dvc exp run -S ...` rewrites params.yaml from conf/; `python -m mcuvision.compose` does the
same for plain `dvc repro` after editing conf/, and the tests use it to keep the two equal.
"""
from __future__ import annotations

import argparse
from pathlib import Path

CONF_DIR = Path("conf")


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> str:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.res=128")
    parser.add_argument("--output", default="params.yaml")
    args = parser.parse_args()
    Path(args.output).write_text(compose(args.overrides), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
