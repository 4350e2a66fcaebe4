"""Typed, validated views of params.yaml.

Stages read params.yaml (the file DVC composes from conf/ and tracks), never Hydra directly:
`@hydra.main` would ignore the overrides DVC applied. Each section becomes a frozen dataclass;
a bad value stops the stage with a `ConfigError` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

PARAMS_FILE = Path("params.yaml")
DATASET_CONF_DIR = Path("conf/dataset")
SOURCE_KINDS = ("sample", "folder", "url", "synthetic")
LAYOUTS = ("class_folders", "food101")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
MODELS = ("st_efficientnet_lc_v1",)
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "plateau", "constant")
CACHES = ("memory", "disk")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")


class ConfigError(ValueError):
    """A parameter value the pipeline cannot run with."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _int(section: Mapping, prefix: str, name: str, minimum: int = 0) -> int:
    value = section.get(name)
    key = _key(prefix, name)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, key, value, f"an integer >= {minimum}")
    return value


def _float(section: Mapping, prefix: str, name: str, low: float, high: float,
           low_open: bool = False, high_open: bool = False) -> float:
    value = section.get(name)
    key = _key(prefix, name)
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = is_num and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    require(ok, key, value, f"a number in {interval}")
    return float(value)


def _choice(section: Mapping, prefix: str, name: str, allowed: tuple[str, ...]) -> str:
    value = section.get(name)
    require(value in allowed, _key(prefix, name), value, f"one of {', '.join(allowed)}")
    return value


def _section(params: Mapping, key: str) -> Mapping:
    value = params.get(key)
    require(isinstance(value, Mapping), key, value, "a mapping (see conf/)")
    return value


def known_datasets(conf_dir: Path = DATASET_CONF_DIR) -> tuple[str, ...]:
    """Dataset names are the variants in conf/dataset/: adding a file there adds a dataset."""
    return tuple(sorted(p.stem for p in conf_dir.glob("*.yaml")))


@dataclass(frozen=True)
class SourceConfig:
    kind: str
    path: str | None = None
    test_path: str | None = None
    url: str | None = None
    sha256: str | None = None
    archive_root: str | None = None
    layout: str = "class_folders"
    images_per_class: int = 0
    image_size: int = 0
    seed: int = 0

    @classmethod
    def from_params(cls, section: Mapping, prefix: str = "dataset.source") -> "SourceConfig":
        kind = _choice(section, prefix, "kind", SOURCE_KINDS)
        layout = section.get("layout", "class_folders")
        require(layout in LAYOUTS, f"{prefix}.layout", layout, f"one of {', '.join(LAYOUTS)}")
        path = section.get("path")
        if kind in ("sample", "folder"):
            require(isinstance(path, str) and bool(path), f"{prefix}.path", path,
                    f"a folder of class sub-folders (required when {prefix}.kind={kind})")
        else:  # dvc.yaml tracks `path` as ingest's input whatever the kind
            require(isinstance(path, str) and bool(path), f"{prefix}.path", path,
                    "the file DVC tracks for this source (its conf file, or the generator)")
        if kind == "url":
            url = section.get("url")
            require(isinstance(url, str) and url.startswith(("http://", "https://")),
                    f"{prefix}.url", url, "an http:// or https:// address")
            digest = section.get("sha256")
            ok = digest is None or (isinstance(digest, str) and len(digest) == 64
                                    and all(c in "0123456789abcdef" for c in digest.lower()))
            require(ok, f"{prefix}.sha256", digest, "null or 64 hex digits")
        synthetic = {}
        if kind == "synthetic":
            synthetic = {"images_per_class": _int(section, prefix, "images_per_class", 1),
                         "image_size": _int(section, prefix, "image_size", 8),
                         "seed": _int(section, prefix, "seed", 0)}
        return cls(kind=kind, path=section.get("path"), test_path=section.get("test_path"),
                   url=section.get("url"), sha256=section.get("sha256"),
                   archive_root=section.get("archive_root"), layout=layout, **synthetic)


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float
    test_fraction: float

    @classmethod
    def from_params(cls, section: Mapping, prefix: str = "dataset.split") -> "SplitConfig":
        val = _float(section, prefix, "val_fraction", 0.0, 1.0, low_open=True, high_open=True)
        test = _float(section, prefix, "test_fraction", 0.0, 1.0, high_open=True)
        require(val + test < 1.0, f"{prefix}.test_fraction", test,
                f"val_fraction + test_fraction < 1 (val_fraction is {val}); the rest is train")
        return cls(val, test)


@dataclass(frozen=True)
class ChecksConfig:
    min_images_per_class: int
    min_side: int
    max_side: int
    max_imbalance: float

    @classmethod
    def from_params(cls, section: Mapping, prefix: str = "dataset.checks") -> "ChecksConfig":
        min_side = _int(section, prefix, "min_side", 1)
        max_side = _int(section, prefix, "max_side", min_side)
        return cls(min_images_per_class=_int(section, prefix, "min_images_per_class", 1),
                   min_side=min_side, max_side=max_side,
                   max_imbalance=_float(section, prefix, "max_imbalance", 1.0, math.inf))


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    num_classes: int | None
    source: SourceConfig
    split: SplitConfig
    checks: ChecksConfig

    @classmethod
    def from_params(cls, params: Mapping, known: tuple[str, ...] | None = None) -> "DatasetConfig":
        section = _section(params, "dataset")
        known = known_datasets() if known is None else known
        name = section.get("name")
        if known:
            require(name in known, "dataset.name", name,
                    f"one of {', '.join(known)} (a file in conf/dataset/)")
        count = section.get("num_classes")
        if count is not None:
            count = _int(section, "dataset", "num_classes", 2)
        source = SourceConfig.from_params(_section(section, "source"), "dataset.source")
        require(count is not None or source.kind != "synthetic", "dataset.num_classes", count,
                "an integer >= 2 (the synthetic generator needs a class count)")
        return cls(name=name, num_classes=count,
                   source=source,
                   split=SplitConfig.from_params(_section(section, "split"), "dataset.split"),
                   checks=ChecksConfig.from_params(_section(section, "checks"), "dataset.checks"))


@dataclass(frozen=True)
class ModelConfig:
    name: str
    res: int
    width: float
    depth: float
    expansion: int
    se_ratio: float
    drop_connect: float
    interpolation: str

    @classmethod
    def from_params(cls, params: Mapping) -> "ModelConfig":
        section = _section(params, "model")
        res = section.get("res")
        ok = isinstance(res, int) and not isinstance(res, bool) and res > 0 and res % 32 == 0
        require(ok, "model.res", res, "a positive multiple of 32 (e.g. 128, 224)")
        return cls(name=_choice(section, "model", "name", MODELS), res=res,
                   width=_float(section, "model", "width", 0.0, 4.0, low_open=True),
                   depth=_float(section, "model", "depth", 0.0, 4.0, low_open=True),
                   expansion=_int(section, "model", "expansion", 1),
                   se_ratio=_float(section, "model", "se_ratio", 0.0, 1.0, low_open=True),
                   drop_connect=_float(section, "model", "drop_connect", 0.0, 1.0, high_open=True),
                   interpolation=_choice(section, "model", "interpolation", INTERPOLATIONS))


@dataclass(frozen=True)
class AugmentConfig:
    flip: str
    translation: float
    rotation: float
    zoom: float
    contrast: float
    brightness: float
    hue: float
    erasing: float

    @classmethod
    def from_params(cls, section: Mapping, prefix: str = "train.augment") -> "AugmentConfig":
        strengths = {name: _float(section, prefix, name, 0.0, 1.0)
                     for name in ("translation", "rotation", "zoom", "contrast", "brightness", "hue", "erasing")}
        return cls(flip=_choice(section, prefix, "flip", FLIPS), **strengths)


@dataclass(frozen=True)
class TrainConfig:
    name: str
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    weight_decay: float
    schedule: str
    warmup_epochs: int
    plateau_factor: float
    plateau_patience: int
    label_smoothing: float
    dropout: float
    bn_momentum: float
    early_stopping_patience: int
    cache: str
    deterministic: bool
    mixed_precision: bool
    augment: AugmentConfig

    @classmethod
    def from_params(cls, params: Mapping) -> "TrainConfig":
        s, p = _section(params, "train"), "train"
        epochs = _int(s, p, "epochs", 1)
        warmup = _int(s, p, "warmup_epochs", 0)
        require(warmup < epochs or warmup == 0, "train.warmup_epochs", warmup, f"fewer than train.epochs ({epochs})")
        flags = {}
        for name in ("deterministic", "mixed_precision"):
            require(isinstance(s.get(name), bool), f"train.{name}", s.get(name), "true or false")
            flags[name] = s[name]
        return cls(name=str(s.get("name")), epochs=epochs, batch_size=_int(s, p, "batch_size", 1),
                   optimizer=_choice(s, p, "optimizer", OPTIMIZERS),
                   learning_rate=_float(s, p, "learning_rate", 0.0, 10.0, low_open=True),
                   weight_decay=_float(s, p, "weight_decay", 0.0, 1.0),
                   schedule=_choice(s, p, "schedule", SCHEDULES), warmup_epochs=warmup,
                   plateau_factor=_float(s, p, "plateau_factor", 0.0, 1.0, low_open=True, high_open=True),
                   plateau_patience=_int(s, p, "plateau_patience", 1),
                   label_smoothing=_float(s, p, "label_smoothing", 0.0, 1.0, high_open=True),
                   dropout=_float(s, p, "dropout", 0.0, 1.0, high_open=True),
                   bn_momentum=_float(s, p, "bn_momentum", 0.0, 1.0, high_open=True),
                   early_stopping_patience=_int(s, p, "early_stopping_patience", 1),
                   cache=_choice(s, p, "cache", CACHES), **flags,
                   augment=AugmentConfig.from_params(_section(s, "augment"), "train.augment"))


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root (it holds params.yaml)")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    require(isinstance(params, dict), str(path), type(params).__name__, "a YAML mapping")
    return params


def seed_of(params: Mapping) -> int:
    return _int(params, "", "seed", 0)


def as_dict(config: Any) -> dict:
    """Plain dict of a config object, for records written next to outputs."""
    return dataclasses.asdict(config)
