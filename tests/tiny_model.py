"""Test helpers: ST EfficientNet LC v1 trained for seconds on synthetic images by the train stage and
quantized by the quantize stage; and one such model, quantized with every option on and exported,
built once per test session for the test files that only read it."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pandas as pd
from filelock import FileLock

from mcuvision.config.model import ModelConfig
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.config.train import TrainConfig
from mcuvision.data.synthetic import make_dataset


def tiny_run(tmp: Path, params: dict, classes: int, per_class: int, val_per_class: int, res: int,
             epochs: int) -> dict:
    """Synthetic data (64x64 images whose class is their hue), a manifest whose last `val_per_class`
    images of each class are val, the rest train, and a model trained on it by the train stage, all
    under `tmp`. Returns {"raw", "manifest", "model" (ModelConfig), "params"}."""
    from stages import train as train_stage

    raw = tmp / "raw"
    make_dataset(raw, classes, per_class, 64, seed=11)
    (raw / "SOURCE.json").write_text(json.dumps({"dataset": "synthetic", "kind": "synthetic"}))
    rows = [{"path": f"class_{c:03d}/{n:04d}.jpg", "label": f"class_{c:03d}", "class_index": c,
             "split": "val" if n >= per_class - val_per_class else "train"}
            for c in range(classes) for n in range(per_class)]
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    params["model"]["res"] = res
    params["train"].update(epochs=epochs, batch_size=16, learning_rate=0.003, warmup_epochs=0, label_smoothing=0.0)
    params["quantize"]["calibration_images"] = 64
    model_config = ModelConfig.from_params(params)
    train_stage.run(TrainConfig.from_params(params), model_config, 1, manifest_path=tmp / "manifest.csv", raw=raw,
                    model_out=tmp / "float.keras", metrics_out=tmp / "train.json", live_dir=tmp / "live",
                    backup_root=tmp / "backup")
    return {"raw": raw, "manifest": tmp / "manifest.csv", "model": model_config, "params": params}


def quantize_into(tmp: Path, run: dict, reports: bool = False, **overrides) -> dict:
    """The quantize stage on `tmp`/float.keras of `run` (tiny_run's), its outputs into `tmp`; `overrides`
    as section__key=value set quantize.section.key, and `reports` writes the per-layer error report
    to `tmp`/reports. Returns {"metrics", "tflite", "onnx", "qdq", "w4w8"}."""
    from stages import quantize

    params = copy.deepcopy(run["params"])  # a module-scoped run stays as trained
    for key, value in overrides.items():
        section, name = key.split("__")
        params["quantize"][section][name] = value
    paths = {k: tmp / v for k, v in (("tflite", "int8.tflite"), ("onnx", "float.onnx"), ("qdq", "qdq.onnx"))}
    paths["w4w8"] = tmp / "qdq_w4w8"
    metrics = quantize.run(QuantizeConfig.from_params(params), run["model"], 1, keras_path=tmp / "float.keras",
                           manifest_path=run["manifest"], raw=run["raw"], tflite_out=paths["tflite"],
                           onnx_out=paths["onnx"], qdq_out=paths["qdq"], w4w8_out=paths["w4w8"],
                           metrics_out=tmp / "quantize.json", reports_out=tmp / "reports" if reports else None)
    return {"metrics": metrics, **paths}


# The shared model: 3 classes, 48 images each, the last 16 held out, every other one of them made test
# (8 val and 8 test a class); trained 6 epochs at 32x32; quantized with the per-layer error report on
# 20 validation images and the int4/int8 search (at most 20 evaluations); exported with 6 golden images.
SHARED = {"classes": 3, "per_class": 48, "val_per_class": 16, "res": 32, "epochs": 6}
SHARED_LAYER_ERROR_IMAGES, SHARED_GOLDEN_IMAGES, SHARED_MAX_EVALUATIONS = 20, 6, 20


def _build_shared(folder: Path, params: dict) -> None:
    from stages import export

    run = tiny_run(folder, params, **SHARED)
    manifest = pd.read_csv(run["manifest"])
    held = manifest.index[manifest["split"] == "val"]
    manifest.loc[held[::2], "split"] = "test"
    manifest.to_csv(run["manifest"], index=False)
    run["params"]["quantize"]["layer_error_images"] = SHARED_LAYER_ERROR_IMAGES
    run["params"]["quantize"]["w4w8"].update(enabled=True, max_evaluations=SHARED_MAX_EVALUATIONS)
    out = quantize_into(folder, run, reports=True)
    export.run(run["model"], QuantizeConfig.from_params(run["params"]), 1, keras_path=folder / "float.keras",
               tflite_path=out["tflite"], onnx_path=out["onnx"], qdq_path=out["qdq"], w4w8_dir=out["w4w8"],
               train_metrics=folder / "train.json", source_record=run["raw"] / "SOURCE.json",
               manifest_path=run["manifest"], raw=run["raw"], out=folder / "artifacts",
               golden_images=SHARED_GOLDEN_IMAGES)
    (folder / "params.json").write_text(json.dumps(run["params"]))


def shared_model(tmp_path_factory, base_params: dict) -> dict:
    """The shared model (see SHARED), built by the first test that asks and read by the others, in
    this process or another pytest-xdist worker of the same session: the workers' temporary folders
    share a parent, and a file lock there makes one build while the others wait. Tests must not
    write into it. Returns tiny_run's dict plus quantize_into's paths, "metrics" (quantize's),
    "folder" and "artifacts"."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent
    else:  # without xdist the parent is shared by earlier sessions: stay in this one's folder
        root = tmp_path_factory.getbasetemp()
    folder = root / "shared_tiny_model"
    with FileLock(str(root / "shared_tiny_model.lock")):
        if not (folder / "params.json").is_file():  # written last: a build cut short is redone
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            _build_shared(folder, copy.deepcopy(base_params))
    params = json.loads((folder / "params.json").read_text())
    paths = {k: folder / v for k, v in (("tflite", "int8.tflite"), ("onnx", "float.onnx"), ("qdq", "qdq.onnx"),
                                        ("w4w8", "qdq_w4w8"))}
    return {"folder": folder, "raw": folder / "raw", "manifest": folder / "manifest.csv", "params": params,
            "model": ModelConfig.from_params(params), "artifacts": folder / "artifacts",
            "metrics": json.loads((folder / "quantize.json").read_text()), **paths}
