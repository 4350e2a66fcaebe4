"""The per-layer int8 error report: quantize writes reports/quantize/ (CSV, plot) from TensorFlow Lite's
quantization debugger, the metrics name the lowest-SQNR layers with their share of the output error, and
the model card shows them."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import layer_error
from mcuvision.report.layer_error_card import layer_error_section
from stages import quantize
from tiny_model import SHARED_LAYER_ERROR_IMAGES, shared_model

CONV = ("st_efficientnet_lc_v1_1/block4a_se_relu6_1/Relu6;st_efficientnet_lc_v1_1/block4a_se_reduce_1/BiasAdd;"
        "st_efficientnet_lc_v1_1/block4a_se_reduce_1/convolution;st_efficientnet_lc_v1_1/block4a_se_reduce_1/Squeeze1")


def test_a_fused_tensor_is_named_after_the_layer_with_the_weights():
    known = {"block4a_se_reduce", "block4a_se_relu6", "block4c_se_squeeze"}
    assert layer_error.layer_name(CONV, known) == "block4a_se_reduce"
    assert layer_error.layer_name("st_efficientnet_lc_v1_1/block4c_se_squeeze_1/Mean", known) == "block4c_se_squeeze"
    assert layer_error.layer_name("st_efficientnet_lc_v1_1/unknown_7/Add", known) == "unknown_7"
    assert layer_error.layer_name("StatefulPartitionedCall_1:0", known) == "model output"


RECORD = {"images": 64, "split": "val", "layers": 168, "output_mse": 0.0158, "median_sqnr_db": 42.5,
          "matches_deployed_quantization": True, "worst_share_of_output_error": 0.092,
          "worst": [{"layer": "block4a_se_reduce", "op": "CONV_2D", "order": 55, "sqnr_db": 24.46, "rmse_steps": 3.83,
                     "share_of_output_error": 0.035},
                    {"layer": "block4c_se_squeeze", "op": "MEAN", "order": 75, "sqnr_db": 27.7, "rmse_steps": 1.88,
                     "share_of_output_error": 0.0},
                    {"layer": "block4a_se_squeeze", "op": "MEAN", "order": 54, "sqnr_db": 28.3, "rmse_steps": 1.65,
                     "share_of_output_error": None}]}


def test_the_card_names_the_three_worst_layers_and_their_share():
    text = "\n".join(layer_error_section({"layer_error": RECORD}))
    assert "| `block4a_se_reduce` | CONV_2D | 24.5 | 3.83 | 3.5% |" in text
    assert "| `block4a_se_squeeze` | MEAN | 28.3 | 1.65 | n/a (kept int8 by the converter) |" in text
    assert "the 3 together: 9.2%" in text and "64 val images" in text
    assert "differ from the deployed" not in text
    assert "differ from the deployed" in "\n".join(
        layer_error_section({"layer_error": {**RECORD, "matches_deployed_quantization": False}}))


def test_no_section_without_a_measurement():
    assert layer_error_section({}) == []
    assert layer_error_section({"layer_error": {"images": 0}}) == []


def test_zero_images_writes_only_the_header(tmp_path, base_params):
    params = copy.deepcopy(base_params)
    params["quantize"]["layer_error_images"] = 0
    record = quantize.layer_error_report(QuantizeConfig.from_params(params), None, np.zeros((0,)), np.zeros((3,)),
                                         np.zeros((3,)), b"", 1, tmp_path / "reports")
    assert record == {"images": 0}
    assert [p.name for p in (tmp_path / "reports").iterdir()] == [layer_error.CSV_FILE]
    assert list(pd.read_csv(tmp_path / "reports" / layer_error.CSV_FILE).columns) == layer_error.COLUMNS


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, base_params):
    """The shared tiny model (tests/tiny_model.py): trained at 32x32, quantized by the stage with the report on
    SHARED_LAYER_ERROR_IMAGES (20) of its 24 validation images."""
    shared = shared_model(tmp_path_factory, base_params)
    return shared["folder"], shared["metrics"]


@pytest.mark.slow
def test_quantize_writes_the_table_and_the_plot(quantized):
    tmp, _ = quantized
    table = pd.read_csv(tmp / "reports" / layer_error.CSV_FILE)
    assert list(table.columns) == layer_error.COLUMNS
    assert len(table) > 100, "every quantized op output of LC v1 has a row"
    assert list(table["order"]) == list(range(len(table))) and table["tensor_index"].is_monotonic_increasing
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "LOGISTIC", "SOFTMAX"} <= set(table["op"])
    assert (table["elements"] > 0).all() and (table["scale"] > 0).all()
    assert (tmp / "reports" / layer_error.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_errors_are_in_quantization_steps(quantized):
    """Rounding alone gives 1/sqrt(12) of a step: most layers sit near it; RMSE = steps x scale."""
    tmp, _ = quantized
    table = pd.read_csv(tmp / "reports" / layer_error.CSV_FILE)
    assert 0.2 < table["rmse_steps"].median() < 0.5, table["rmse_steps"].describe()
    np.testing.assert_allclose(table["rmse"], table["rmse_steps"] * table["scale"], rtol=1e-4)
    assert table["sqnr_db"].median() > 20


@pytest.mark.slow
def test_the_record_names_the_lowest_sqnr_layers_of_the_deployed_model(quantized):
    tmp, metrics = quantized
    record = metrics["layer_error"]
    assert json.loads((tmp / "quantize.json").read_text())["layer_error"] == record
    assert record["images"] == SHARED_LAYER_ERROR_IMAGES and record["split"] == "val"
    assert record["matches_deployed_quantization"], "the debugger calibrated another model than int8.tflite"
    table = pd.read_csv(tmp / "reports" / layer_error.CSV_FILE)
    lowest = table.sort_values("sqnr_db").head(3)
    assert [w["order"] for w in record["worst"]] == list(lowest["order"])
    assert [w["sqnr_db"] for w in record["worst"]] == pytest.approx(list(lowest["sqnr_db"]), rel=1e-5)
    assert record["output_mse"] > 0
    for share in [w["share_of_output_error"] for w in record["worst"]] + [record["worst_share_of_output_error"]]:
        assert share is None or -1 < share <= 1
    assert layer_error_section(metrics)[0] == "## Quantization error per layer"
