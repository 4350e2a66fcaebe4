"""The `train` section: optimizer, schedule, regularization, augmentation, devices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .base import choice, integer, number, require, mapping_at

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "plateau", "constant")
CACHES = ("memory", "disk")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")


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
        strengths = {name: number(section, prefix, name, 0.0, 1.0)
                     for name in ("translation", "rotation", "zoom", "contrast", "brightness", "hue", "erasing")}
        return cls(flip=choice(section, prefix, "flip", FLIPS), **strengths)


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
    precise_bn_images: int
    early_stopping_patience: int
    cache: str
    deterministic: bool
    mixed_precision: bool
    augment: AugmentConfig

    @classmethod
    def from_params(cls, params: Mapping) -> "TrainConfig":
        s, p = mapping_at(params, "train"), "train"
        epochs = integer(s, p, "epochs", 1)
        warmup = integer(s, p, "warmup_epochs", 0)
        require(warmup < epochs or warmup == 0, "train.warmup_epochs", warmup, f"fewer than train.epochs ({epochs})")
        flags = {}
        for name in ("deterministic", "mixed_precision"):
            require(isinstance(s.get(name), bool), f"train.{name}", s.get(name), "true or false")
            flags[name] = s[name]
        return cls(name=str(s.get("name")), epochs=epochs, batch_size=integer(s, p, "batch_size", 1),
                   optimizer=choice(s, p, "optimizer", OPTIMIZERS),
                   learning_rate=number(s, p, "learning_rate", 0.0, 10.0, low_open=True),
                   weight_decay=number(s, p, "weight_decay", 0.0, 1.0),
                   schedule=choice(s, p, "schedule", SCHEDULES), warmup_epochs=warmup,
                   plateau_factor=number(s, p, "plateau_factor", 0.0, 1.0, low_open=True, high_open=True),
                   plateau_patience=integer(s, p, "plateau_patience", 1),
                   label_smoothing=number(s, p, "label_smoothing", 0.0, 1.0, high_open=True),
                   dropout=number(s, p, "dropout", 0.0, 1.0, high_open=True),
                   bn_momentum=number(s, p, "bn_momentum", 0.0, 1.0, high_open=True),
                   precise_bn_images=integer(s, p, "precise_bn_images", 0),
                   early_stopping_patience=integer(s, p, "early_stopping_patience", 1),
                   cache=choice(s, p, "cache", CACHES), **flags,
                   augment=AugmentConfig.from_params(mapping_at(s, "augment", "train"), "train.augment"))
