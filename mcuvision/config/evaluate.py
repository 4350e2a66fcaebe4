"""The `evaluate` section: which split is scored, batching, and the guards a change is held to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mcuvision.config.base import choice, fields_of, integer, mapping_at, number

SPLITS = ("test", "val")


@dataclass(frozen=True)
class Guards:
    max_int8_drop_points: float
    max_w4w8_drop_points: float
    min_agreement_with_float: float

    @classmethod
    def from_params(cls, params: Mapping) -> "Guards":
        g = mapping_at(mapping_at(params, "evaluate"), "guards", "evaluate", known=fields_of(cls))
        prefix = "evaluate.guards"
        return cls(max_int8_drop_points=number(g, prefix, "max_int8_drop_points", 0.0, 100.0),
                   max_w4w8_drop_points=number(g, prefix, "max_w4w8_drop_points", 0.0, 100.0),
                   min_agreement_with_float=number(g, prefix, "min_agreement_with_float", 0.0, 1.0))


@dataclass(frozen=True)
class EvaluateConfig:
    name: str
    split: str
    batch_size: int
    top_k: int
    guards: Guards
    golden_images: int = 8  # images of `split` export writes as golden vectors (artifacts/golden/)

    @classmethod
    def from_params(cls, params: Mapping) -> "EvaluateConfig":
        s = mapping_at(params, "evaluate", known=fields_of(cls))
        return cls(name=str(s.get("name")), split=choice(s, "evaluate", "split", SPLITS),
                   batch_size=integer(s, "evaluate", "batch_size", 1), top_k=integer(s, "evaluate", "top_k", 2),
                   guards=Guards.from_params(params), golden_images=integer(s, "evaluate", "golden_images", 1))
