"""evaluate: every model format on the held-out test split -> metrics/evaluate.json + confusion plots.

1. Decode and resize the test images once (validation if the dataset has no test split); every
   format sees the same uint8 pixels.
2. Run each model the pipeline made (float Keras, float ONNX, int8 TFLite on LiteRT, int8 QDQ
   ONNX and, when quantize made one, the int4/int8 QDQ ONNX on onnxruntime), batched, timed.
3. Score: top-1 with its 95% Wilson interval and n (top-k from 10 classes), macro and per-class
   precision/recall/F1 (recall with its interval), the drop against float in points, and, paired on
   the same images, agreement with the float model (with its interval) and the exact McNemar test
   (mcuvision/report/stats.py says why these two and cites them).
4. Write metrics/evaluate.json (keys like `int8_tflite.top1`, the same names in the model card and
   the headline metrics) and reports/evaluate/: confusion/<format>.csv (DVC's confusion plot),
   confusion_<format>.png, per_class.csv, predictions.csv (every image, every format: anyone can
   recompute any figure) and throughput.json (images/s on this host: it moves with the machine's
   load, so it is kept out of the accuracy figures).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mcuvision.atomic import atomic_dir, write_json
from mcuvision.config.base import ConfigError, load_params
from mcuvision.config.evaluate import EvaluateConfig
from mcuvision.config.model import ModelConfig
from mcuvision.data.input_pipeline import decode_all, read_split
from mcuvision.errors import PipelineError, fail, require_inputs
from mcuvision.formats import FORMATS, QUANTIZED, W4W8_MODEL_FILE
from mcuvision.report import evaluation
from mcuvision.report.stats import INTERVAL, PAIRED_TEST, interval_text
from mcuvision.runtime.runners import load_predictor

PREDICTIONS_FILE, THROUGHPUT_FILE = "predictions.csv", "throughput.json"



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


def _rounded(figures: dict) -> dict:
    # Fractions to 6 decimals keep the JSON stable; a p-value keeps 6 significant digits (it can be 1e-9).
    return {k: _rounded(v) if isinstance(v, dict) else float(f"{v:.6g}") if k == "p_value"
            else round(v, 6) for k, v in figures.items()}


def score_all(probs: dict, labels: np.ndarray, classes: list[str], top_k: int) -> dict:
    """Per format: scores (evaluation.scores); every other format paired with float on the same images
    (agreement_with_float and its interval, mcnemar_vs_float); quantized ones their drop in points;
    the int4/int8 model also against int8 QDQ, the model it replaces (drop_vs_int8_points, mcnemar_vs_int8)."""
    result = {name: _rounded(evaluation.scores(p, labels, classes, top_k)) for name, p in probs.items()}
    predicted = {name: p.argmax(axis=1) for name, p in probs.items()}
    float_top1 = result["float_keras"]["top1"]
    for name in probs:
        if name != "float_keras":
            vs = _rounded(evaluation.paired(predicted["float_keras"], predicted[name], labels))
            result[name].update(agreement_with_float=vs["agreement"], agreement_with_float_low=vs["agreement_low"],
                                agreement_with_float_high=vs["agreement_high"], mcnemar_vs_float=vs["mcnemar"])
        if name in QUANTIZED:
            result[name]["drop_points"] = round(100 * (result[name]["top1"] - float_top1), 4)
    if "w4w8_qdq_onnx" in result:
        w4w8 = result["w4w8_qdq_onnx"]
        w4w8["drop_vs_int8_points"] = round(100 * (w4w8["top1"] - result["int8_qdq_onnx"]["top1"]), 4)
        w4w8["mcnemar_vs_int8"] = _rounded(
            evaluation.paired(predicted["int8_qdq_onnx"], predicted["w4w8_qdq_onnx"], labels)["mcnemar"])
    return result


def predictions_table(paths: list[str], labels: np.ndarray, probs: dict, classes: list[str]) -> pd.DataFrame:
    """One row per image: path (as in the manifest), label, then per format `<format>_predicted` (class
    name) and `<format>_confidence` (the probability it gives that class, 0..1), formats in `probs` order."""
    names = np.asarray(classes, dtype=object)
    table = {"path": paths, "label": names[labels]}
    for name, p in probs.items():
        table[f"{name}_predicted"] = names[p.argmax(axis=1)]
        table[f"{name}_confidence"] = p.max(axis=1)
    return pd.DataFrame(table)


def write_reports(out: Path, probs: dict, labels: np.ndarray, classes: list[str], paths: list[str],
                  throughput: dict) -> None:
    with atomic_dir(out) as tmp:
        predictions_table(paths, labels, probs, classes).to_csv(tmp / PREDICTIONS_FILE, index=False,
                                                                float_format="%.6f")
        write_json(tmp / THROUGHPUT_FILE, throughput)
        (tmp / "confusion").mkdir()
        tables = []
        for name, p in probs.items():
            predicted = p.argmax(axis=1)
            evaluation.confusion_rows(predicted, labels, classes).to_csv(tmp / "confusion" / f"{name}.csv", index=False)
            evaluation.plot_confusion(evaluation.confusion(predicted, labels, classes), classes,
                                      f"{FORMATS[name]}: confusion", tmp / f"confusion_{name}.png")
            tables.append(evaluation.per_class(predicted, labels, classes).assign(format=name))
        per_class = pd.concat(tables)[["format", "class", "precision", "recall", "recall_low", "recall_high",
                                       "f1", "support"]]
        per_class.round(4).to_csv(tmp / "per_class.csv", index=False)


def run(config: EvaluateConfig, model_config: ModelConfig, files: dict[str, Path], classes: list[str], *,
        manifest_path: Path, raw: Path, metrics_out: Path, reports_out: Path) -> dict:
    require_inputs(*files.values(), manifest_path, raw)
    manifest = pd.read_csv(manifest_path)
    split_name, split = held_out(manifest, raw, config.split)
    images = decode_all(split.paths, model_config.res, model_config.interpolation, split.orientations)
    print(f"evaluate: {len(images)} {split_name} images, {len(files)} formats", flush=True)
    probs, speed = predict_all(files, images, config.batch_size)
    result = score_all(probs, split.labels, classes, config.top_k)
    metrics = {"split": split_name, "images": int(len(images)), "num_classes": len(classes),
               "interval": INTERVAL, "paired_test": PAIRED_TEST, **result}
    throughput = {"split": split_name, "images": int(len(images)), "batch_size": config.batch_size, **speed}
    # Paths as the manifest has them (relative to data/raw): the same image lines up across commits.
    paths = [Path(p).relative_to(raw).as_posix() for p in split.paths]
    write_reports(reports_out, probs, split.labels, classes, paths, throughput)
    write_json(metrics_out, metrics)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description="Score every model format on the held-out split.")
    for name in ("keras", "onnx", "tflite", "qdq", "w4w8", "manifest", "raw", "train_metrics", "metrics", "reports"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        require_inputs(args.train_metrics)
        classes = json.loads(args.train_metrics.read_text(encoding="utf-8"))["classes"]
        files = model_files(args.keras, args.onnx, args.tflite, args.qdq, args.w4w8)
        metrics = run(EvaluateConfig.from_params(params), ModelConfig.from_params(params), files, classes,
                      manifest_path=args.manifest, raw=args.raw, metrics_out=args.metrics, reports_out=args.reports)
    except PipelineError as error:
        fail("evaluate", error)
    shown = {n: metrics[n] for n in FORMATS if n in metrics}
    print("evaluate: top-1 % (95% interval): " + "; ".join(
        f"{FORMATS[n]} {interval_text(m['top1'], m['top1_low'], m['top1_high'], m['n'])}" for n, m in shown.items()))


if __name__ == "__main__":
    main()
