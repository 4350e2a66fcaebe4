"""The `dataset` section: where images come from, how they are split, what is checked."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from mcuvision.config.base import choice, fields_of, integer, mapping_at, number, require

DATASET_CONF_DIR = Path("conf/dataset")
SOURCE_KINDS = ("sample", "folder", "url", "synthetic")
LAYOUTS = ("class_folders", "food101")
SPLIT_RULES = ("stratified", "st")  # mcuvision.data.splits.RULES (not imported: config stays free of pandas)


def known_datasets(conf_dir: Path = DATASET_CONF_DIR) -> tuple[str, ...]:
    """Dataset names are the variants in conf/dataset/: adding a file there adds a dataset."""
    return tuple(sorted(p.stem for p in conf_dir.glob("*.yaml")))


def expand_path(value, key: str):
    """A dataset path as a shell would read it: `~` and $VAR / ${VAR} expanded; any other value
    returned as it is. Raises ConfigError naming `key` and a variable that is not set."""
    if not isinstance(value, str):
        return value
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.search(r"\$(\w+|\{\w+\})", expanded)
    require(unset is None, key, value, f"a path; the environment variable {unset and unset.group(0)} is not set")
    return expanded


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
    def from_section(cls, section: Mapping, prefix: str = "dataset.source") -> "SourceConfig":
        kind = choice(section, prefix, "kind", SOURCE_KINDS)
        layout = section.get("layout", "class_folders")
        require(layout in LAYOUTS, f"{prefix}.layout", layout, f"one of {', '.join(LAYOUTS)}")
        path = expand_path(section.get("path"), f"{prefix}.path")
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
            synthetic = {"images_per_class": integer(section, prefix, "images_per_class", 1),
                         "image_size": integer(section, prefix, "image_size", 8),
                         "seed": integer(section, prefix, "seed", 0)}
        return cls(kind=kind, path=path, test_path=expand_path(section.get("test_path"), f"{prefix}.test_path"),
                   url=section.get("url"), sha256=section.get("sha256"),
                   archive_root=section.get("archive_root"), layout=layout, **synthetic)


@dataclass(frozen=True)
class SplitConfig:
    """`dataset.split`: fractions of each class (stratified) or of all images (st) for val and
    test; the rest is train. `rule` (mcuvision.data.splits.RULES): stratified (default) or st, ST's."""
    val_fraction: float
    test_fraction: float
    rule: str = "stratified"

    @classmethod
    def from_section(cls, section: Mapping, prefix: str = "dataset.split") -> "SplitConfig":
        """Raises ConfigError naming the first bad key."""
        val = number(section, prefix, "val_fraction", 0.0, 1.0, low_open=True, high_open=True)
        test = number(section, prefix, "test_fraction", 0.0, 1.0, high_open=True)
        require(val + test < 1.0, f"{prefix}.test_fraction", test,
                f"val_fraction + test_fraction < 1 (val_fraction is {val}); the rest is train")
        rule = section.get("rule", "stratified")
        require(rule in SPLIT_RULES, f"{prefix}.rule", rule, f"one of {', '.join(SPLIT_RULES)}")
        return cls(val, test, rule)


@dataclass(frozen=True)
class ChecksConfig:
    min_images_per_class: int
    min_side: int
    max_side: int
    max_imbalance: float
    # Bits (of 64) within which two images' dHashes make them near-duplicates, their pHashes
    # within twice that (mcuvision.data.splits.near_duplicate_pairs); None: no near-duplicate search.
    near_duplicate_distance: int | None = 4

    @classmethod
    def from_section(cls, section: Mapping, prefix: str = "dataset.checks") -> "ChecksConfig":
        """Raises ConfigError naming the first bad key."""
        min_side = integer(section, prefix, "min_side", 1)
        max_side = integer(section, prefix, "max_side", min_side)
        near = section.get("near_duplicate_distance", 4)
        require(near is None or (type(near) is int and 0 <= near <= 16), f"{prefix}.near_duplicate_distance",
                near, "an integer 0..16 (bits of 64; beyond, unrelated photos match), or null to switch it off")
        return cls(min_images_per_class=integer(section, prefix, "min_images_per_class", 1),
                   min_side=min_side, max_side=max_side,
                   max_imbalance=number(section, prefix, "max_imbalance", 1.0, math.inf),
                   near_duplicate_distance=near)


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    num_classes: int | None
    source: SourceConfig
    split: SplitConfig
    checks: ChecksConfig

    @classmethod
    def from_params(cls, params: Mapping, known: tuple[str, ...] | None = None) -> "DatasetConfig":
        section = mapping_at(params, "dataset", known=fields_of(cls))
        known = known_datasets() if known is None else known
        name = section.get("name")
        if known:
            require(name in known, "dataset.name", name,
                    f"one of {', '.join(known)} (a file in conf/dataset/)")
        count = section.get("num_classes")
        if count is not None:
            count = integer(section, "dataset", "num_classes", 2)
        source = SourceConfig.from_section(mapping_at(section, "source", "dataset", fields_of(SourceConfig)),
                                          "dataset.source")
        require(count is not None or source.kind != "synthetic", "dataset.num_classes", count,
                "an integer >= 2 (the synthetic generator needs a class count)")
        return cls(name=name, num_classes=count,
                   source=source,
                   split=SplitConfig.from_section(mapping_at(section, "split", "dataset", fields_of(SplitConfig)),
                                                 "dataset.split"),
                   checks=ChecksConfig.from_section(mapping_at(section, "checks", "dataset", fields_of(ChecksConfig)),
                                                   "dataset.checks"))
