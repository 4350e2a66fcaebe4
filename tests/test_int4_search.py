"""Mixed int4/int8 QDQ ONNX: the search on hand-made accuracies, the int4 rewrite on a small graph
against onnxruntime's own int4 quantizer, and the quantize stage on a model trained in the test."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper, version_converter

from mcuvision.compose import compose
from mcuvision.config.base import ConfigError
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import int4_search
from mcuvision.convert.onnx_graph import weights_bytes
from mcuvision.data.input_pipeline import decode_all, read_split
from mcuvision.formats import W4W8_MODEL_FILE, W4W8_SEARCH_FILE
from mcuvision.runtime.runners import OnnxRunner
from tiny_model import SHARED_MAX_EVALUATIONS, shared_model

# ---------------------------------------------------------------------------------------------
# The search alone: a made-up risk makes every step predictable.

SIZES = {"a": 100, "b": 80, "c": 80, "d": 50, "e": 10, "f": 5, "g": 1}
RANKED = ["g", "f", "e", "d", "c", "b", "a"]


def additive_risk(points: dict[str, float]):
    """Risk of an int4 set: the sum of its tensors' points (grows with the prefix, as assumed)."""
    seen = []

    def risk(int4: frozenset[str]) -> float:
        seen.append(int4)
        return sum(points.get(name, 0.0) for name in int4)
    return risk, seen


def test_order_takes_least_damage_per_weight_first_and_breaks_ties_by_size_then_name():
    sensitivity = {"a": 1.0, "b": 0.08, "c": 0.08, "d": 0.5, "e": 0.0, "f": -0.01, "g": 0.0}
    # per weight: a 0.01, b c 0.001, d 0.01, e f g 0 (f's negative KL is noise: zero)
    assert int4_search.order(SIZES, sensitivity) == ["e", "f", "g", "b", "c", "a", "d"]


def test_binary_search_finds_the_longest_prefix_within_the_budget():
    risk, seen = additive_risk({"g": 0.2, "f": 0.2, "e": 0.3, "d": 0.5, "c": 0.6, "b": 2.0, "a": 3.0})
    out = int4_search.search(RANKED, SIZES, risk, 1.5, max_evaluations=20, log=lambda _: None)
    # all 7 (6.8) too many; 3 (0.7) kept; 5 (1.8) too many; 4 (1.2) kept
    assert [len(s) for s in seen] == [7, 3, 5, 4]
    assert [(e.step, e.int4_tensors, e.within_tolerance) for e in out.trace] == [
        ("search", 7, False), ("search", 3, True), ("search", 5, False), ("search", 4, True)]
    assert out.int4 == ("g", "f", "e", "d") and out.risk_points == pytest.approx(1.2)
    assert out.trace[1].int4_share_pct == pytest.approx(100 * 16 / 326, abs=1e-4)


def test_gains_cannot_buy_damage_a_prefix_is_all_or_nothing():
    # Every candidate is a prefix: a damaging tensor (d) ends the int4 run even though later ones are harmless.
    risk, _ = additive_risk({"d": 5.0})
    out = int4_search.search(RANKED, SIZES, risk, 1.5, max_evaluations=20, log=lambda _: None)
    assert out.int4 == ("g", "f", "e")


def test_the_evaluation_budget_stops_at_a_prefix_known_within_tolerance():
    risk, _ = additive_risk({"b": 5.0})
    out = int4_search.search(RANKED, SIZES, risk, 1.5, max_evaluations=2, log=lambda _: None)
    assert len(out.trace) == 2 and out.int4 == ("g", "f", "e")


def test_all_int4_within_tolerance_takes_one_evaluation():
    out = int4_search.search(RANKED, SIZES, additive_risk({})[0], 1.5, max_evaluations=20, log=lambda _: None)
    assert out.int4 == tuple(RANKED) and len(out.trace) == 1


def test_nothing_within_tolerance_gives_the_int8_model():
    out = int4_search.search(RANKED, SIZES, lambda int4: 9.0, 1.5, max_evaluations=50, log=lambda _: None)
    assert out.int4 == () and out.risk_points == 0.0
    assert all(not e.within_tolerance for e in out.trace) and len(out.trace) == 3  # 7, 3, 1


def test_tolerance_is_inclusive_and_in_points():
    at_limit = int4_search.search(["w"], {"w": 1}, lambda int4: 1.5, 1.5, 5, log=lambda _: None)
    beyond = int4_search.search(["w"], {"w": 1}, lambda int4: 1.5001, 1.5, 5, log=lambda _: None)
    assert at_limit.int4 == ("w",) and beyond.int4 == ()


def test_search_prints_one_line_per_evaluation():
    lines = []
    int4_search.search(RANKED, SIZES, additive_risk({"b": 5.0})[0], 1.5, 20, log=lines.append)
    assert len(lines) == 4 and all("points lost against int8" in line for line in lines)  # 7, 3, 5, 6


def test_lost_points_count_only_images_int8_gets_right_and_the_candidate_wrong():
    labels = np.array([0, 0, 1, 1, 2])
    int8 = np.eye(3)[[0, 0, 1, 0, 0]]        # right on images 0, 1, 2
    candidate = np.eye(3)[[1, 0, 1, 1, 2]]   # loses image 0, gains images 3 and 4
    assert int4_search.lost_points(int8, candidate, labels) == pytest.approx(20.0)
    assert int4_search.drop_points(int8, candidate, labels) == pytest.approx(-20.0)  # the gains hide the loss
    assert int4_search.lost_points(int8[:0], candidate[:0], labels[:0]) == 0.0


def test_kl_divergence_is_zero_on_equal_outputs_and_known_on_others():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert int4_search.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    q = np.array([[0.25, 0.75], [1.0, 0.0]])
    expected = (0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75)) / 2
    assert int4_search.kl_divergence(p, q) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# The rewrite on a small hand-made graph, calibrated by the project's own qdq_onnx.

RES = 8


def small_float_model(seed: int = 0) -> onnx.ModelProto:
    """NHWC image -> Conv 3x3 -> Relu -> Conv 1x1 -> global pool -> Gemm -> Softmax, opset 17."""
    rng = np.random.RandomState(seed)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.normal(0, 0.3, (8, 3, 3, 3))), ("b1", rng.normal(0, 0.1, 8)),
        ("w2", rng.normal(0, 0.3, (16, 8, 1, 1))), ("b2", rng.normal(0, 0.1, 16)),
        ("w3", rng.normal(0, 0.3, (16, 4))), ("b3", rng.normal(0, 0.1, 4)),
        ("scale", np.array(1 / 255.0)))]
    nodes = [helper.make_node("Mul", ["image", "scale"], ["x0"]),
             helper.make_node("Transpose", ["x0"], ["x1"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["x1", "w1", "b1"], ["x2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["x2"], ["x3"]),
             helper.make_node("Conv", ["x3", "w2", "b2"], ["x4"]),
             helper.make_node("GlobalAveragePool", ["x4"], ["x5"]),
             helper.make_node("Flatten", ["x5"], ["x6"]),
             helper.make_node("Gemm", ["x6", "w3", "b3"], ["x7"]),
             helper.make_node("Softmax", ["x7"], ["probabilities"])]
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, RES, RES, 3])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def small(base_params):
    from mcuvision.convert.quantization import qdq_onnx

    images = np.random.RandomState(1).randint(0, 256, (32, RES, RES, 3)).astype(np.uint8)
    float_model = small_float_model()
    int8 = qdq_onnx(float_model, images, QuantizeConfig.from_params(base_params))
    return float_model, int8, images


def run_model(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    return OnnxRunner(model.SerializeToString(), exact_qdq=True).predict(images)


def test_rewriter_finds_every_weight_and_reproduces_int8_exactly(small):
    float_model, int8, images = small
    rewriter = int4_search.Int4Rewriter(float_model, int8)
    assert rewriter.sizes == {"w1": 216, "w2": 128, "w3": 64} and rewriter.skipped == []
    # No tensor in int4: the opset-21 copy computes exactly what the int8 model does.
    np.testing.assert_array_equal(run_model(rewriter.model([]), images), run_model(int8, images))


def test_int4_weights_are_stored_packed_at_opset_21_and_run(small):
    float_model, int8, images = small
    rewriter = int4_search.Int4Rewriter(float_model, int8)
    model = rewriter.model(["w1", "w3"])
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain == "") == 21
    inits = {i.name: i for i in model.graph.initializer}
    for name, size in (("w1", 216), ("w3", 64)):
        tensor = inits[f"{name}_quantized"]
        assert tensor.data_type == TensorProto.INT4 and len(tensor.raw_data) == math.ceil(size / 2)
        assert inits[f"{name}_zero_point"].data_type == TensorProto.INT4
        values = numpy_helper.to_array(tensor).astype(np.int8)
        assert values.min() >= -8 and values.max() <= 7
    assert inits["w2_quantized"].data_type == TensorProto.INT8
    # int4 weights and zero points take half the bytes of their int8 forms (w1: 8 channels, w3: 4).
    assert weights_bytes(model) == weights_bytes(int8) - (216 - 108) - (8 - 4) - (64 - 32) - (4 - 2)
    assert run_model(model, images).shape == (len(images), 4)


def test_int4_rewrite_equals_onnxruntime_int4_quantizer(small):
    """What onnxruntime's quantizer makes with per-channel int4 overrides, bit for bit."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mcuvision.convert.quantization import _Reader

    float_model, int8, images = small
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        onnx.save(float_model, tmp / "f.onnx")
        quant_pre_process(str(tmp / "f.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
        onnx.save(version_converter.convert_version(onnx.load(str(tmp / "pre.onnx")), 21), tmp / "pre21.onnx")
        int4 = {"w1": 0, "w3": 1}  # weight -> channel axis (Conv: output channels; Gemm B: columns)
        quantize_static(str(tmp / "pre21.onnx"), str(tmp / "ort.onnx"), _Reader(images, False),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "TensorQuantOverrides": {
                            name: [{"quant_type": QuantType.QInt4, "symmetric": True, "axis": axis}]
                            for name, axis in int4.items()}})
        reference = onnx.load(str(tmp / "ort.onnx"))
    ours = int4_search.Int4Rewriter(float_model, int8).model(int4)
    theirs = {i.name: i for i in reference.graph.initializer}
    assert {i.name for i in ours.graph.initializer} == set(theirs)
    for init in ours.graph.initializer:
        other = theirs[init.name]
        assert init.data_type == other.data_type and list(init.dims) == list(other.dims), init.name
        np.testing.assert_array_equal(numpy_helper.to_array(init), numpy_helper.to_array(other), err_msg=init.name)


def test_a_float_model_that_is_not_the_int8_models_source_is_refused(small):
    _, int8, _ = small
    with pytest.raises(int4_search.SurgeryError, match="could be recomputed"):
        int4_search.Int4Rewriter(small_float_model(seed=5), int8)


def scored(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray | None = None) -> int4_search.Scored:
    probs = run_model(model, images)
    return int4_search.Scored(images, probs.argmax(1) if labels is None else labels, probs)


def test_w4w8_result_reports_shares_of_weight_elements_and_bytes(small):
    float_model, int8, images = small
    searched, check = scored(int8, images[:20]), scored(int8, images[20:])  # int8 right by construction
    found = int4_search.w4w8(float_model, int8, run_model, searched, check, tolerance_points=100.0,
                             max_evaluations=5, sensitivity_images=8, log=lambda _: None)
    assert set(found.int4_tensors) == {"w1", "w2", "w3"}  # anything goes at 100 points
    assert [e["step"] for e in found.trace] == ["search", "check"] and found.evaluations == 2
    assert found.int4_share_pct == 100.0 and found.int8_share_pct == 0.0 and found.stepped_back == 0
    assert found.check_int8_top1 == 100.0 and found.check_drop_points == 100.0 - found.check_top1
    assert found.weights_bytes == weights_bytes(found.model) < found.int8_weights_bytes
    assert set(found.sensitivity) == {"w1", "w2", "w3"} and all(v > 0 for v in found.sensitivity.values())


def test_a_result_the_check_refuses_steps_back_to_a_shorter_accepted_prefix(small):
    """A made-up damage: all three tensors in int4 lose the search views, two or more lose the check
    images. The search keeps two; the check refuses them and holds at one."""
    float_model, int8, images = small
    searched, check = scored(int8, images[:20]), scored(int8, images[20:])
    rewriter = int4_search.Int4Rewriter(float_model, int8)

    def predict(model, batch):
        int4 = sum(1 for i in model.graph.initializer if i.data_type == TensorProto.INT4 and
                   i.name.endswith("_quantized"))
        for views, damaged in ((searched, int4 == 3), (check, int4 >= 2)):
            if batch is views.images:
                return np.roll(views.int8_probs, 1, axis=1) if damaged else views.int8_probs
        return run_model(model, batch)  # the sensitivity pass, on a subset of the search views

    lines = []
    found = int4_search.w4w8(float_model, int8, predict, searched, check, tolerance_points=1.5, max_evaluations=5,
                             sensitivity_images=8, log=lines.append)
    checks = [(e["int4_tensors"], e["within_tolerance"]) for e in found.trace if e["step"] == "check"]
    assert [(e["int4_tensors"], e["within_tolerance"]) for e in found.trace if e["step"] == "search"] == [
        (3, False), (1, True), (2, True)]
    assert checks == [(2, False), (1, True)]
    assert len(found.int4_tensors) == 1 and found.stepped_back == 1 and found.check_drop_points == 0.0
    assert found.int4_tensors[0] == int4_search.order(rewriter.sizes, found.sensitivity)[0]
    assert any("beyond tolerance, one step back" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# Config

def test_w4w8_variant_composes_and_parses():
    params = yaml.safe_load(compose(["quantize=w4w8"]))
    config = QuantizeConfig.from_params(params)
    assert config.name == "w4w8" and config.w4w8.enabled and config.w4w8.tolerance_points == 1.5
    assert config.onnx.opset == 17 and config.tflite.input_type == "uint8", "everything else as int8"
    default = QuantizeConfig.from_params(yaml.safe_load(compose()))
    assert not default.w4w8.enabled and default.w4w8.max_evaluations == config.w4w8.max_evaluations


@pytest.mark.parametrize("key, value, message", [
    ("tolerance_points", -1, "quantize.w4w8.tolerance_points=-1 is not allowed"),
    ("tolerance_points", "1.5", "quantize.w4w8.tolerance_points='1.5' is not allowed"),
    ("max_evaluations", 0, "quantize.w4w8.max_evaluations=0 is not allowed"),
    ("enabled", "yes", "quantize.w4w8.enabled='yes' is not allowed: true or false"),
])
def test_bad_w4w8_values_are_refused(params, key, value, message):
    params["quantize"]["w4w8"][key] = value
    with pytest.raises(ConfigError, match=message):
        QuantizeConfig.from_params(params)


def test_missing_w4w8_section_is_refused(params):
    del params["quantize"]["w4w8"]
    with pytest.raises(ConfigError, match="quantize.w4w8=None is not allowed"):
        QuantizeConfig.from_params(params)


# ---------------------------------------------------------------------------------------------
# The quantize stage on a model trained here.

@pytest.fixture(scope="module")
def stage_run(tmp_path_factory, base_params):
    """The shared tiny model (tests/tiny_model.py): trained at 32x32, quantized by the stage with the search
    on (at most SHARED_MAX_EVALUATIONS evaluations) on its 24 validation images."""
    return shared_model(tmp_path_factory, base_params)


@pytest.mark.slow
def test_stage_writes_the_mixed_model_its_search_and_metrics(stage_run):
    tmp, metrics, w4w8 = stage_run["folder"], stage_run["metrics"], stage_run["w4w8"]
    assert sorted(p.name for p in w4w8.iterdir()) == sorted([W4W8_MODEL_FILE, W4W8_SEARCH_FILE])
    search = json.loads((w4w8 / W4W8_SEARCH_FILE).read_text())
    # 24 validation images: 7 (0.3) check the result, the other 17 are searched as is and mirrored
    assert search["enabled"] and search["split"] == "val" and search["check_images"] == 7
    assert search["search_images"] == 17 and search["search_views"] == 34
    assert search["activations_int8_pct"] == 100 and search["tolerance_points"] == 1.5
    assert search["search_lost_points"] <= 1.5 + 1e-9
    assert search["check_drop_points"] == pytest.approx(search["check_int8_top1"] - search["check_top1"])
    assert 0 <= search["int4_share_pct"] <= 100
    assert search["int4_share_pct"] + search["int8_share_pct"] == pytest.approx(100)
    assert search["weights_bytes"] <= search["int8_weights_bytes"] == metrics["int8_qdq_onnx"]["weights_bytes"]
    assert 1 <= search["evaluations"] == len(search["trace"]) <= SHARED_MAX_EVALUATIONS + len(search["trace"])
    assert sum(e["step"] == "search" for e in search["trace"]) <= SHARED_MAX_EVALUATIONS
    assert len(search["sensitivity_kl"]) >= len(search["int4_tensors"])
    assert json.loads((tmp / "quantize.json").read_text())["w4w8_qdq_onnx"] == metrics["w4w8_qdq_onnx"]
    for key in ("int4_share_pct", "int8_share_pct", "weights_bytes", "int8_weights_bytes", "search_lost_points",
                "check_drop_points", "tolerance_points", "evaluations", "search_views", "check_images"):
        assert metrics["w4w8_qdq_onnx"][key] == search[key], key
    assert {"int8_tflite", "float_onnx", "int8_qdq_onnx"} <= set(metrics)

    model = onnx.load(str(w4w8 / W4W8_MODEL_FILE))
    int4 = {i.name.removesuffix("_quantized") for i in model.graph.initializer if i.data_type == TensorProto.INT4
            and i.name.endswith("_quantized")}
    assert int4 == set(search["int4_tensors"])
    assert weights_bytes(model) == search["weights_bytes"]


@pytest.mark.slow
def test_search_is_deterministic(stage_run, tmp_path):
    """The stage's search, run again on its models and validation images, finds the same model and
    writes the same record."""
    from stages import quantize

    model_config = stage_run["model"]
    split = read_split(pd.read_csv(stage_run["manifest"]), stage_run["raw"], "val")
    validation = decode_all(split.paths, model_config.res, model_config.interpolation, split.orientations)
    float_model, int8 = onnx.load(str(stage_run["onnx"])), onnx.load(str(stage_run["qdq"]))
    again = quantize.w4w8_search(QuantizeConfig.from_params(stage_run["params"]), float_model, int8, validation,
                                 split.labels, quantize.predict(int8, validation), 1, tmp_path / "w4w8")
    assert json.loads(json.dumps(again)) == json.loads((stage_run["w4w8"] / W4W8_SEARCH_FILE).read_text())
    assert (tmp_path / "w4w8" / W4W8_MODEL_FILE).read_bytes() == (stage_run["w4w8"] / W4W8_MODEL_FILE).read_bytes()


@pytest.mark.slow
def test_disabled_search_writes_only_a_record_that_says_so(tmp_path):
    from stages import quantize

    out = tmp_path / "w4w8"
    out.mkdir()
    (out / "stale.onnx").write_bytes(b"left from an enabled run")
    assert quantize.record_search_off(out) is None
    assert [p.name for p in out.iterdir()] == [W4W8_SEARCH_FILE]
    assert json.loads((out / W4W8_SEARCH_FILE).read_text()) == {"enabled": False}


def test_calibration_is_drawn_from_the_train_split_with_the_manifests_orientations(tmp_path):
    from stages.quantize import calibration_subset

    rows = [{"path": f"c{c}/{n:03d}.jpg", "label": f"c{c}", "class_index": c,
             "split": ("train", "train", "train", "val", "test")[n % 5], "orientation": 1 + n % 8}
            for c in range(2) for n in range(100)]
    manifest = pd.DataFrame(rows)
    calibration = calibration_subset(manifest, tmp_path, 40, seed=3)
    train = {str(tmp_path / r["path"]) for r in rows if r["split"] == "train"}
    assert len(calibration) == 40 and set(calibration.paths) <= train
    by_path = {str(tmp_path / r["path"]): r for r in rows}
    assert list(calibration.labels) == [by_path[p]["class_index"] for p in calibration.paths]
    assert list(calibration.orientations) == [by_path[p]["orientation"] for p in calibration.paths]  # the manifest's
    assert calibration_subset(manifest, tmp_path, 40, seed=3).paths == calibration.paths
    assert len(calibration_subset(manifest, tmp_path, 10_000, seed=3)) == len(train)


@pytest.mark.parametrize("count, fraction, checked", [(36, 0.3, 11), (100, 0.3, 30), (2, 0.01, 1), (3, 0.99, 2),
                                                      (1, 0.3, 0)])
def test_search_and_check_split_the_validation_images_without_overlap(count, fraction, checked):
    from stages.quantize import search_and_check

    searched, check = search_and_check(count, fraction, seed=3)
    assert len(check) == checked and len(searched) == count - checked
    assert not set(searched) & set(check) and set(searched) | set(check) == set(range(count))
    assert list(searched) == sorted(searched) and list(check) == sorted(check)
    again = search_and_check(count, fraction, seed=3)
    assert list(again[0]) == list(searched) and list(again[1]) == list(check)
