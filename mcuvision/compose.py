"""Compose conf/ into the params.yaml text exactly as DVC's Hydra integration does.

`dvc exp run -S ...` rewrites params.yaml from conf/; `python -m mcuvision.compose` does the
same for plain `dvc repro` after editing conf/, and the tests use it to keep the two equal.
"""
from __future__ import annotations

import argparse
import difflib
import re
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


def nearest_key(overrides: list[str], bad: str) -> str | None:
    """The key of the composed config nearest to `bad` (dotted, e.g. a typo `dataset.source.pth`), each
    part matched among the keys at its level (difflib), with the other `overrides` applied; None when a
    part has no near match or the rest does not compose."""
    from omegaconf import OmegaConf

    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != bad]
    try:
        node = OmegaConf.to_container(OmegaConf.create(compose(others)))
    except Exception:  # the hint is optional: the error itself is reported anyway
        return None
    fixed = []
    for part in bad.split("."):
        if not isinstance(node, dict):
            return None
        if part not in node:
            near = difflib.get_close_matches(part, [str(k) for k in node], n=1)
            if not near:
                return None
            part = near[0]
        fixed.append(part)
        node = node[part]
    return ".".join(fixed)


def parse_detail(error) -> str:
    """What Hydra's override grammar stumbled on: its lexer names only its exception class and marks
    the character with a caret on the next line, so that character is named instead."""
    lines = str(error.message).splitlines()
    if lines[0].startswith("LexerNoViableAltException") and len(lines) > 1 and "^" in lines[1]:
        column = lines[1].index("^")
        if column < len(lines[0]):
            return f"no token can start at {lines[0][column]!r}"
    return one_line(error)


def message(error: Exception, overrides: list[str]) -> str:
    """The one line a user sees for a composition error: Hydra's own words, with a quoting hint for an
    override that does not parse, and the nearest known key for one that names no key (Hydra then
    suggests `+key`, which would add a key nothing reads)."""
    from hydra.errors import OverrideParseException

    if isinstance(error, OverrideParseException):
        return (f"the override {error.override} does not parse ({parse_detail(error)}); quote a value that holds "
                "'~', '=' or other special characters, e.g. 'dataset.source.path=\"/data/my photos/a=b\"'")
    unknown = re.match(r"Could not override '([^']+)'", str(error))
    near = nearest_key(overrides, unknown.group(1)) if unknown else None
    if unknown and near and near != unknown.group(1):
        return f"{unknown.group(1)} is not a key of the configuration: did you mean {near}?"
    return one_line(error)


def main() -> None:
    parser = argparse.ArgumentParser(prog=prog("mcuvision.compose"), description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.res=128")
    parser.add_argument("--output", default="params.yaml")
    args = parser.parse_args()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        text = compose(args.overrides)
    except (HydraException, OmegaConfBaseException) as error:
        print(f"compose failed: {message(error, args.overrides)}", file=sys.stderr)
        sys.exit(USER_ERROR)
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
