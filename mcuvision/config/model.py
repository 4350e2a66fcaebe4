"""The `model` section: ST EfficientNet LC v1's shape and its input preprocessing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mcuvision.config.base import choice, fields_of, integer, mapping_at, number, require

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
MODELS = ("st_efficientnet_lc_v1",)


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
        section = mapping_at(params, "model", known=fields_of(cls))
        res = section.get("res")
        ok = isinstance(res, int) and not isinstance(res, bool) and res > 0 and res % 32 == 0
        require(ok, "model.res", res, "a positive multiple of 32 (e.g. 128, 224)")
        return cls(name=choice(section, "model", "name", MODELS), res=res,
                   width=number(section, "model", "width", 0.0, 4.0, low_open=True),
                   depth=number(section, "model", "depth", 0.0, 4.0, low_open=True),
                   expansion=integer(section, "model", "expansion", 1),
                   se_ratio=number(section, "model", "se_ratio", 0.0, 1.0, low_open=True),
                   drop_connect=number(section, "model", "drop_connect", 0.0, 1.0, high_open=True),
                   interpolation=choice(section, "model", "interpolation", INTERPOLATIONS))
