"""Mixed int4/int8 QDQ ONNX: the search on hand-made accuracies, the int4 rewrite on a small graph
against onnxruntime's own int4 quantizer, and the quantize stage on a model trained in the test."""
from __future__ import annotations

import copy
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
from mcuvision.config.model import ModelConfig
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.config.train import TrainConfig
from mcuvision.convert import int4_search
from mcuvision.convert.onnx_graph import weights_bytes
from mcuvision.data.synthetic import make_dataset
from mcuvision.formats import W4W8_MODEL_FILE, W4W8_SEARCH_FILE
from mcuvision.runtime.runners import OnnxRunner

# ---------------------------------------------------------------------------------------------
# The search alone: a fake accuracy makes every step predictable.

SIZES = {"a": 100, "b": 80, "c": 80, "d": 50, "e": 10, "f": 5, "g": 1}  # ranked a b c d e f g


def fake_accuracy(sensitive: set[str], baseline: float = 0.9):
    """Accuracy falls 10 points as soon as one of `sensitive` is int4, else it stays at `baseline`."""
    seen = []

    def evaluate(int4: frozenset[str]) -> float:
        seen.append(int4)
        return baseline - 0.1 if int4 & sensitive else baseline
    return evaluate, seen


def test_rank_is_largest_first_then_by_name():
    assert int4_search.rank(SIZES) == ["a", "b", "c", "d", "e", "f", "g"]
    assert int4_search.rank({"z": 3, "y": 3, "x": 4}) == ["x", "y", "z"]


def test_binary_search_then_refinement_keeps_only_the_sensitive_tensor_in_int8():
    evaluate, seen = fake_accuracy({"b"})
    out = int4_search.search(SIZES, evaluate, 0.9, 1.5, max_evaluations=20, log=lambda _: None)
    # all-int4 fails; 3 int8 (a b c) passes; 1 (a) fails; 2 (a b) passes; then a alone goes back to int4.
    assert [len(SIZES) - len(s) for s in seen] == [0, 3, 1, 2, 1, 0]
    assert [(e.step, e.int8_tensors, e.within_tolerance) for e in out.trace] == [
        ("search", 0, False), ("search", 3, True), ("search", 1, False), ("search", 2, True),
        ("refine", 1, True), ("refine", 0, False)]
    assert [e.tensor for e in out.trace[4:]] == ["a", "b"]
    assert out.int4 == ("a", "c", "d", "e", "f", "g")
    assert out.accuracy == 0.9
    assert out.trace[1].int4_share_pct == pytest.approx(100 * 66 / 326, abs=1e-4)


def test_without_refinement_the_binary_search_result_stands():
    evaluate, _ = fake_accuracy({"b"})
    out = int4_search.search(SIZES, evaluate, 0.9, 1.5, max_evaluations=20, refine=False, log=lambda _: None)
    assert out.int4 == ("c", "d", "e", "f", "g") and len(out.trace) == 4


def test_budget_stops_the_search_at_a_point_known_within_tolerance():
    evaluate, _ = fake_accuracy({"b"})
    out = int4_search.search(SIZES, evaluate, 0.9, 1.5, max_evaluations=2, log=lambda _: None)
    assert len(out.trace) == 2
    assert out.int4 == ("d", "e", "f", "g")


def test_all_int4_within_tolerance_takes_one_evaluation():
    evaluate, _ = fake_accuracy(set())
    out = int4_search.search(SIZES, evaluate, 0.9, 1.5, max_evaluations=20, log=lambda _: None)
    assert out.int4 == tuple(int4_search.rank(SIZES)) and len(out.trace) == 1


def test_no_tensor_can_be_int4_gives_the_int8_model():
    out = int4_search.search(SIZES, lambda int4: 0.5, 0.9, 1.5, max_evaluations=50, log=lambda _: None)
    assert out.int4 == () and out.accuracy == 0.9
    assert all(not e.within_tolerance for e in out.trace)


def test_tolerance_is_inclusive_and_in_points():
    at_limit = int4_search.search({"w": 1}, lambda int4: 0.9 - 0.015, 0.9, 1.5, 5, log=lambda _: None)
    beyond = int4_search.search({"w": 1}, lambda int4: 0.9 - 0.0151, 0.9, 1.5, 5, log=lambda _: None)
    assert at_limit.int4 == ("w",) and beyond.int4 == ()


def test_search_prints_one_line_per_evaluation():
    lines = []
    int4_search.search(SIZES, fake_accuracy({"b"})[0], 0.9, 1.5, 20, log=lines.append)
    assert len(lines) == 6 and all("accuracy" in line and "int4" in line for line in lines)


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


def test_w4w8_result_reports_shares_of_weight_elements_and_bytes(small):
    float_model, int8, images = small
    labels = run_model(int8, images).argmax(1)  # the int8 model is right by construction: 100%

    def agreement(model):
        return float(np.mean(run_model(model, images).argmax(1) == labels))

    found = int4_search.w4w8(float_model, int8, agreement, tolerance_points=100.0, max_evaluations=5,
                                 log=lambda _: None)
    assert found.int4_tensors == ("w1", "w2", "w3") and found.evaluations == 1  # anything goes at 100 points
    assert found.int4_share_pct == 100.0 and found.int8_share_pct == 0.0
    assert found.int8_accuracy == 1.0 and found.weights_bytes == weights_bytes(found.model) < found.int8_weights_bytes
    assert found.trace[0]["int4_share_pct"] == 100.0


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
    from stages import quantize
    from stages import train as train_stage

    tmp = tmp_path_factory.mktemp("w4w8")
    params = copy.deepcopy(base_params)
    classes, per_class, val_per_class = 3, 40, 12
    raw = tmp / "raw"
    make_dataset(raw, classes, per_class, 48, seed=5)
    rows = [{"path": f"class_{c:03d}/{n:04d}.jpg", "label": f"class_{c:03d}", "class_index": c,
             "split": "val" if n >= per_class - val_per_class else "train"}
            for c in range(classes) for n in range(per_class)]
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    params["model"]["res"] = 32
    params["train"].update(epochs=5, batch_size=16, learning_rate=0.003, warmup_epochs=0, label_smoothing=0.0)
    params["quantize"]["calibration_images"] = 32
    params["quantize"]["w4w8"].update(enabled=True, max_evaluations=20)
    model_config = ModelConfig.from_params(params)
    train_stage.run(TrainConfig.from_params(params), model_config, 1, manifest_path=tmp / "manifest.csv", raw=raw,
                    model_out=tmp / "float.keras", metrics_out=tmp / "train.json", live_dir=tmp / "live",
                    backup_root=tmp / "backup")
    config = QuantizeConfig.from_params(params)
    metrics = quantize.run(config, model_config, 1, keras_path=tmp / "float.keras", manifest_path=tmp / "manifest.csv",
                           raw=raw, tflite_out=tmp / "int8.tflite", onnx_out=tmp / "float.onnx",
                           qdq_out=tmp / "qdq.onnx", w4w8_out=tmp / "w4w8", metrics_out=tmp / "quantize.json")
    return {"tmp": tmp, "metrics": metrics, "config": config, "raw": raw, "model": model_config}


@pytest.mark.slow
def test_stage_writes_the_mixed_model_its_search_and_metrics(stage_run):
    tmp, metrics = stage_run["tmp"], stage_run["metrics"]
    assert sorted(p.name for p in (tmp / "w4w8").iterdir()) == sorted([W4W8_MODEL_FILE, W4W8_SEARCH_FILE])
    search = json.loads((tmp / "w4w8" / W4W8_SEARCH_FILE).read_text())
    # 84 train images, 32 of them calibrate: the other 52 score the candidates (never val or test)
    assert search["enabled"] and search["split"] == "train, held out of calibration" and search["images"] == 52
    assert search["activations_int8_pct"] == 100 and search["tolerance_points"] == 1.5
    assert 100 * (search["int8_accuracy"] - search["accuracy"]) <= 1.5 + 1e-9
    assert 0 < search["int4_share_pct"] <= 100
    assert search["int4_share_pct"] + search["int8_share_pct"] == pytest.approx(100)
    assert search["weights_bytes"] < search["int8_weights_bytes"] == metrics["int8_qdq_onnx"]["weights_bytes"]
    assert 1 <= search["evaluations"] == len(search["trace"]) <= 20
    assert json.loads((tmp / "quantize.json").read_text())["w4w8_qdq_onnx"] == metrics["w4w8_qdq_onnx"]
    for key in ("int4_share_pct", "int8_share_pct", "weights_bytes", "int8_weights_bytes", "accuracy",
                "int8_accuracy", "evaluations"):
        assert metrics["w4w8_qdq_onnx"][key] == search[key], key
    assert {"int8_tflite", "float_onnx", "int8_qdq_onnx"} <= set(metrics)

    model = onnx.load(str(tmp / "w4w8" / W4W8_MODEL_FILE))
    int4 = {i.name.removesuffix("_quantized") for i in model.graph.initializer if i.data_type == TensorProto.INT4
            and i.name.endswith("_quantized")}
    assert int4 == set(search["int4_tensors"])
    assert weights_bytes(model) == search["weights_bytes"]


@pytest.mark.slow
def test_search_is_deterministic(stage_run):
    tmp = stage_run["tmp"]
    float_model, int8 = onnx.load(str(tmp / "float.onnx")), onnx.load(str(tmp / "qdq.onnx"))
    images = np.random.RandomState(3).randint(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    labels = run_model(int8, images).argmax(1)

    def agreement(model):
        return float(np.mean(run_model(model, images).argmax(1) == labels))

    first, second = (int4_search.w4w8(float_model, int8, agreement, 1.5, 10, log=lambda _: None) for _ in range(2))
    assert first.int4_tensors == second.int4_tensors and first.trace == second.trace
    assert first.model.SerializeToString() == second.model.SerializeToString()


@pytest.mark.slow
def test_disabled_search_writes_only_a_record_that_says_so(stage_run, tmp_path):
    from stages import quantize

    out = tmp_path / "w4w8"
    out.mkdir()
    (out / "stale.onnx").write_bytes(b"left from an enabled run")
    assert quantize.record_search_off(out) is None
    assert [p.name for p in out.iterdir()] == [W4W8_SEARCH_FILE]
    assert json.loads((out / W4W8_SEARCH_FILE).read_text()) == {"enabled": False}


def test_search_split_is_train_images_left_out_of_calibration(tmp_path):
    from stages.quantize import train_subsets

    rows = [{"path": f"c{c}/{n:03d}.jpg", "label": f"c{c}", "class_index": c,
             "split": ("train", "train", "train", "val", "test")[n % 5], "orientation": 1 + n % 8}
            for c in range(2) for n in range(100)]
    manifest = pd.DataFrame(rows)
    calibration, searched = train_subsets(manifest, tmp_path, 40, 50, seed=3)
    train = {str(tmp_path / r["path"]) for r in rows if r["split"] == "train"}
    assert len(calibration) == 40 and len(searched) == 50
    assert set(calibration.paths) <= train and set(searched.paths) <= train - set(calibration.paths)
    by_path = {str(tmp_path / r["path"]): r for r in rows}
    for subset in (calibration, searched):
        assert list(subset.labels) == [by_path[p]["class_index"] for p in subset.paths]
        assert list(subset.orientations) == [by_path[p]["orientation"] for p in subset.paths]  # the manifest's
    again = train_subsets(manifest, tmp_path, 40, 50, seed=3)
    assert (again[0].paths, again[1].paths) == (calibration.paths, searched.paths)
    assert len(train_subsets(manifest, tmp_path, 40, 10_000, seed=3)[1]) == len(train) - 40
