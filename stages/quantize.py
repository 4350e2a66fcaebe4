"""quantize: float .keras -> int8 TFLite, float ONNX, int8 QDQ ONNX and, when enabled, the mixed
int4/int8 QDQ ONNX, + metrics/quantize.json.

1. Draw the calibration images from the train split (seeded), decode them once.
2. TFLite full-integer (uint8 in by default), refusing any hidden float op.
3. Float ONNX (tf2onnx), then onnxruntime static QDQ on the same calibration images.
4. On the validation split, measure how often each quantized model agrees with the float one.
5. `quantize.w4w8.enabled`: search which QDQ weights can be int4 (mcuvision/convert/int4_search.py)
   on the validation split, which the model never trained on: most of it scores the candidates
   (each image as is and, with `mirror`, mirrored), the rest checks the result; the test split stays
   untouched for the evaluate stage. The --w4w8 folder is written either way (DVC needs the
   output): qdq_w4w8.onnx + search.json, or only search.json `{"enabled": false}`.
6. `quantize.layer_error_images` validation images: the int8 TFLite model's error per layer (SQNR, RMSE
   in quantization steps) by TensorFlow Lite's quantization debugger, and the worst layers' share of the
   output error (mcuvision/convert/layer_error.py), to --reports (CSV and plot) and the metrics.
"""
from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from mcuvision.atomic import atomic_dir, atomic_path, write_json
from mcuvision.config.base import ConfigError, load_params, seed_of
from mcuvision.config.model import ModelConfig
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import int4_search, layer_error, quantization
from mcuvision.convert.onnx_graph import weights_bytes as onnx_weights_bytes
from mcuvision.convert.quantization import QuantizationError, check_int8, float_onnx, int8_tflite, qdq_onnx
from mcuvision.data.input_pipeline import Split, decode_all, read_split
from mcuvision.errors import REPRO_HINT, PipelineError, fail, require_inputs
from mcuvision.formats import W4W8_MODEL_FILE, W4W8_SEARCH_FILE
from mcuvision.model.layers import Clip  # noqa: F401  (registers the layer for loading)
from mcuvision.runtime.runners import OnnxRunner, TfliteRunner, UnsupportedModel, agreement, keras_predict


def load_float_model(path: Path) -> keras.Model:
    """The float model train wrote; UnsupportedModel naming the file when Keras cannot load it (a
    damaged or truncated file, or one that is no Keras model)."""
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of it
        raise UnsupportedModel(f"{path}: not a .keras file (no zip archive: damaged or cut short?); {REPRO_HINT}")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile's and h5py's errors...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsupportedModel(f"{path}: not a model Keras can load ({reason}); {REPRO_HINT}") from error


def _subset(split: Split, indices) -> Split:
    indices = list(indices)
    return Split([split.paths[i] for i in indices], split.labels[indices],
                 split.orientations[indices] if split.orientations is not None else None)


def calibration_subset(manifest: pd.DataFrame, raw: Path, count: int, seed: int) -> Split:
    """`count` train images drawn with RandomState(seed), in manifest order (all when fewer), with the
    manifest's orientations."""
    train = read_split(manifest, raw, "train")
    if count >= len(train):
        return train
    return _subset(train, sorted(np.random.RandomState(seed).choice(len(train), size=count, replace=False)))


def search_and_check(count: int, check_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `count` validation images, (search, check), drawn with RandomState(seed + 1): the
    check holds round(count x check_fraction) of them (at least one when count > 1), each part in
    manifest order. The two never overlap, so the check sees images the search could not fit."""
    order = np.random.RandomState(seed + 1).permutation(count)
    checked = min(count - 1, max(1, round(count * check_fraction))) if count > 1 else 0
    return np.sort(order[checked:]), np.sort(order[:checked])


def record_search_off(out: Path) -> None:
    """The --w4w8 folder is an output either way: with the search off it holds only a record that
    says so (a model left from an enabled run is removed)."""
    with atomic_dir(out) as tmp:
        write_json(tmp / W4W8_SEARCH_FILE, {"enabled": False})


def w4w8_search(config: QuantizeConfig, float_model, qdq_model, validation: np.ndarray, labels: np.ndarray,
                qdq_probs: np.ndarray, seed: int, out: Path) -> dict:
    """Search the int4/int8 model on the `validation` images (uint8 (n, res, res, 3)) with class `labels`
    and the int8 QDQ model's probabilities on them, write the --w4w8 folder (model and search record)
    and return the record."""
    searched, checked = search_and_check(len(labels), config.w4w8.check_fraction, seed)
    if not len(checked):
        raise ConfigError("quantize.w4w8.enabled=true needs at least 2 validation images: one to search on, "
                          "one to check the result on")
    images, view_labels, int8_probs = validation[searched], labels[searched], qdq_probs[searched]
    if config.w4w8.mirror:  # mirrored left-right: views with the int8 model's own outputs on them
        mirrored = images[:, :, ::-1]
        images, view_labels = np.concatenate([images, mirrored]), np.tile(view_labels, 2)
        int8_probs = np.concatenate([int8_probs, predict(qdq_model, mirrored)])
    search_views = int4_search.Scored(images, view_labels, int8_probs)
    check = int4_search.Scored(validation[checked], labels[checked], qdq_probs[checked])
    print(f"quantize: int4/int8 search on {len(search_views)} views of {len(searched)} validation images, "
          f"checked on {len(checked)} others", flush=True)
    try:
        found = int4_search.w4w8(float_model, qdq_model, predict, search_views, check, config.w4w8.tolerance_points,
                                 config.w4w8.max_evaluations, config.w4w8.sensitivity_images)
    except int4_search.SurgeryError as error:  # the converter's layout, as QuantizationError says
        raise QuantizationError(str(error)) from error
    record = {"enabled": True, "split": "val", "search_images": int(len(searched)),
              "search_views": int(len(search_views)), "check_images": int(len(checked)),
              "tolerance_points": config.w4w8.tolerance_points, "search_lost_points": found.search_lost_points,
              "check_drop_points": found.check_drop_points, "check_int8_top1": found.check_int8_top1,
              "check_top1": found.check_top1, "stepped_back": found.stepped_back,
              "int4_share_pct": found.int4_share_pct, "int8_share_pct": found.int8_share_pct,
              "activations_int8_pct": 100, "weights_bytes": found.weights_bytes,
              "int8_weights_bytes": found.int8_weights_bytes, "opset": found.opset,
              "int4_tensors": list(found.int4_tensors), "evaluations": found.evaluations, "trace": found.trace,
              "sensitivity_kl": found.sensitivity}
    with atomic_dir(out) as tmp:
        (tmp / W4W8_MODEL_FILE).write_bytes(found.model.SerializeToString())
        write_json(tmp / W4W8_SEARCH_FILE, record)
    return record


def predict(model, images: np.ndarray) -> np.ndarray:
    """A QDQ ONNX model's probabilities on uint8 images, its QDQ pairs run as written (not fused)."""
    return OnnxRunner(model.SerializeToString(), exact_qdq=True).predict(images)


def layer_error_report(config: QuantizeConfig, model, calibration: np.ndarray, validation: np.ndarray,
                       reference: np.ndarray, deployed: bytes, seed: int, out: Path) -> dict:
    """The per-layer error of the int8 model on `config.layer_error_images` of the `validation` images (uint8
    (n, H, W, 3), drawn with RandomState(seed + 2); all when fewer), `reference` the float model's
    probabilities on them: CSV and plot into the `out` folder, and the record for the metrics. With
    layer_error_images 0, `out` holds only the CSV's header and the record says so."""
    count = min(config.layer_error_images, len(validation))
    with atomic_dir(out) as tmp:
        if not count:
            pd.DataFrame(columns=layer_error.COLUMNS).to_csv(tmp / layer_error.CSV_FILE, index=False)
            return {"images": 0}
        chosen = sorted(np.random.RandomState(seed + 2).choice(len(validation), size=count, replace=False))
        print(f"quantize: per-layer int8 error on {count} validation images (TensorFlow Lite's quantization "
              "debugger)", flush=True)
        converter = quantization.int8_converter(model, calibration, config, float_io=True)
        errors = layer_error.measure(converter, validation[chosen], reference[chosen],
                                     {layer.name for layer in model.layers}, deployed)
        layer_error.write_reports(errors, tmp)
    if not errors.matches_deployed:
        print("quantize: warning: the debugged model's int8 scales differ from models/int8.tflite's: the per-layer "
              "report describes a sibling of the deployed model", flush=True)
    return layer_error.record(errors)


def run(config: QuantizeConfig, model_config: ModelConfig, seed: int, *, keras_path: Path, manifest_path: Path,
        raw: Path, tflite_out: Path, onnx_out: Path, qdq_out: Path, w4w8_out: Path, metrics_out: Path,
        reports_out: Path | None = None) -> dict:
    """Write the models, the --w4w8 folder, the metrics and, with `reports_out`, the per-layer error report
    (see the module docstring); returns the metrics."""
    require_inputs(keras_path, manifest_path, raw)
    model = load_float_model(keras_path)
    manifest = pd.read_csv(manifest_path)
    res, interpolation = model_config.res, model_config.interpolation
    calibration_split = calibration_subset(manifest, raw, config.calibration_images, seed)
    calibration = decode_all(calibration_split.paths, res, interpolation, calibration_split.orientations)
    print(f"quantize: {len(calibration)} calibration images from the train split", flush=True)

    tflite = int8_tflite(model, calibration, config)
    tflite_facts = check_int8(tflite, config)
    print("quantize: int8 TFLite done; converting to ONNX", flush=True)
    float_model = float_onnx(model, res, config.onnx.opset, config.onnx.layout)
    qdq_model = qdq_onnx(float_model, calibration, config)
    print("quantize: QDQ ONNX done; measuring agreement on the validation split", flush=True)
    for path, payload in ((tflite_out, tflite), (onnx_out, float_model.SerializeToString()),
                          (qdq_out, qdq_model.SerializeToString())):
        with atomic_path(path) as tmp:
            tmp.write_bytes(payload)

    val_split = read_split(manifest, raw, "val")
    validation = decode_all(val_split.paths, res, interpolation, val_split.orientations)
    reference = keras_predict(model, validation)
    float_onnx_probs = OnnxRunner(str(onnx_out)).predict(validation)
    qdq_probs = OnnxRunner(str(qdq_out), exact_qdq=True).predict(validation)
    metrics = {
        "calibration_images": int(len(calibration)), "agreement_images": int(len(validation)),
        "int8_tflite": {"file_bytes": tflite_out.stat().st_size, **tflite_facts,
                        "agreement_with_float": agreement(reference, TfliteRunner(tflite).predict(validation))},
        "float_onnx": {"file_bytes": onnx_out.stat().st_size, "weights_bytes": onnx_weights_bytes(float_model),
                       "opset": config.onnx.opset, "layout": config.onnx.layout,
                       "max_abs_diff_vs_keras": (float(np.abs(float_onnx_probs - reference).max())
                                                 if len(validation) else None)},
        "int8_qdq_onnx": {"file_bytes": qdq_out.stat().st_size, "weights_bytes": onnx_weights_bytes(qdq_model),
                          "agreement_with_float": agreement(reference, qdq_probs),
                          "agreement_runtime": ("onnxruntime, QDQ not fused into x86 int8 kernels "
                                                "(see mcuvision/runtime/runners.py)")},
    }
    if reports_out is not None:
        metrics["layer_error"] = layer_error_report(config, model, calibration, validation, reference, tflite, seed,
                                                    reports_out)
    if config.w4w8.enabled:
        search = w4w8_search(config, float_model, qdq_model, validation, val_split.labels, qdq_probs, seed, w4w8_out)
        metrics["w4w8_qdq_onnx"] = {key: search[key] for key in (
            "int4_share_pct", "int8_share_pct", "weights_bytes", "int8_weights_bytes", "search_lost_points",
            "check_drop_points", "tolerance_points", "evaluations", "search_views", "check_images")}
    else:
        record_search_off(w4w8_out)
    write_json(metrics_out, metrics)
    return metrics


def summary(metrics: dict) -> str:
    t, q = metrics["int8_tflite"], metrics["int8_qdq_onnx"]
    lines = [f"quantize: int8 TFLite {t['file_bytes']} B (weights {t['weights_bytes']} B), agreement "
             f"{t['agreement_with_float']:.3f}; QDQ ONNX {q['file_bytes']} B, "
             f"agreement {q['agreement_with_float']:.3f}"]
    if "w4w8_qdq_onnx" in metrics:
        w = metrics["w4w8_qdq_onnx"]
        lines.append(f"quantize: int4/int8 QDQ ONNX: int4 {w['int4_share_pct']:.1f}% of weights, weights "
                     f"{w['weights_bytes']} B vs int8 {w['int8_weights_bytes']} B; search: "
                     f"{w['search_lost_points']:.2f} points lost on {w['search_views']} views (budget "
                     f"{w['tolerance_points']:g}), check: top-1 drop {w['check_drop_points']:+.2f} points on "
                     f"{w['check_images']} images it never saw")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Quantize the float model to int8 TFLite, QDQ ONNX and, "
                                                 "when quantize.w4w8.enabled, int4/int8 QDQ ONNX.")
    for name in ("model", "manifest", "raw", "tflite", "onnx", "qdq", "w4w8", "metrics", "reports"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        config, model_config = QuantizeConfig.from_params(params), ModelConfig.from_params(params)
        seed = seed_of(params)
        metrics = run(config, model_config, seed, keras_path=args.model, manifest_path=args.manifest, raw=args.raw,
                      tflite_out=args.tflite, onnx_out=args.onnx, qdq_out=args.qdq, w4w8_out=args.w4w8,
                      metrics_out=args.metrics, reports_out=args.reports)
    except PipelineError as error:
        fail("quantize", error)
    print(summary(metrics))


if __name__ == "__main__":
    main()
