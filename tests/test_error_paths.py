"""Error paths no other test reaches, through the stages as a user runs them: a real process with
dvc.yaml's command, in a folder holding params.yaml and what the earlier stages wrote. A user's
mistake is exit status 2 and one line, `<stage> failed: <sentence>`, never a traceback.

- train with `train.init_from`: a checkpoint of this architecture loads (its frozen layers come
  out unchanged) and trains; a missing one, and one of another depth, are one sentence each;
- evaluate on a split without images, and with a model made at another model.res than params ask;
- model_card on a record that is missing, is not JSON, is not a JSON object, or lacks a key;
- quantize and export on a float model that is cut short, or a zip archive without its weights;
- quantize's check of the int8 TFLite model (check_int8): the converter settings the stage uses
  never leave a float tensor between int8 ops nor another input type, so models converted here
  with other settings stand in for a converter that would.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, stage_command, stage_env
from mcuvision.compose import compose

pytestmark = pytest.mark.slow
# 32x32, one block a stage (depth 0.1), one epoch: every stage here runs in seconds.
SMALL = ["dataset=synthetic", "dataset.source.images_per_class=12", "dataset.source.image_size=48",
         "model.res=32", "model.depth=0.1", "train.epochs=1", "train.batch_size=8", "train.warmup_epochs=0",
         "train.precise_bn_images=16"]
CLASSES = 4  # the synthetic dataset's default


def stage(name: str, folder: Path) -> subprocess.CompletedProcess:
    """Stage `name` as DVC runs it (dvc.yaml's command), in `folder`."""
    return subprocess.run(stage_command(name), cwd=folder, env=stage_env(), capture_output=True, text=True,
                          timeout=600)


def succeeded(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args}: exit status {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def one_line(done: subprocess.CompletedProcess, name: str) -> str:
    """The stage's one line on stderr, after checking exit status 2 and no traceback."""
    assert done.returncode == 2, f"exit status {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name} failed: "), lines[0]
    return lines[0]


def workspace(folder: Path, data: Path, *overrides: str) -> Path:
    """`folder` as a project: params.yaml (SMALL and `overrides`), data/raw shared with `data`
    (a link) and a copy of its manifest, free to edit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(compose([*SMALL, *overrides]), encoding="utf-8")
    (folder / "data").mkdir()
    (folder / "data" / "raw").symlink_to(data / "data" / "raw", target_is_directory=True)
    shutil.copy(data / "data" / "manifest.csv", folder / "data" / "manifest.csv")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """ingest and validate, run once: the synthetic dataset and its manifest."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "params.yaml").write_text(compose(SMALL), encoding="utf-8")
    for name in ("ingest", "validate"):
        succeeded(stage(name, folder))
    return folder


def save_checkpoint(path: Path, depth: float = 0.1) -> None:
    """An ST EfficientNet LC v1 at 32x32 of `depth`, freshly initialised, saved as train saves it."""
    import keras

    from mcuvision.model.architecture import build_model
    from mcuvision.model.training import save_model

    keras.utils.set_random_seed(11)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(build_model(CLASSES, 32, depth=depth), path)


def layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    import keras

    import mcuvision.model.layers  # noqa: F401  (registers the Clip layer)

    model = keras.models.load_model(path, compile=False)
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


FROZEN = "stem_conv:stem_bn"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    """train started from checkpoints/start.keras with the stem frozen."""
    folder = workspace(tmp_path_factory.mktemp("init") / "project", data,
                       "train.init_from=checkpoints/start.keras", f"train.frozen_layers={FROZEN}")
    save_checkpoint(folder / "checkpoints" / "start.keras")
    succeeded(stage("train", folder))
    return folder


# -- train from a checkpoint -----------------------------------------------------------------------

def test_train_starts_from_a_checkpoint(trained):
    record = json.loads((trained / "metrics" / "train.json").read_text())
    start = layer_weights(trained / "checkpoints" / "start.keras")
    assert record["epochs_run"] == 1
    init = record["init_from"]
    assert init["path"] == "checkpoints/start.keras" and init["reader"] == "keras model", init
    assert init["layers_copied"] == len(start) and not init["classifier_replaced"], init
    assert init["frozen_range"] == FROZEN and init["frozen_layers"] == 2, init
    after = layer_weights(trained / "models" / "float.keras")
    # The frozen stem is the checkpoint's, bit for bit: the weights were loaded, then kept.
    for name in ("stem_conv", "stem_bn"):
        assert all(np.array_equal(a, b) for a, b in zip(after[name], start[name], strict=True)), name
    # The rest trained.
    assert not all(np.array_equal(a, b) for a, b in zip(after["predictions"], start["predictions"], strict=True))


def test_train_names_a_missing_checkpoint(tmp_path, data):
    folder = workspace(tmp_path, data, "train.init_from=checkpoints/absent.keras")
    (folder / "checkpoints").mkdir()
    line = one_line(stage("train", folder), "train")
    assert "checkpoints/absent.keras" in line and "not found" in line, line


def test_train_names_a_checkpoint_of_another_architecture(tmp_path, data):
    folder = workspace(tmp_path, data, "train.init_from=checkpoints/deeper.keras")
    save_checkpoint(folder / "checkpoints" / "deeper.keras", depth=1.0)
    line = one_line(stage("train", folder), "train")
    assert "checkpoints/deeper.keras" in line, line
    assert not (folder / "models" / "float.keras").exists()


# -- evaluate --------------------------------------------------------------------------------------

def evaluate_workspace(folder: Path, data: Path, trained: Path, *overrides: str) -> Path:
    """A project where train has run (the float model at 32x32, its record). The other formats'
    files exist but are not models: evaluate loads the float Keras model first, and neither check
    below gets past it."""
    workspace(folder, data, *overrides)
    (folder / "models" / "qdq_w4w8").mkdir(parents=True)
    shutil.copy(trained / "models" / "float.keras", folder / "models" / "float.keras")
    for name in ("float.onnx", "int8.tflite", "qdq_int8.onnx"):
        (folder / "models" / name).write_text("not run: quantize makes it\n")
    (folder / "metrics").mkdir()
    shutil.copy(trained / "metrics" / "train.json", folder / "metrics" / "train.json")
    return folder


def test_evaluate_on_a_split_without_images(tmp_path, data, trained):
    folder = evaluate_workspace(tmp_path, data, trained)
    manifest = folder / "data" / "manifest.csv"
    lines = manifest.read_text().splitlines()
    column = lines[0].split(",").index("split")
    rows = [row.split(",") for row in lines[1:]]
    assert {row[column] for row in rows} == {"train", "val", "test"}
    # Every image in train: neither test nor val (evaluate's fallback) has one.
    moved = [",".join([*row[:column], "train", *row[column + 1:]]) for row in rows]
    manifest.write_text("\n".join([lines[0], *moved]) + "\n")
    done = stage("evaluate", folder)
    line = one_line(done, "evaluate")
    assert "the val split has no image" in line and "48 in train" in line, line
    assert not (folder / "metrics" / "evaluate.json").exists()


def test_evaluate_refuses_a_model_of_another_resolution(tmp_path, data, trained):
    folder = evaluate_workspace(tmp_path, data, trained, "model.res=64")
    line = one_line(stage("evaluate", folder), "evaluate")
    assert "models/float.keras takes 32px images but model.res is 64" in line, line
    assert not (folder / "metrics" / "evaluate.json").exists()


# -- model_card ------------------------------------------------------------------------------------

RECORDS = {"artifacts/metadata.json": None,  # written below: no record of export is kept in git
           "metrics/validate.json": "tests/records/validate.json",
           "metrics/quantize.json": "tests/records/quantize.json",
           "metrics/profile.json": "metrics/profile.json",
           "metrics/evaluate.json": "metrics/evaluate.json",
           "metrics/train.json": "tests/records/train.json",
           "reports/evaluate/throughput.json": "reports/evaluate/throughput.json"}


@pytest.fixture
def records(tmp_path) -> Path:
    """A project holding every record model_card reads, as the pipeline wrote them on the embedded
    sample, and an export record holding no key (model_card would stop at its first one)."""
    (tmp_path / "params.yaml").write_text(compose(SMALL), encoding="utf-8")
    for name, source in RECORDS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if source:
            shutil.copy(ROOT / source, tmp_path / name)
    (tmp_path / "artifacts" / "metadata.json").write_text("{}\n")
    return tmp_path


def test_model_card_names_a_missing_record(records):
    (records / "metrics" / "evaluate.json").unlink()
    line = one_line(stage("model_card", records), "model_card")
    assert "metrics/evaluate.json" in line and "no such file" in line and "dvc repro" in line, line


def test_model_card_names_a_record_that_is_not_json(records):
    (records / "metrics" / "evaluate.json").write_text('{"split": "test", "float_keras": {"top1": 0.8')
    line = one_line(stage("model_card", records), "model_card")
    assert "metrics/evaluate.json is not valid JSON" in line, line


def test_model_card_names_a_record_that_is_not_a_json_object(records):
    (records / "metrics" / "train.json").write_text("[0.25, 0.5]\n")
    line = one_line(stage("model_card", records), "model_card")
    assert "metrics/train.json" in line and "not a JSON object" in line, line


def test_model_card_names_a_record_without_a_key_it_reads(records):
    line = one_line(stage("model_card", records), "model_card")
    assert "artifacts/metadata.json has no 'resolution'" in line and "dvc repro" in line, line
    assert not (records / "reports" / "model_card.md").exists()


# -- quantize --------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["cut short", "without weights"])
def test_quantize_names_a_damaged_float_model(tmp_path, data, trained, damage):
    folder = workspace(tmp_path, data)
    (folder / "models").mkdir()
    model = (trained / "models" / "float.keras").read_bytes()
    (folder / "models" / "float.keras").write_bytes(damaged(model, damage))
    line = one_line(stage("quantize", folder), "quantize")
    assert line.startswith("quantize failed: models/float.keras: not a") and "dvc repro" in line, line
    assert ("no zip archive" if damage == "cut short" else "model.weights.h5") in line, line
    assert not (folder / "models" / "int8.tflite").exists()


def damaged(model: bytes, damage: str) -> bytes:
    """A .keras file's bytes `cut short` (half), or `without weights` (the archive minus its weights)."""
    if damage == "cut short":
        return model[:len(model) // 2]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(model)) as source, zipfile.ZipFile(out, "w") as target:
        for entry in source.infolist():
            if entry.filename != "model.weights.h5":
                target.writestr(entry, source.read(entry))
    return out.getvalue()


@pytest.mark.parametrize("damage", ["cut short", "without weights"])
def test_export_names_a_damaged_float_model(tmp_path, data, trained, damage):
    """The other inputs as quantize leaves them: a real int8 .tflite (made here), the rest copied only."""
    folder = workspace(tmp_path, data)
    (folder / "models" / "qdq_w4w8").mkdir(parents=True)
    (folder / "models" / "qdq_w4w8" / "search.json").write_text('{"enabled": false}\n')
    (folder / "models" / "float.keras").write_bytes(damaged((trained / "models" / "float.keras").read_bytes(), damage))
    (folder / "models" / "int8.tflite").write_bytes(convert(fallback=False, input_type="uint8"))
    for name in ("float.onnx", "qdq_int8.onnx"):
        (folder / "models" / name).write_text("copied only\n")
    (folder / "metrics").mkdir()
    shutil.copy(trained / "metrics" / "train.json", folder / "metrics" / "train.json")
    line = one_line(stage("export", folder), "export")
    assert line.startswith("export failed: models/float.keras: not a .keras file") and "dvc repro" in line, line
    assert ("zip" if damage == "cut short" else "model.weights.h5") in line, line
    assert not (folder / "artifacts").exists()


# -- quantize's check of the int8 model --------------------------------------------------------------

def convert(fallback: bool, input_type: str) -> bytes:
    """A small model through the int8 converter with `input_type` input and float32 output;
    `fallback`: a SIN between two int8 ops, which TFLite runs in float only (allowed to fall back)."""
    import tensorflow as tf

    inputs = tf.keras.Input((8,))
    x = tf.keras.layers.Dense(8, activation="relu")(inputs)
    if fallback:
        x = tf.keras.layers.Lambda(tf.math.sin)(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4, activation="softmax")(x))
    rng = np.random.RandomState(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(0, 255, (1, 8)).astype(np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
        [tf.lite.OpsSet.TFLITE_BUILTINS] if fallback else [])
    converter.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8}[input_type]
    converter.inference_output_type = tf.float32
    return converter.convert()


@pytest.fixture
def quantize_config(params):
    from mcuvision.config.quantize import QuantizeConfig

    config = QuantizeConfig.from_params(params)
    assert (config.tflite.input_type, config.tflite.output_type) == ("uint8", "float32")
    return config


def test_check_int8_passes_an_all_int8_model(quantize_config):
    from mcuvision.convert.quantization import check_int8

    facts = check_int8(convert(fallback=False, input_type="uint8"), quantize_config)
    assert facts["input"]["dtype"] == "uint8" and facts["output"]["dtype"] == "float32"


def test_check_int8_refuses_a_float_tensor_between_int8_ops(quantize_config):
    from mcuvision.convert.quantization import QuantizationError, check_int8

    with pytest.raises(QuantizationError, match=r"kept \d+ float tensors inside .*an op fell back to float"):
        check_int8(convert(fallback=True, input_type="uint8"), quantize_config)


def test_check_int8_refuses_another_input_type(quantize_config):
    from mcuvision.convert.quantization import QuantizationError, check_int8

    with pytest.raises(QuantizationError, match="asked for uint8 in / float32 out, got int8 / float32"):
        check_int8(convert(fallback=False, input_type="int8"), quantize_config)
