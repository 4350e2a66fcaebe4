"""The `train` section: optimizer, schedule, regularization, augmentation, devices."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Mapping

from mcuvision.config.base import choice, fields_of, integer, mapping_at, number, require

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "plateau", "constant")
CACHES = ("memory", "disk")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")
FILL_MODES = ("reflect", "wrap", "constant")
INTERPOLATIONS = ("bilinear", "nearest")
ERASING_FILLS = ("colour", "mosaic")
# The erasing mask is built over (batch, rectangles, height, width): bound its cost.
MAX_ERASING_COUNT = 64


@dataclass(frozen=True)
class AugmentConfig:
    """`train.augment`, the on-the-fly augmentation of mcuvision.data.augment (0 switches a kind off).

    Geometric, one resampling per image: `flip` axes, each flipped with probability `flip_rate`;
    `translation` (fraction of the side), `rotation` and `shear` (fractions of a full turn), `zoom`
    (fraction of the side, x and y scales drawn independently); or, with `crop_scale` above 0, a
    random-resized crop in place of translation and zoom (both then 0): a region of area
    `crop_scale`..1 of the image and aspect ratio 1/`crop_ratio`..`crop_ratio` (log-uniform), at a
    random place inside the image, resized to the whole side; out-of-image pixels by `fill_mode`,
    sampled by `interpolation`. Colour: `contrast` (factor 1 +- strength), `brightness` (offset
    +- strength * 255), `hue` (shift up to strength / 2 of a turn), `grayscale` (probability).
    Erasing: each image with probability `erasing` gets up to `erasing_max_count` rectangles, each
    up to `erasing_max_area` of the image, aspect ratio in 1/`erasing_max_aspect`..`erasing_max_aspect`,
    filled by `erasing_fill`.
    Mixing (mcuvision.data.mix), per batch: with probability `mix_rate` a batch is mixed by MixUp
    (weights Beta(`mixup_alpha`, `mixup_alpha`)) or CutMix (Keras' `factor`, `cutmix_factor`);
    0 switches a kind off.
    """
    flip: str
    flip_rate: float
    translation: float
    rotation: float
    zoom: float
    shear: float
    fill_mode: str
    interpolation: str
    contrast: float
    brightness: float
    hue: float
    grayscale: float
    erasing: float
    erasing_max_count: int
    erasing_max_area: float
    erasing_max_aspect: float
    erasing_fill: str
    mix_rate: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_factor: float = 0.0
    crop_scale: float = 0.0
    crop_ratio: float = 1.3333  # torchvision's 4/3, as conf/ writes it

    @classmethod
    def from_section(cls, section: Mapping, prefix: str = "train.augment") -> "AugmentConfig":
        """Raises ConfigError naming the first missing or bad key."""
        s, p = section, prefix
        unit = {name: number(s, p, name, 0.0, 1.0)
                for name in ("flip_rate", "translation", "rotation", "zoom", "contrast", "brightness", "hue",
                             "grayscale", "erasing", "mix_rate", "cutmix_factor")}
        count = integer(s, p, "erasing_max_count", 1)
        require(count <= MAX_ERASING_COUNT, f"{p}.erasing_max_count", count,
                f"an integer in [1, {MAX_ERASING_COUNT}]")
        crop_scale = number(s, p, "crop_scale", 0.0, 1.0, high_open=True)
        require(crop_scale == 0 or unit["translation"] == unit["zoom"] == 0, f"{p}.crop_scale", crop_scale,
                f"0 while {p}.translation or {p}.zoom is above 0 (the crop takes their place: set both to 0)")
        # A shear of a quarter turn maps every row onto one line: stop short of it.
        return cls(crop_scale=crop_scale, crop_ratio=number(s, p, "crop_ratio", 1.0, 10.0),
                   flip=choice(s, p, "flip", FLIPS), shear=number(s, p, "shear", 0.0, 0.25, high_open=True),
                   fill_mode=choice(s, p, "fill_mode", FILL_MODES),
                   interpolation=choice(s, p, "interpolation", INTERPOLATIONS),
                   erasing_max_count=count,
                   erasing_max_area=number(s, p, "erasing_max_area", 0.0, 1.0, low_open=True),
                   erasing_max_aspect=number(s, p, "erasing_max_aspect", 1.0, 100.0),
                   erasing_fill=choice(s, p, "erasing_fill", ERASING_FILLS),
                   mixup_alpha=number(s, p, "mixup_alpha", 0.0, 10.0), **unit)


# `train.init_from` must lie in this folder: dvc.yaml lists the folder as a dependency of train,
# since DVC cannot depend on a path given by a param that may be null (the stage would not load).
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_SUFFIXES = (".keras", ".h5", ".hdf5")


def _start_from(s: Mapping) -> dict:
    """`train.init_from` and `train.frozen_layers` (mcuvision.model.checkpoint), checked for form only:
    whether the file exists and fits, and whether the layers exist, is known once the model is built."""
    init_from, frozen = s.get("init_from"), s.get("frozen_layers")
    parts = PurePosixPath(init_from).parts if isinstance(init_from, str) else ()
    require(init_from is None or (len(parts) > 1 and parts[0] == CHECKPOINT_DIR and ".." not in parts
                                  and init_from.lower().endswith(CHECKPOINT_SUFFIXES)),
            "train.init_from", init_from,
            f"null, or a {'/'.join(CHECKPOINT_SUFFIXES)} file inside {CHECKPOINT_DIR}/ "
            "(the folder DVC tracks for train)")
    require(frozen is None or (isinstance(frozen, str) and frozen.count(":") == 1 and frozen.replace(":", "").strip()),
            "train.frozen_layers", frozen, "null, or FIRST:LAST layer names (inclusive; either may be empty)")
    require(frozen is None or init_from is not None, "train.frozen_layers", frozen,
            "null unless train.init_from names a checkpoint (frozen random layers would never learn)")
    return {"init_from": init_from, "frozen_layers": frozen}


def _progressive(s: Mapping, epochs: int) -> dict:
    """train.low_res (null, or a side >= 32 in pixels) and train.low_res_epochs (fewer than epochs)."""
    low = s.get("low_res")
    if low is not None:
        low = integer(s, "train", "low_res", 32)
    low_epochs = integer(s, "train", "low_res_epochs", 0)
    require(low_epochs < epochs, "train.low_res_epochs", low_epochs, f"fewer than train.epochs ({epochs})")
    require(low is not None or low_epochs == 0, "train.low_res_epochs", low_epochs, "0 when train.low_res is null")
    return {"low_res": low, "low_res_epochs": low_epochs}


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
    min_learning_rate: float = 0.0     # floor of the plateau schedule (ST: 1e-5)
    ema_momentum: float = 0.0          # weight average validated and kept (0: off; 0.999 ~ 1000 steps)
    low_res: int | None = None         # side of the first low_res_epochs epochs (progressive resizing)
    low_res_epochs: int = 0
    init_from: str | None = None       # checkpoint to start from (mcuvision.model.checkpoint); None: random
    frozen_layers: str | None = None   # FIRST:LAST layers kept frozen; only with init_from

    @classmethod
    def from_params(cls, params: Mapping) -> "TrainConfig":
        s, p = mapping_at(params, "train", known=fields_of(cls)), "train"
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
                   augment=AugmentConfig.from_section(mapping_at(s, "augment", "train", fields_of(AugmentConfig)),
                                                     "train.augment"),
                   min_learning_rate=number(s, p, "min_learning_rate", 0.0, 10.0),
                   ema_momentum=number(s, p, "ema_momentum", 0.0, 1.0, high_open=True),
                   **_progressive(s, epochs),
                   **_start_from(s))
