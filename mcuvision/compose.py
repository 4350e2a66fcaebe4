"""Compose conf/ into the params.yaml text exactly as DVC's Hydra integration does.

`dvc exp run -S ...` rewrites params.yaml from conf/; `python -m mcuvision.compose` does the
same for plain `dvc repro` after editing conf/, and the tests use it to keep the two equal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcuvision.cli import prog
from mcuvision.errors import USER_ERROR

CONF_DIR = Path("conf")


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> str:
    """params.yaml's text from `conf_dir` with Hydra `overrides` applied. Raises Hydra's and
    OmegaConf's errors for an override that does not parse or fit (main() prints them in one line)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def one_line(error: Exception) -> str:
    """Hydra's message in one line: its caret line, documentation link and config search path
    dropped, a tab-indented list (available options) joined with commas."""
    parts: list[str] = []
    for line in str(error).split("Config search path:")[0].splitlines():
        if not line.strip() or set(line.strip()) == {"^"} or line.startswith("See http"):
            continue
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line.strip())
    return "".join(p if i == 0 else ("; " if parts[i - 1][-1] not in ".:;" else " ") + p
                   for i, p in enumerate(parts)) or type(error).__name__


def main() -> None:
    parser = argparse.ArgumentParser(prog=prog("mcuvision.compose"), description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.res=128")
    parser.add_argument("--output", default="params.yaml")
    args = parser.parse_args()
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    try:
        text = compose(args.overrides)
    except (HydraException, OmegaConfBaseException) as error:
        hint = ("; quote a value that holds '~', '=' or other special characters, e.g. "
                "'dataset.source.path=\"/data/my photos/a=b\"'" if isinstance(error, OverrideParseException) else "")
        print(f"compose failed: {one_line(error)}{hint}", file=sys.stderr)
        sys.exit(USER_ERROR)
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
