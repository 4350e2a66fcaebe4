"""`dvc exp show` leads with what matters: one declared metrics file, at most 30 numbers, top-1 first."""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from conftest import ROOT
from mcuvision.formats import FORMATS, QUANTIZED
from mcuvision.report.headline import MAX_COLUMNS, headline, leaf_count
from mcuvision.report.stats import wilson_interval
from stages import model_card

HEADLINE = "metrics/headline.json"


def declared_metrics() -> list[str]:
    """Every file dvc.yaml declares as metrics, in stages and at the top level."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    entries = [m for stage in pipeline["stages"].values() for m in stage.get("metrics", [])]
    entries += pipeline.get("metrics", [])
    return [next(iter(m)) if isinstance(m, dict) else m for m in entries]


def leaf_paths(document, prefix: str = "") -> list[str]:
    if isinstance(document, dict):
        return [p for k, v in document.items() for p in leaf_paths(v, f"{prefix}.{k}" if prefix else k)]
    return [] if document is None or isinstance(document, list) else [prefix]


def evaluate_document(correct: dict[str, int], n: int) -> dict:
    """metrics/evaluate.json as the stage writes it, every format, from counts of right images."""
    doc = {"split": "test", "images": n, "num_classes": 5, "interval": "Wilson", "paired_test": "McNemar"}
    for name, k in correct.items():
        low, high = wilson_interval(k, n)
        doc[name] = {"top1": k / n, "top1_low": low, "top1_high": high, "n": n, "macro_f1": k / n}
        if name != "float_keras":
            doc[name].update(agreement_with_float=0.9, agreement_with_float_low=0.8, agreement_with_float_high=0.95,
                             mcnemar_vs_float={"b": 3, "c": 1, "p_value": 0.625})
        if name in QUANTIZED:
            doc[name]["drop_points"] = 100 * (k - correct["float_keras"]) / n
    if "w4w8_qdq_onnx" in doc:
        doc["w4w8_qdq_onnx"]["drop_vs_int8_points"] = 100 * (correct["w4w8_qdq_onnx"] - correct["int8_qdq_onnx"]) / n
    return doc


def committed(name: str) -> dict:
    """A stage record as the pipeline wrote it on the embedded sample: metrics/ where git keeps it,
    else its copy in tests/records/ (the validate, train and quantize records are DVC-cached outputs)."""
    copy = ROOT / "tests" / "records" / f"{name}.json"
    path = copy if copy.exists() else ROOT / "metrics" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["validate", "train", "quantize"])
def test_the_recorded_stage_records_are_the_outputs_dvc_lock_names(name):
    # A copy older than the committed pipeline run hides a renamed or missing key from these tests
    # (the card then stops on a real run): after `dvc repro`, `cp metrics/<stage>.json tests/records/`.
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    outs = {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    record = (ROOT / "tests" / "records" / f"{name}.json").read_bytes()
    assert hashlib.md5(record).hexdigest() == outs[f"metrics/{name}.json"], \
        f"tests/records/{name}.json is not the metrics/{name}.json of dvc.lock: copy it again"


def worst_case() -> dict:
    """Every format, the int4/int8 model included, on the committed profile, quantize and train records."""
    quantize = {**committed("quantize"), "w4w8_qdq_onnx": {"int4_share_pct": 41.5, "weights_bytes": 400_000}}
    evaluate = evaluate_document({name: 30 - i for i, name in enumerate(FORMATS)}, 45)
    return headline(evaluate, committed("profile"), quantize, committed("train"))


def test_dvc_yaml_declares_only_the_headline_as_metrics():
    assert declared_metrics() == [HEADLINE]


def test_headline_has_at_most_30_columns_top1_first():
    figures = worst_case()
    paths = leaf_paths(figures)
    assert leaf_count(figures) == len(paths) <= MAX_COLUMNS == 30
    assert paths[0] == "float_keras.top1"
    assert paths[:3] == ["float_keras.top1", "float_keras.top1_low", "float_keras.top1_high"]
    assert {"int8_tflite.drop_points", "w4w8_qdq_onnx.int4_share_pct", "activation_ram_bytes", "weights_flash_bytes",
            "macc", "board_estimated_ms", "best_val_accuracy", "epochs_run"} <= set(paths)
    # Numbers only: a string or a bool would be a column that says nothing to compare.
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat(figures))
    # The figures keep their source's names and values.
    profile = committed("profile")
    assert figures["activation_ram_bytes"] == profile["int8_tflite"]["activation_ram"]["head_bytes"]
    assert figures["board_estimated_ms"] == profile["boards"][profile["board"]]["estimated_ms"]


def flat(document) -> list:
    return [x for v in document.values() for x in flat(v)] if isinstance(document, dict) else [document]


def test_without_int4_model_the_headline_has_no_w4w8_column():
    evaluate = evaluate_document({"float_keras": 20, "float_onnx": 20, "int8_tflite": 19, "int8_qdq_onnx": 18}, 45)
    figures = headline(evaluate, committed("profile"), committed("quantize"), committed("train"))
    assert "w4w8_qdq_onnx" not in figures and leaf_count(figures) <= MAX_COLUMNS


def test_every_declared_metrics_file_present_in_the_workspace_fits():
    # Counts the files a `dvc repro` left here: after one with this code, the real headline.
    for path in declared_metrics():
        # Committed (cache: false): a missing file would make this check pass on nothing.
        assert (ROOT / path).is_file(), path
        assert leaf_count(json.loads((ROOT / path).read_text(encoding="utf-8"))) <= MAX_COLUMNS, path


def test_the_model_card_stage_writes_the_headline_and_shows_throughput(tmp_path):
    evaluate = evaluate_document({"float_keras": 18, "float_onnx": 18, "int8_tflite": 17, "int8_qdq_onnx": 16}, 45)
    throughput = {"split": "test", "images": 45, "batch_size": 32,
                  **{name: {"runtime": f"rt-{name}", "images_per_s": 100.0 + i}
                     for i, name in enumerate(["float_keras", "float_onnx", "int8_tflite", "int8_qdq_onnx"])}}
    meta = {"resolution": [128, 128], "num_classes": 5, "classes": list("abcde"), "parameter_count": 1,
            "source": {"dataset": "flowers_mini", "path": "data/sample"},
            "files": {"tflite": "m.tflite", "qdq": "m.onnx"},
            "params": {"quantize": {"calibration_images": 200, "tflite": {"granularity": "per_channel"}}},
            "preprocessing": {"resize": "nearest"},
            "int8_tflite": {"input": {"shape": [1, 128, 128, 3], "dtype": "uint8"},
                            "output": {"shape": [1, 5], "dtype": "float32"}}}
    docs = {"metadata": meta, "validate": committed("validate"), "quantize": committed("quantize"),
            "profile": committed("profile"), "evaluate": evaluate, "train": committed("train"),
            "throughput": throughput}
    for name, doc in docs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    paths = {name: tmp_path / f"{name}.json" for name in docs}
    inputs = {n: paths[n] for n in ("metadata", "validate", "quantize", "profile", "evaluate", "train")}
    text = model_card.run(**inputs, out=tmp_path / "card.md", throughput=paths["throughput"],
                          headline_out=tmp_path / "headline.json")
    written = json.loads((tmp_path / "headline.json").read_text())
    assert written == json.loads(json.dumps(headline(evaluate, docs["profile"], docs["quantize"], docs["train"])))
    assert "rt-int8_tflite" in text and "Int8 TFLite (LiteRT) 102.0 img/s" in text


def test_the_card_puts_the_int4_search_promise_beside_what_held_out_images_showed():
    from mcuvision.report.model_card import int4_promise

    quantize = {"w4w8_qdq_onnx": {"int4_share_pct": 31.25, "search_lost_points": 1.2, "tolerance_points": 1.5,
                                  "search_views": 560, "check_images": 120, "check_drop_points": 0.83}}
    evaluate = {"split": "test", "w4w8_qdq_onnx": {"n": 418, "drop_vs_int8_points": -1.67,
                                                   "mcnemar_vs_int8": {"b": 11, "c": 4, "p_value": 0.118}}}
    text = "\n".join(int4_promise(quantize, evaluate))
    assert "31.2% of the weights in int4" in text
    assert "| search (promised) | 560 views" in text and "at most 1.20 points lost (budget 1.5)" in text
    assert "| check | 120 other validation images, never seen by the search | -0.83 points |" in text
    assert "| evaluate (test) | 418 images that chose nothing | -1.67 points | p=0.118 (b=11, c=4) |" in text
    assert int4_promise({}, evaluate) == [] and int4_promise(quantize, {"split": "test"}) == []
