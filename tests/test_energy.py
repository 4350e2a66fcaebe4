"""Energy per inference: time x datasheet run-mode current x supply voltage, the interval, the battery."""
from __future__ import annotations

import copy

import pytest
import yaml

from conftest import ROOT
from mcuvision.config.base import ConfigError
from mcuvision.config.board import BoardConfig, PowerSpec, load_board_dir
from mcuvision.profiling import boards as board_model
from mcuvision.profiling import energy

BOARDS = load_board_dir(ROOT / "conf" / "board")
POWER = PowerSpec(run_current_ma_low=100.0, run_current_ma_high=200.0, supply_v=3.3, source="DSxxxx, table y")


def test_energy_by_hand_with_the_error_bar_carried():
    e = energy.energy(POWER, 100.0, 10.0)
    # 100 ms x 150 mA (middle) x 3.3 V = 49,500 µJ; low 90 ms x 330 mW, high 110 ms x 660 mW
    assert (e["uj"], e["uj_low"], e["uj_high"]) == (49500.0, 29700.0, 72600.0)
    assert (e["mw_low"], e["mw_high"]) == (330.0, 660.0)
    charge = 1000 * 3.3 * 3.6e6  # 1000 mAh at 3.3 V in µJ
    assert e["inferences_per_charge"] == [int(charge / 72600.0), int(charge / 29700.0)]
    assert e["per_hour_for_a_year"] == [round(charge / 72600.0 / 8760, 1), round(charge / 29700.0 / 8760, 1)]
    assert e["battery"] == "1000 mAh at 3.3 V" and e["source"] == "DSxxxx, table y" and "error bar" in e["basis"]


def test_without_an_error_bar_the_interval_is_the_current_range_and_says_so():
    e = energy.energy(POWER, 100.0, None)
    assert (e["uj_low"], e["uj_high"]) == (33000.0, 66000.0) and "without an error bar" in e["basis"]
    assert energy.energy(None, 100.0, 5.0) is None
    with pytest.raises(ValueError, match="negative"):
        energy.energy(POWER, -1.0, None)


def test_every_board_with_power_gets_an_estimated_energy_and_the_others_say_why():
    for name, board in BOARDS.items():
        b = board_model.estimate(board, 19_831_552, 200_000, 500_000)
        if board.power is None:
            assert b["energy"] is None, name
            comment = (ROOT / "conf" / "board" / f"{name}.yaml").read_text().replace("\n# ", " ")
            assert "no `power` section" in comment, name
        else:
            assert b["energy"]["uj_low"] <= b["energy"]["uj"] <= b["energy"]["uj_high"], name
            assert board.power.source.startswith("DS"), name  # a datasheet document number
    assert {n for n, b in BOARDS.items() if b.power} == {"stm32h747i_disco", "stm32f769i_disco", "b_u585i_iot02a"}


@pytest.mark.parametrize("power, message", [
    ({"run_current_ma": [200, 100], "supply_v": 3.3, "source": "x"}, "low <= high"),
    ({"run_current_ma": "lots", "supply_v": 3.3, "source": "x"}, "a current in mA"),
    ({"run_current_ma": 10, "supply_v": 0, "source": "x"}, "supply_v"),
    ({"run_current_ma": 10, "supply_v": 3.3}, "source"),
    ({"run_current_ma": 10, "supply_v": 3.3, "source": "x", "volts": 3}, "volts"),
])
def test_bad_power_sections_name_the_key(power, message):
    data = yaml.safe_load((ROOT / "conf" / "board" / "stm32h747i_disco.yaml").read_text())
    data = copy.deepcopy(data)
    data["power"] = power
    with pytest.raises(ConfigError, match=message):
        BoardConfig.from_section(data, "board")
