"""The `board` section: one STM32 board's memory budgets and its latency model.

One file per board in conf/board/. Memory: what the chip and board offer, and which memory the
fit checks use (`ram_fit`, `flash_fit`: internal or external). Latency: one coefficient per
board, `cycles_per_macc` (MCUs: time = MACC * cycles / clock) or `ms_per_mmacc` (MPUs and NPUs,
whose clock does not map to one core), fitted on the seed card's published times listed under
`latency.calibration`; a board without published figures states its `assumption` instead and
is reported as uncalibrated. `vendor_backend: stedgeai` runs ST Edge AI Core when installed.
`power` (optional): run-mode current and supply voltage from the chip's datasheet, for the energy
per inference (mcuvision/profiling/energy.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

from mcuvision.config.base import (
    ConfigError,
    choice,
    fields_of,
    integer,
    key_of,
    mapping_at,
    number,
    only_known_keys,
    require,
)

ENGINES = ("mcu", "mpu", "npu")
MEMORIES = ("internal", "external")
LATENCY_MODELS = ("cycles_per_macc", "ms_per_mmacc")
VENDOR_BACKENDS = ("none", "stedgeai")
_BIG = 1.0e9  # KiB; any real memory is below a terabyte


def _text(section: Mapping, prefix: str, name: str, empty_ok: bool = False) -> str:
    value = section.get(name)
    ok = isinstance(value, str) and (empty_ok or value.strip() != "")
    require(ok, key_of(prefix, name), value, "a non-empty string" if not empty_ok else "a string")
    return value


def _kib(section: Mapping, prefix: str, name: str) -> float:
    return number(section, prefix, name, 0.0, _BIG)


@dataclass(frozen=True)
class CalibrationPoint:
    resolution: int
    macc: int
    published_ms: float
    source: str


@dataclass(frozen=True)
class LatencySpec:
    """`board.latency`: the one-coefficient model of this board, its calibration points, or the
    assumption it rests on when no figure was published."""
    model: str                # cycles_per_macc | ms_per_mmacc
    value: float              # cycles per MACC, or ms per million MACC
    calibration: tuple[CalibrationPoint, ...]
    assumption: str

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)


@dataclass(frozen=True)
class PowerSpec:
    """`board.power`: the chip's run-mode current at the board's clock and its supply voltage, from the
    datasheet named in `source`. A range (low, high) where the datasheet's conditions (peripherals on
    or off, regulator, code) do not match an inference loop; low == high for a single figure."""
    run_current_ma_low: float
    run_current_ma_high: float
    supply_v: float
    source: str


def _power(s: Mapping, prefix: str) -> PowerSpec | None:
    if s.get("power") is None:
        return None
    section = mapping_at(s, "power", prefix, known=("run_current_ma", "supply_v", "source"))
    pp = key_of(prefix, "power")
    current = section.get("run_current_ma")
    pair = current if isinstance(current, list) else [current]
    ok = (len(pair) in (1, 2) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1.0e5
                                      for v in pair) and pair[0] <= pair[-1])
    require(ok, key_of(pp, "run_current_ma"), current, "a current in mA, or [low, high] with 0 < low <= high")
    return PowerSpec(run_current_ma_low=float(pair[0]), run_current_ma_high=float(pair[-1]),
                     supply_v=number(section, pp, "supply_v", 0.0, 60.0, low_open=True),
                     source=_text(section, pp, "source"))


@dataclass(frozen=True)
class BoardConfig:
    """One STM32 board; attribute paths follow the YAML paths (`board.latency.value` is
    `config.latency.value`)."""
    name: str
    display_name: str
    series: str
    engine: str
    execution_engine: str
    clock_mhz: float
    internal_ram_kib: float
    arena_ram_kib: float
    flash_kib: float
    external_ram_kib: float
    external_flash_kib: float
    ram_fit: str
    flash_fit: str
    runtime_ram_kib: float
    code_flash_kib: float
    latency: LatencySpec
    vendor_backend: str
    stedgeai_target: str
    power: PowerSpec | None = None  # none: no energy estimate (the board file says why)

    @classmethod
    def from_params(cls, params: Mapping) -> "BoardConfig":
        return cls.from_section(mapping_at(params, "board"), "board")

    @classmethod
    def from_file(cls, path: str | Path) -> "BoardConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"board file {path} not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        require(isinstance(data, Mapping), str(path), type(data).__name__, "a YAML mapping")
        board = cls.from_section(data, f"{path.stem}")
        require(board.name == path.stem, f"{path.stem}.name", board.name, f"the file's stem, {path.stem!r}")
        return board

    @classmethod
    def from_section(cls, s: Mapping, prefix: str = "board") -> "BoardConfig":
        """Raises ConfigError naming the first unknown, missing or bad key."""
        only_known_keys(s, prefix, fields_of(cls))
        name = _text(s, prefix, "name")
        require(name.replace("_", "").isalnum() and name == name.lower(), key_of(prefix, "name"), name,
                "lower-case letters, digits and underscores (the conf/board file stem)")
        engine = choice(s, prefix, "engine", ENGINES)
        internal_ram = _kib(s, prefix, "internal_ram_kib")
        arena_ram = _kib(s, prefix, "arena_ram_kib")
        require(arena_ram <= internal_ram, key_of(prefix, "arena_ram_kib"), arena_ram,
                f"at most internal_ram_kib ({internal_ram}): the largest contiguous internal RAM region")
        ram_fit, flash_fit = choice(s, prefix, "ram_fit", MEMORIES), choice(s, prefix, "flash_fit", MEMORIES)
        flash, ext_ram, ext_flash = (_kib(s, prefix, k)
                                     for k in ("flash_kib", "external_ram_kib", "external_flash_kib"))
        budgets = {("ram_fit", "internal"): ("arena_ram_kib", arena_ram),
                   ("ram_fit", "external"): ("external_ram_kib", ext_ram),
                   ("flash_fit", "internal"): ("flash_kib", flash),
                   ("flash_fit", "external"): ("external_flash_kib", ext_flash)}
        for field, value in (("ram_fit", ram_fit), ("flash_fit", flash_fit)):
            budget_key, budget = budgets[(field, value)]
            require(budget > 0, key_of(prefix, field), value,
                    f"a memory the board has ({key_of(prefix, budget_key)} is 0)")

        latency = mapping_at(s, "latency", prefix, known=("model", "value", "calibration", "assumption"))
        lp = key_of(prefix, "latency")
        model = choice(latency, lp, "model", LATENCY_MODELS)
        if engine == "mcu":
            require(model == "cycles_per_macc", key_of(lp, "model"), model, "cycles_per_macc for an mcu board")
        value = number(latency, lp, "value", 0.0, 1.0e6, low_open=True)
        raw_points = latency.get("calibration", [])
        require(isinstance(raw_points, list), key_of(lp, "calibration"), raw_points,
                "a list of {resolution, macc, published_ms, source}")
        points = []
        for i, point in enumerate(raw_points):
            pp = f"{key_of(lp, 'calibration')}[{i}]"
            require(isinstance(point, Mapping), pp, point, "a mapping {resolution, macc, published_ms, source}")
            only_known_keys(point, pp, fields_of(CalibrationPoint))
            points.append(CalibrationPoint(resolution=integer(point, pp, "resolution", 1),
                                           macc=integer(point, pp, "macc", 1),
                                           published_ms=number(point, pp, "published_ms", 0.0, 1.0e7, low_open=True),
                                           source=_text(point, pp, "source")))
        assumption = latency.get("assumption", "")
        require(isinstance(assumption, str), key_of(lp, "assumption"), assumption, "a string")
        require(bool(points) or assumption.strip() != "", key_of(lp, "assumption"), assumption,
                "a stated assumption when latency.calibration is empty (the board is then uncalibrated)")

        backend = choice(s, prefix, "vendor_backend", VENDOR_BACKENDS)
        target = s.get("stedgeai_target", "")
        require(isinstance(target, str) and (backend == "none" or target.strip() != ""),
                key_of(prefix, "stedgeai_target"), target,
                "an ST Edge AI Core target (e.g. stm32h7) when vendor_backend is stedgeai")
        return cls(name=name, display_name=_text(s, prefix, "display_name"), series=_text(s, prefix, "series"),
                   engine=engine, execution_engine=_text(s, prefix, "execution_engine"),
                   clock_mhz=number(s, prefix, "clock_mhz", 0.0, 1.0e5, low_open=True),
                   internal_ram_kib=internal_ram, arena_ram_kib=arena_ram, flash_kib=flash,
                   external_ram_kib=ext_ram, external_flash_kib=ext_flash, ram_fit=ram_fit, flash_fit=flash_fit,
                   runtime_ram_kib=_kib(s, prefix, "runtime_ram_kib"), code_flash_kib=_kib(s, prefix, "code_flash_kib"),
                   latency=LatencySpec(model=model, value=value, calibration=tuple(points), assumption=assumption),
                   vendor_backend=backend, stedgeai_target=target, power=_power(s, prefix))


def load_board_dir(folder: str | Path) -> dict[str, BoardConfig]:
    """Every conf/board/*.yaml, by name, sorted."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no board files (*.yaml) in {folder}")
    return {f.stem: BoardConfig.from_file(f) for f in files}
