"""evaluate: every model format on the held-out test split -> metrics/evaluate.json + confusion plots.

1. Decode and resize the test images once (validation if the dataset has no test split); every
   format sees the same uint8 pixels.
2. Run each model the pipeline made (float Keras, float ONNX, int8 TFLite on LiteRT, int8 QDQ
   ONNX and, when quantize made one, the int4/int8 QDQ ONNX on onnxruntime), batched, timed.
3. Score: top-1 (top-k from 10 classes), macro and per-class precision/recall/F1, the drop
   against float in points, and top-1 agreement with the float model.
4. Write metrics/evaluate.json (keys like `int8_tflite.top1`, stable for `dvc metrics diff`) and
   reports/evaluate/: confusion/<format>.csv (DVC's confusion plot), confusion_<format>.png,
   per_class.csv.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mcuvision import evaluation  # noqa: E402
from mcuvision.atomic import atomic_dir, write_json  # noqa: E402
from mcuvision.config.base import ConfigError, load_params  # noqa: E402
from mcuvision.config.evaluate import EvaluateConfig  # noqa: E402
from mcuvision.config.model import ModelConfig  # noqa: E402
from mcuvision.data import decode_all, read_split  # noqa: E402
from mcuvision.formats import FORMATS, QUANTIZED, W4W8_MODEL_FILE, load_predictor  # noqa: E402



def held_out(manifest: pd.DataFrame, raw: Path, wanted: str):
    split = read_split(manifest, raw, wanted)
    if len(split) == 0 and wanted == "test":
        print("evaluate: no test split in this dataset (dataset.split.test_fraction 0?): scoring validation",
              flush=True)
        wanted, split = "val", read_split(manifest, raw, "val")
    if len(split) == 0:
        raise ConfigError(f"the {wanted} split has no images: nothing to evaluate (see dataset.split)")
    return wanted, split


def model_files(keras: Path, onnx: Path, tflite: Path, qdq: Path, w4w8_dir: Path) -> dict[str, Path]:
    files = {"float_keras": keras, "float_onnx": onnx, "int8_tflite": tflite, "int8_qdq_onnx": qdq}
    if (w4w8_dir / W4W8_MODEL_FILE).is_file():
        files["w4w8_qdq_onnx"] = w4w8_dir / W4W8_MODEL_FILE
    return files


def predict_all(files: dict[str, Path], images: np.ndarray, batch: int) -> tuple[dict, dict]:
    probs, speed = {}, {}
    for name, path in files.items():
        predictor = load_predictor(path, batch)
        if predictor.res != images.shape[1]:
            raise ConfigError(f"{path} takes {predictor.res}px images but model.res is {images.shape[1]}")
        predictor.predict(images[:1])  # one-time graph tracing / session set-up is not throughput
        start = time.perf_counter()
        probs[name] = predictor.predict(images)
        elapsed = time.perf_counter() - start
        speed[name] = {"runtime": predictor.runtime,
                       "images_per_s": round(len(images) / elapsed, 1) if elapsed > 0 else None}
        print(f"evaluate: {FORMATS[name]}: {speed[name]['images_per_s']} img/s", flush=True)
    return probs, speed


def score_all(probs: dict, labels: np.ndarray, classes: list[str], top_k: int) -> dict:
    result = {name: {k: round(v, 6) for k, v in evaluation.scores(p, labels, classes, top_k).items()}
              for name, p in probs.items()}
    float_top1 = result["float_keras"]["top1"]
    for name in probs:
        if name != "float_keras":
            same = probs[name].argmax(1) == probs["float_keras"].argmax(1)
            result[name]["agreement_with_float"] = round(float(np.mean(same)), 6)  # held_out is never empty
        if name in QUANTIZED:
            result[name]["drop_points"] = round(100 * (result[name]["top1"] - float_top1), 4)
    if "w4w8_qdq_onnx" in result:
        result["w4w8_qdq_onnx"]["drop_vs_int8_points"] = round(
            100 * (result["w4w8_qdq_onnx"]["top1"] - result["int8_qdq_onnx"]["top1"]), 4)
    return result


def write_reports(out: Path, probs: dict, labels: np.ndarray, classes: list[str]) -> None:
    with atomic_dir(out) as tmp:
        (tmp / "confusion").mkdir()
        tables = []
        for name, p in probs.items():
            predicted = p.argmax(axis=1)
            evaluation.confusion_rows(predicted, labels, classes).to_csv(tmp / "confusion" / f"{name}.csv", index=False)
            evaluation.plot_confusion(evaluation.confusion(predicted, labels, classes), classes,
                                      f"{FORMATS[name]}: confusion", tmp / f"confusion_{name}.png")
            tables.append(evaluation.per_class(predicted, labels, classes).assign(format=name))
        per_class = pd.concat(tables)[["format", "class", "precision", "recall", "f1", "support"]]
        per_class.round(4).to_csv(tmp / "per_class.csv", index=False)


def run(config: EvaluateConfig, model_config: ModelConfig, files: dict[str, Path], manifest_path: Path,
        raw: Path, classes: list[str], metrics_out: Path, reports_out: Path) -> dict:
    manifest = pd.read_csv(manifest_path)
    split_name, split = held_out(manifest, raw, config.split)
    images = decode_all(split.paths, model_config.res, model_config.interpolation)
    print(f"evaluate: {len(images)} {split_name} images, {len(files)} formats", flush=True)
    probs, speed = predict_all(files, images, config.batch_size)
    result = score_all(probs, split.labels, classes, config.top_k)
    metrics = {"split": split_name, "images": int(len(images)), "num_classes": len(classes),
               **{name: {**result[name], **speed[name]} for name in probs}}
    write_reports(reports_out, probs, split.labels, classes)
    write_json(metrics_out, metrics)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description="Score every model format on the held-out split.")
    for name in ("keras", "onnx", "tflite", "qdq", "w4w8", "manifest", "raw", "train_metrics", "metrics", "reports"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        classes = json.loads(args.train_metrics.read_text(encoding="utf-8"))["classes"]
        files = model_files(args.keras, args.onnx, args.tflite, args.qdq, args.w4w8)
        metrics = run(EvaluateConfig.from_params(params), ModelConfig.from_params(params), files,
                      args.manifest, args.raw, classes, args.metrics, args.reports)
    except ConfigError as error:
        sys.exit(f"evaluate failed: {error}")
    print("evaluate: " + "; ".join(f"{FORMATS[n]} top-1 {metrics[n]['top1']:.4f}" for n in FORMATS if n in metrics))


if __name__ == "__main__":
    main()
