"""profile_on_board: MACC, weights flash, TFLite Micro arena vs the whole-tensor peak, bisection, boards, stedgeai.

Fast tests use a small Keras model quantized in the test. The 5-class ST EfficientNet LC v1 checks
(MACC at 128 and 224, weights flash) quantize untrained models whose BatchNorm moving statistics
and every bias are set to random non-zero values first: an untrained model's zero biases would be
de-duplicated by the converter and shrink the weights below the card's 517,412 B.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import yaml

from conftest import ROOT
from mcuvision.config.base import ConfigError
from mcuvision.config.board import BoardConfig, load_board_dir
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import tflite_graph
from mcuvision.convert.quantization import int8_tflite
from mcuvision.model.architecture import build_model
from mcuvision.model.keras_macc import count_macc
from mcuvision.profiling import board_latency, liveness, macc, stedgeai, tflm
from mcuvision.profiling import boards as board_model
from stages import profile_on_board

BOARD_DIR = ROOT / "conf" / "board"
CARD_BOARDS = {"stm32h747i_disco", "stm32f769i_disco", "stm32n6570_dk", "stm32mp157f_dk2", "stm32mp135f_dk2",
               "stm32mp257f_dk2"}


def quantize(model, base_params, res: int, images: int = 4) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (images, res, res, 3)).astype(np.uint8)
    return int8_tflite(model, pixels, QuantizeConfig.from_params(base_params))


def randomize_statistics(model, seed: int = 0) -> None:
    """Non-zero BN statistics and biases, as a trained model has (see the module docstring)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               rng.uniform(0.5, 1.5, var.shape)])
        elif getattr(layer, "bias", None) is not None:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape)])


@pytest.fixture(scope="module")
def small(tmp_path_factory, base_params):
    """A small conv/depthwise/dense int8 model, uint8 in, like the pipeline's (seconds to convert).

    Note: adding a 1x1 conv after the depthwise one makes TFLite Micro's greedy planner plan
    8192 B for a 6144 B whole-tensor peak (seen with this wheel); the profile reports such gaps.
    """
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    randomize_statistics(model)
    path = tmp_path_factory.mktemp("small") / "small.tflite"
    path.write_bytes(quantize(model, base_params, 32, images=8))
    return path, model


@pytest.fixture(scope="module")
def lc_v1(tmp_path_factory, base_params):
    """The 5-class ST EfficientNet LC v1 at 128 and 224, int8."""
    out = {}
    for res in (128, 224):
        model = build_model(5, res)
        randomize_statistics(model, seed=res)
        path = tmp_path_factory.mktemp(f"lc{res}") / "int8.tflite"
        path.write_bytes(quantize(model, base_params, res))
        out[res] = (path, model)
    return out


# --- graph figures: MACC, weights flash ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("res, card", [(128, 19.8e6), (224, 60.6e6)])
def test_five_class_macc_matches_st_facts_and_the_keras_count(lc_v1, res, card):
    path, model = lc_v1[res]
    counted = macc.count(tflite_graph.load(path.read_bytes()))
    assert abs(counted["total"] - card) / card < 0.01, counted["total"]
    assert counted["total"] == count_macc(model)["total"], "the .tflite and Keras counts disagree"
    kinds = {r["kind"] for r in counted["per_layer"]}
    assert {"conv", "depthwise", "dense", "add", "mul", "mean", "logistic"} <= kinds
    assert counted["total"] == sum(r["macc"] for r in counted["per_layer"]
                                   if r["kind"] in ("conv", "depthwise", "dense"))


@pytest.mark.slow
@pytest.mark.parametrize("res", [128, 224])
def test_five_class_work_is_the_count_the_latency_fit_keeps(lc_v1, res):
    """board_latency.json keeps LC v1's work per kind; a change to the model or the count shows here."""
    kept = next(p for p in board_latency.points_for("stm32h747i_disco")
                if p["name"] == f"st_efficientnet_lc_v1_{res}_int8")
    assert board_latency.work(tflite_graph.load(lc_v1[res][0].read_bytes())) == kept["work"]


@pytest.mark.slow
def test_five_class_weights_flash_matches_the_card(lc_v1):
    weights = tflite_graph.weights_bytes(tflite_graph.load(lc_v1[128][0].read_bytes()))
    assert abs(weights - 517_412) / 517_412 < 0.01, weights


def test_small_model_macc_by_hand(small):
    path, _ = small
    counted = macc.count(tflite_graph.load(path.read_bytes()))
    # conv 16x16x8x(3x3x3), depthwise 16x16x8x(3x3), dense 8x3
    assert counted["by_kind"]["conv"] == 16 * 16 * 8 * 27
    assert counted["by_kind"]["depthwise"] == 16 * 16 * 8 * 9
    assert counted["by_kind"]["dense"] == 8 * 3
    assert counted["by_kind"]["mean"] == 16 * 16 * 8
    assert counted["total"] == count_macc(small[1])["total"]


def test_small_model_work_per_kind_by_hand(small):
    work = board_latency.work(tflite_graph.load(small[0].read_bytes()))
    # the 3x3 conv; the dense layer counts as pointwise; QUANTIZE (uint8 in) and MEAN elements
    assert work["conv"] == 16 * 16 * 8 * 27 and work["depthwise"] == 16 * 16 * 8 * 9 and work["pointwise"] == 8 * 3
    names = tflite_graph.operator_names(tflite_graph.load(small[0].read_bytes()))
    assert "QUANTIZE" in names and "MEAN" in names
    assert work["elementwise"] >= 32 * 32 * 3 + 16 * 16 * 8
    assert work["ops"] == len([n for n in names if n not in ("RESHAPE", "SQUEEZE", "SHAPE")])


# --- TFLite Micro: head vs the whole-tensor peak, bisection --------------------------------------

def test_small_model_arena_head_equals_the_whole_tensor_peak(small):
    path, _ = small
    measured = tflm.probe(path, 1 << 20)
    bound = liveness.peak(tflite_graph.load(path.read_bytes()))
    assert measured["ok"], measured
    # Every activation here is a multiple of 16 B, so TFLite Micro's alignment adds nothing.
    assert bound["peak_bytes"] == bound["peak_aligned_bytes"]
    assert measured["head"] == bound["peak_bytes"], (measured, bound)
    assert measured["total"] == measured["head"] + measured["tail"]


def test_bisected_minimal_arena_runs_and_one_byte_less_does_not(small):
    path, _ = small
    first = tflm.probe(path, 1 << 20)
    found = tflm.minimal_arena(path, first["total"], 8 << 20)
    minimal = found["minimal_arena_bytes"]
    assert tflm.probe(path, minimal)["ok"]
    assert not tflm.probe(path, minimal - 1)["ok"]
    assert found["one_byte_less_fails"]
    assert 0 <= first["total"] - minimal < tflm.ALIGNMENT, "the minimum is the recorded total within alignment"


@pytest.mark.slow
def test_five_class_arena_at_128_matches_st_facts(lc_v1):
    path, _ = lc_v1[128]
    measured = tflm.probe(path, 4 << 20)
    bound = liveness.peak(tflite_graph.load(path.read_bytes()))
    assert abs(measured["head"] / 1024 - 128.0) < 0.1, measured  # st_facts: 128.0 KiB
    assert measured["head"] == bound["peak_bytes"]  # the whole-tensor peak
    assert 85 * 1024 < measured["tail"] < 110 * 1024, measured  # st_facts: "about 103 KiB"


# --- boards --------------------------------------------------------------------------------------

def test_a_board_file_per_card_board_plus_a_low_power_one():
    boards = load_board_dir(BOARD_DIR)
    assert CARD_BOARDS <= set(boards) and len(boards) == 7
    uncalibrated = [b for b in boards.values() if not b.latency.calibrated]
    assert [b.name for b in uncalibrated] == ["b_u585i_iot02a"] and uncalibrated[0].latency.assumption
    assert boards["stm32h747i_disco"].clock_mhz == 400 and boards["stm32f769i_disco"].clock_mhz == 216


def test_board_coefficients_are_the_fit_through_the_card_points_and_errors_are_reported():
    for board in load_board_dir(BOARD_DIR).values():
        if not board.latency.calibrated:
            continue
        fitted = board_model.fitted_value(board)
        assert abs(board.latency.value - fitted) / fitted < 0.002, (board.name, board.latency.value, fitted)
        errors = board_model.calibration_errors(board)
        assert len(errors) == 2 and all(abs(e["error_pct"]) < 20 for e in errors)
        # one parameter through two points: residuals of opposite sign, not zero
        assert errors[0]["error_pct"] * errors[1]["error_pct"] < 0


def test_calibration_maccs_are_the_model_counts():
    counts = {(classes, res): count_macc(build_model(classes, res))["total"]
              for classes in (5, 101) for res in (128, 224)}
    for board in load_board_dir(BOARD_DIR).values():
        classes = 101 if board.name == "stm32n6570_dk" else 5  # the card's N6 figures are Food-101
        for point in board.latency.calibration:
            assert point.macc == counts[(classes, point.resolution)], (board.name, point)


def test_params_board_section_is_the_selected_board_file(params):
    selected = BoardConfig.from_params(params)
    assert selected == BoardConfig.from_file(BOARD_DIR / f"{selected.name}.yaml")


@pytest.mark.parametrize("edit, key, allowed", [
    (lambda b: b.update(engine="gpu"), "board.engine='gpu'", "one of mcu, mpu, npu"),
    (lambda b: b.update(clock_mhz=0), "board.clock_mhz=0", "(0.0"),
    (lambda b: b.update(internal_ram_kib="1M"), "board.internal_ram_kib='1M'", "a number"),
    (lambda b: b.update(arena_ram_kib=4096), "board.arena_ram_kib=4096", "at most internal_ram_kib"),
    (lambda b: b.update(ram_fit="external", external_ram_kib=0), "board.ram_fit='external'", "external_ram_kib is 0"),
    (lambda b: b["latency"].update(model="ms_per_mmacc"), "board.latency.model='ms_per_mmacc'",
     "cycles_per_macc for an mcu"),
    (lambda b: b["latency"].update(value=-1), "board.latency.value=-1", "(0.0"),
    (lambda b: b["latency"].update(calibration=[], assumption=""), "board.latency.assumption=''", "uncalibrated"),
    (lambda b: b["latency"]["calibration"][0].update(published_ms=0), "board.latency.calibration[0].published_ms=0",
     "(0.0"),
    (lambda b: b.update(vendor_backend="cubeai"), "board.vendor_backend='cubeai'", "one of none, stedgeai"),
    (lambda b: b.update(vendor_backend="stedgeai", stedgeai_target=""), "board.stedgeai_target=''", "target"),
])
def test_bad_board_values_name_key_value_and_allowed(params, edit, key, allowed):
    edit(params["board"])
    with pytest.raises(ConfigError) as error:
        BoardConfig.from_params(params)
    assert key in str(error.value) and allowed in str(error.value), str(error.value)


# --- the stage -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def staged(small, tmp_path_factory, base_params):
    path, _ = small
    tmp = tmp_path_factory.mktemp("stage")
    board = BoardConfig.from_params(base_params)
    result = profile_on_board.run(board, tflite_path=path, qdq_path=None, board_dir=BOARD_DIR,
                                  metrics_out=tmp / "profile.json", report_out=tmp / "profile.md", repeats=3)
    return tmp, result


def test_stage_reports_latency_and_fit_for_every_board_file(staged):
    tmp, result = staged
    written = json.loads((tmp / "profile.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert set(written["boards"]) == {p.stem for p in BOARD_DIR.glob("*.yaml")}
    assert written["board"] == "stm32h747i_disco" and written["boards"]["stm32h747i_disco"]["selected"]
    for name, b in written["boards"].items():
        assert b["estimated_ms"] > 0, name
        assert isinstance(b["fits_ram"], bool) and isinstance(b["fits_flash"], bool), name
        assert isinstance(b["ram_margin_kib"], float) and isinstance(b["flash_margin_kib"], float), name
        assert b["calibrated"] == (name != "b_u585i_iot02a")
    ram = written["int8_tflite"]["activation_ram"]
    assert ram["head_bytes"] + ram["tail_bytes"] == ram["total_bytes"] and ram["one_byte_less_fails"]
    for key in ("litert_1_thread", "tflite_micro"):
        lat = written["int8_tflite"]["latency"][key]
        assert lat["runs"] == 3 and lat["min_ms"] <= lat["median_ms"] <= lat["max_ms"]
        assert lat["measured_on"].startswith("this host (")
    text = (tmp / "profile.md").read_text()
    for b in written["boards"].values():
        assert b["display_name"] in text
    assert "measured (TFLite Micro" in text and "estimated (board model)" in text and "uncalibrated" in text


def test_report_labels_say_what_each_figure_is(staged):
    tmp, result = staged
    text = (tmp / "profile.md").read_text()
    assert "TFLite Micro arena (measured)" in text and "Whole-tensor peak for this op order (computed)" in text
    assert "lower bound" not in text.lower() and "on the seed card's points" not in text
    ram = result["int8_tflite"]["activation_ram"]
    assert "whole_tensor_peak_bytes" in ram and not any("lower_bound" in k for k in ram)
    h747 = result["boards"]["stm32h747i_disco"]
    # a fitted board's time carries its hold-out bar, said for what it is, and the architectures it saw
    row = next(line for line in text.splitlines() if line.startswith("| small.tflite") and "STM32H747I-DISCO" in line)
    assert f"{h747['estimated_ms']:.2f} ±{h747['latency_bar_pct']:.1f}%" in row
    assert "80th percentile" in row and "SqueezeNet v1.1" in row and "ST EfficientNet LC v1" in row
    # boards calibrated on the card's two LC v1 points print no ±; the F769 says it borrows the H747's shape
    f769 = next(line for line in text.splitlines() if line.startswith("| small.tflite") and "STM32F769I-DISCO" in line)
    assert "per-kind shape" in f769 and "LC v1 only, 2 points" in f769 and "no error bar" in f769
    mp135 = next(line for line in text.splitlines() if line.startswith("| small.tflite") and "STM32MP135F" in line)
    assert "±" not in mp135 and "not measured on other architectures" in mp135
    # energy: estimated, per board with a datasheet current, the battery named
    assert "## Energy per inference, estimated" in text and "1000 mAh at 3.3 V" in text
    assert result["boards"]["stm32h747i_disco"]["energy"]["uj"] > 0
    # RAM verdicts per runtime: ST Edge AI Core is not modelled without its report, never "no"
    for b in result["boards"].values():
        assert b["ram_fit_by_runtime"]["tflite_micro"]["fits"] == b["fits_ram"]
        assert b["ram_fit_by_runtime"]["stedgeai"]["fits"] is None
    assert "Fits with TFLite Micro (margin)" in text and "Fits with ST Edge AI Core (margin)" in text
    assert "not modelled" in text


def test_a_board_change_reruns_only_profile_on_board():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = [name for name, s in stages.items()
               if any(p == "board" or (isinstance(p, str) and p.startswith("board.")) for p in s.get("params", []))]
    assert readers == ["profile_on_board"]
    deps = stages["profile_on_board"]["deps"]
    assert "conf/board" in deps and "models/int8.tflite" in deps and "models/qdq_int8.onnx" in deps
    assert not any(d.startswith("conf/board") for name, s in stages.items() if name != "profile_on_board"
                   for d in s.get("deps", []))


def test_standalone_cli_profiles_any_tflite_without_params(small, tmp_path):
    path, _ = small
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "stages.profile_on_board", "--model", str(path),
                           "--board", "stm32f769i_disco", "--repeats", "2", "--metrics", str(tmp_path / "p.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "STM32F769I-DISCO" in done.stdout and "Inference time (ms), estimated (board model)" in done.stdout
    assert set(json.loads((tmp_path / "p.json").read_text())["boards"]) == {"stm32f769i_disco"}
    bad = subprocess.run([sys.executable, "-m", "stages.profile_on_board", "--model", str(path), "--board", "nope"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "board file" in bad.stderr and "nope.yaml" in bad.stderr


# --- ST Edge AI Core backend ---------------------------------------------------------------------

STAND_IN = """\
    #!{python}
    import json, sys
    args = sys.argv[1:]
    out = args[args.index("--output") + 1]
    assert args[0] == "generate" and args[args.index("--target") + 1] == "stm32h7"
    report = {{"ram_size": [185356], "rom_size": 517540, "rom_n_macc": 19833000,
              "estimated_library_ram_size": 15974, "estimated_library_flash_size": 103413,
              "cli_version_str": "3.0.0"}}
    open(out + "/network_report.json", "w").write(json.dumps(report))
"""


@pytest.fixture
def stand_in_stedgeai(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "stedgeai"
    exe.write_text(textwrap.dedent(STAND_IN.format(python=sys.executable)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_stand_in_stedgeai_report_is_parsed(small, tmp_path, stand_in_stedgeai):
    parsed = stedgeai.run(small[0], "stm32h7", tmp_path / "work")
    assert parsed["activation_ram_bytes"] == 185356 and parsed["weights_flash_bytes"] == 517540
    assert parsed["macc"] == 19833000
    assert parsed["runtime_ram_bytes"] == 15974 and parsed["code_flash_bytes"] == 103413
    assert "not measured" in parsed["source"]


def test_board_with_stedgeai_backend_uses_it(small, tmp_path, params, stand_in_stedgeai):
    params["board"].update(vendor_backend="stedgeai", stedgeai_target="stm32h7")
    board = BoardConfig.from_params(params)
    result = profile_on_board.profile(small[0], None, {board.name: board}, board.name, repeats=1)
    b = result["boards"][board.name]
    assert b["vendor"]["activation_ram_bytes"] == 185356
    st = b["ram_fit_by_runtime"]["stedgeai"]
    assert st["fits"] is True and st["needed_kib"] == round((185356 + 15974) / 1024, 2)
    assert "ST Edge AI Core: ST Edge AI Core report" in profile_on_board.profile_md.render(result)


def test_stedgeai_backend_without_the_cli_fails_clearly(small, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(stedgeai.VendorBackendError, match="`stedgeai` is not on PATH.*vendor_backend: none"):
        stedgeai.run(small[0], "stm32h7", tmp_path / "work")


def test_report_without_required_fields_is_refused(tmp_path):
    (tmp_path / "network_report.json").write_text(json.dumps({"ram_size": 1}))
    with pytest.raises(stedgeai.VendorBackendError, match="rom_size, rom_n_macc"):
        stedgeai.parse_report(tmp_path / "network_report.json")
