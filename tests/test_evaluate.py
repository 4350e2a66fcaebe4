"""evaluate: scores on a hand-made prediction set, and the stage on a model whose accuracy is known."""
from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mcuvision.config.base import ConfigError
from mcuvision.config.evaluate import EvaluateConfig
from mcuvision.config.model import ModelConfig
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert.quantization import float_onnx, int8_tflite, qdq_onnx
from mcuvision.report import evaluation
from mcuvision.report.stats import mcnemar_exact, wilson_interval
from stages import evaluate

CLASSES = ["red", "green", "blue"]


def test_per_class_on_a_hand_made_prediction_set():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 1])
    table = evaluation.per_class(predicted, labels, CLASSES).set_index("class")
    # red: 2 of 3 "red" calls right, 2 of 4 reds found; green: 1/3, 1/2; blue: 3/4, 3/4.
    assert table.loc["red", "precision"] == pytest.approx(2 / 3)
    assert table.loc["red", "recall"] == pytest.approx(2 / 4)
    assert table.loc["red", "f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert table.loc["green", "precision"] == pytest.approx(1 / 3) and table.loc["green", "recall"] == 0.5
    assert table.loc["blue", "precision"] == 0.75 and table.loc["blue", "recall"] == 0.75
    assert table["support"].tolist() == [4, 2, 4]
    probs = np.eye(3)[predicted]
    s = evaluation.scores(probs, labels, CLASSES, top_k=5)
    assert s["top1"] == pytest.approx(0.6) and "top5" not in s  # top-k only from 10 classes
    assert s["macro_recall"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    matrix = evaluation.confusion(predicted, labels, CLASSES)
    assert matrix.tolist() == [[2, 1, 1], [1, 1, 0], [0, 1, 3]]
    rows = evaluation.confusion_rows(predicted, labels, CLASSES)
    assert rows.iloc[3].tolist() == ["red", "blue"] and len(rows) == 10


def test_top_k_counts_the_label_anywhere_in_the_k_best():
    probs = np.array([[0.5, 0.3, 0.2] + [0.0] * 9, [0.1, 0.2, 0.7] + [0.0] * 9])
    labels = np.array([1, 0])
    assert evaluation.top_k_accuracy(probs, labels, 1) == 0.0
    assert evaluation.top_k_accuracy(probs, labels, 2) == 0.5
    assert evaluation.top_k_accuracy(probs, labels, 3) == 1.0
    twelve = [f"c{i}" for i in range(12)]
    assert evaluation.scores(probs, labels, twelve, top_k=3)["top3"] == 1.0


def colour_model(res: int) -> keras.Model:
    """Predicts the dominant colour channel: mean pixel per channel, identity dense, softmax."""
    inputs = keras.Input((res, res, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3)
    outputs = keras.layers.Softmax()(dense(x))
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.eye(3, dtype=np.float32) * 8.0, np.zeros(3, np.float32)])
    return model


def colour_dataset(raw, per_class: int, wrong: int) -> pd.DataFrame:
    """Solid-ish images of each colour; the last `wrong` images of 'red' are labelled 'green'."""
    rng = np.random.RandomState(3)
    rows = []
    for c, name in enumerate(CLASSES):
        (raw / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.randint(0, 60, (40, 40, 3)).astype(np.uint8)
            pixels[..., c] = rng.randint(180, 256, (40, 40))
            Image.fromarray(pixels).save(raw / name / f"{i}.png")
            label = 1 if (c == 0 and i >= per_class - wrong) else c
            split = "train" if i < 2 else "test"
            rows.append({"path": f"{name}/{i}.png", "label": CLASSES[label], "class_index": label, "split": split})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory, base_params):
    tmp = tmp_path_factory.mktemp("eval")
    params = json.loads(json.dumps(base_params))
    params["model"]["res"] = 32
    raw = tmp / "raw"
    manifest = colour_dataset(raw, per_class=8, wrong=3)
    manifest.to_csv(tmp / "manifest.csv", index=False)
    model = colour_model(32)
    model.save(tmp / "float.keras")
    calibration = np.stack([np.asarray(Image.open(raw / p).resize((32, 32), Image.NEAREST))
                            for p in manifest[manifest.split == "train"].path])
    config = QuantizeConfig.from_params(params)
    (tmp / "int8.tflite").write_bytes(int8_tflite(model, calibration, config))
    onnx_model = float_onnx(model, 32, config.onnx.opset, config.onnx.layout)
    (tmp / "float.onnx").write_bytes(onnx_model.SerializeToString())
    (tmp / "qdq.onnx").write_bytes(qdq_onnx(onnx_model, calibration, config).SerializeToString())
    (tmp / "w4w8").mkdir()
    files = evaluate.model_files(tmp / "float.keras", tmp / "float.onnx", tmp / "int8.tflite", tmp / "qdq.onnx",
                                 tmp / "w4w8")
    metrics = evaluate.run(EvaluateConfig.from_params(params), ModelConfig.from_params(params), files, CLASSES,
                           manifest_path=tmp / "manifest.csv", raw=raw, metrics_out=tmp / "evaluate.json",
                           reports_out=tmp / "reports")
    return tmp, metrics


def test_every_format_scores_the_known_accuracy(colour_run):
    tmp, metrics = colour_run
    # 6 test images per colour, 3 reds labelled green: every format must score exactly 15/18.
    assert metrics["split"] == "test" and metrics["images"] == 18
    assert set(metrics) >= {"float_keras", "float_onnx", "int8_tflite", "int8_qdq_onnx"}
    assert "w4w8_qdq_onnx" not in metrics  # quantize made none
    low, high = wilson_interval(15, 18)
    for name in ("float_keras", "float_onnx", "int8_tflite", "int8_qdq_onnx"):
        assert metrics[name]["top1"] == pytest.approx(15 / 18), name
        assert metrics[name]["n"] == 18 and "images_per_s" not in metrics[name] and "runtime" not in metrics[name]
        assert (metrics[name]["top1_low"], metrics[name]["top1_high"]) == pytest.approx((low, high), abs=1e-6)
    for name in ("int8_tflite", "int8_qdq_onnx"):
        assert metrics[name]["drop_points"] == 0.0 and metrics[name]["agreement_with_float"] == 1.0
        # Same predictions as float: no discordant image, nothing to test.
        assert metrics[name]["mcnemar_vs_float"] == {"b": 0, "c": 0, "p_value": 1.0}
        assert metrics[name]["agreement_with_float_low"] == pytest.approx(18 / (18 + 1.959964 ** 2), abs=1e-5)
    assert "Wilson" in metrics["interval"] and "McNemar" in metrics["paired_test"]
    assert json.loads((tmp / "evaluate.json").read_text()) == json.loads(json.dumps(metrics))


def test_throughput_is_a_report_not_a_metric(colour_run):
    tmp, metrics = colour_run
    throughput = json.loads((tmp / "reports" / "throughput.json").read_text())
    assert throughput["images"] == 18 and throughput["split"] == "test"
    for name in ("float_keras", "float_onnx", "int8_tflite", "int8_qdq_onnx"):
        assert throughput[name]["images_per_s"] > 0 and throughput[name]["runtime"], name
    assert "images_per_s" not in json.dumps(metrics)


def test_predictions_file_recomputes_every_figure(colour_run):
    tmp, metrics = colour_run
    table = pd.read_csv(tmp / "reports" / "predictions.csv")
    formats = ["float_keras", "float_onnx", "int8_tflite", "int8_qdq_onnx"]
    assert list(table.columns) == ["path", "label"] + [f"{f}_{c}" for f in formats for c in ("predicted", "confidence")]
    assert len(table) == 18
    # Paths as the manifest has them, relative to data/raw, so two commits line up image by image.
    assert table.path.iloc[0] == "red/2.png" and not table.path.str.startswith("/").any()
    assert (table.label == "green").sum() == 6 + 3  # 3 reds labelled green
    red_as_green = table[table.path.isin(["red/5.png", "red/6.png", "red/7.png"])]
    assert (red_as_green.label == "green").all() and (red_as_green.float_keras_predicted == "red").all()
    for name in formats:
        right = table[f"{name}_predicted"] == table.label
        assert right.mean() == pytest.approx(metrics[name]["top1"], abs=1e-6)
        assert table[f"{name}_confidence"].between(1 / 3, 1).all()
        if name != "float_keras":
            floats_right = table.float_keras_predicted == table.label
            assert mcnemar_exact(floats_right, right) == metrics[name]["mcnemar_vs_float"]


def test_reports_hold_confusion_rows_pngs_and_per_class(colour_run):
    tmp, _ = colour_run
    rows = pd.read_csv(tmp / "reports" / "confusion" / "int8_tflite.csv")
    assert len(rows) == 18
    # The three mislabelled reds: actual "green", predicted "red".
    assert ((rows.actual == "green") & (rows.predicted == "red")).sum() == 3
    assert (rows.actual == rows.predicted).sum() == 15
    for name in ("float_keras", "int8_qdq_onnx"):
        assert (tmp / "reports" / f"confusion_{name}.png").read_bytes()[:4] == b"\x89PNG"
    per_class = pd.read_csv(tmp / "reports" / "per_class.csv")
    red = per_class[(per_class.format == "int8_tflite") & (per_class["class"] == "red")].iloc[0]
    assert red.precision == pytest.approx(3 / 6) and red.recall == 1.0 and red.support == 3
    # 3 of 3 found: Wilson's (3 / (3 + z²), 1), to the 4 decimals the CSV keeps.
    assert red.recall_low == pytest.approx(3 / (3 + 1.959964 ** 2), abs=1e-4) and red.recall_high == 1.0


def test_a_dataset_without_test_split_scores_validation(tmp_path):
    manifest = pd.DataFrame({"path": ["a/1.png", "a/2.png"], "class_index": [0, 0], "split": ["train", "val"]})
    name, split = evaluate.held_out(manifest, tmp_path, "test")
    assert name == "val" and split.paths == [str(tmp_path / "a/2.png")]


def test_bad_evaluate_params_name_the_key(params):
    params["evaluate"]["split"] = "train"
    with pytest.raises(ConfigError, match="evaluate.split='train'"):
        EvaluateConfig.from_params(params)
    params["evaluate"]["split"] = "test"
    params["evaluate"]["guards"]["min_agreement_with_float"] = 1.5
    with pytest.raises(ConfigError, match="evaluate.guards.min_agreement_with_float"):
        EvaluateConfig.from_params(params)
