"""Shared parts of the typed config: errors that name the key, value checks, params.yaml loading.

Stages read params.yaml (the file DVC composes from conf/ and tracks), never Hydra directly:
`@hydra.main` would ignore the overrides DVC applied. Each section becomes a frozen dataclass in
its own module here, so that dvc.yaml can list exactly the config code a stage depends on;
a bad value stops the stage with a `ConfigError` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from mcuvision.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


class ConfigError(PipelineError, ValueError):
    """A parameter value the pipeline cannot run with."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def key_of(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def integer(section: Mapping, prefix: str, name: str, minimum: int = 0) -> int:
    value = section.get(name)
    key = key_of(prefix, name)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, key, value, f"an integer >= {minimum}")
    return value


def number(section: Mapping, prefix: str, name: str, low: float, high: float,
           low_open: bool = False, high_open: bool = False) -> float:
    value = section.get(name)
    key = key_of(prefix, name)
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = is_num and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    require(ok, key, value, f"a number in {interval}")
    return float(value)


def choice(section: Mapping, prefix: str, name: str, allowed: tuple[str, ...]) -> str:
    value = section.get(name)
    require(value in allowed, key_of(prefix, name), value, f"one of {', '.join(allowed)}")
    return value


def mapping_at(params: Mapping, key: str, prefix: str = "", known: Iterable[str] | None = None) -> Mapping:
    """`params[key]`, which must be a mapping; with `known`, every key it holds must be one of
    them (see only_known_keys). Raises ConfigError naming the key."""
    value = params.get(key)
    require(isinstance(value, Mapping), key_of(prefix, key), value, "a mapping (see conf/)")
    if known is not None:
        only_known_keys(value, key_of(prefix, key), known)
    return value


def only_known_keys(section: Mapping, prefix: str, known: Iterable[str]) -> None:
    """Stop on a key `section` holds that its typed config does not read (a `+train.epoch` typo
    would otherwise sit in params.yaml, silently ignored). Raises ConfigError naming the first
    unknown key and the nearest known one."""
    known = sorted(set(known))
    for key in section:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {key_of(prefix, near[0])}?" if near else f"known keys: {', '.join(known)}"
            raise ConfigError(f"{key_of(prefix, str(key))} is not a key of {prefix or 'params.yaml'}: {hint}")


def fields_of(cls: type, *extra: str) -> set[str]:
    """The field names of dataclass `cls` plus `extra`: the keys a section read into `cls` may hold."""
    return {f.name for f in dataclasses.fields(cls)} | set(extra)


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root (it holds params.yaml)")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    require(isinstance(params, dict), str(path), type(params).__name__, "a YAML mapping")
    return params


def seed_of(params: Mapping) -> int:
    return integer(params, "", "seed", 0)


def as_dict(config: Any) -> dict:
    """Plain dict of a config object, for records written next to outputs."""
    return dataclasses.asdict(config)
