"""Reproducibility: the same params and seed give the same outputs, in separate processes.

Two folders run ingest -> validate -> train -> quantize side by side, each stage a real
`python -m stages.<name>` process with the command of dvc.yaml, different PYTHONHASHSEEDs (so
that nothing may hang on set or dict order) and `train.deterministic: true` on CPU. Byte for
byte the same: manifest, validate metrics, float weights, the .keras file, the dvclive plots,
the int8 .tflite. Not byte for byte: the float and QDQ ONNX files, whose tf2onnx node and
initializer names and Reshape count vary from process to process (its optimizers walk Python
sets of node objects, ordered by memory address); they are checked to compute the same.

Two versions. The short one runs in `make test` (CI): the smallest model (32x32, half depth, two
epochs) and the promises a user sees, byte-identical manifest, .keras and int8 .tflite. The long
one is optional (`make test-all`): the full-depth model with MixUp/CutMix batches and a weight
average, three epochs, and every record compared (weights array by array, dvclive plots,
train.json, quantize.json, the ONNX files' outputs).
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import stage_command, stage_env
from mcuvision.compose import compose

# depth 0.5 keeps residual blocks (drop-connect, a random op) at half the tracing time.
TINY = ["dataset=synthetic", "dataset.source.images_per_class=12", "dataset.source.image_size=48",
        "model.res=32", "model.depth=0.5", "train.epochs=2", "train.batch_size=8", "train.warmup_epochs=0",
        "train.deterministic=true", "quantize.calibration_images=16"]
# The long version: every block (full depth), mixed batches and the weight average on, one epoch more.
LONG = [o for o in TINY if not o.startswith(("model.depth", "train.epochs"))] + [
    "train.epochs=3", "train.augment.mix_rate=0.5", "train.ema_momentum=0.9"]
STAGES = ("ingest", "validate", "train", "quantize")
TIMING = ("wall_time_s", "images_per_s")  # train.json's measurements of speed, not results


def run_twins(root: Path, overrides: list[str]) -> tuple[Path, Path]:
    """Two folders with the same params.yaml, each stage run in both side by side as a real process
    with dvc.yaml's command, with different PYTHONHASHSEEDs; fails on a stage's non-zero exit."""
    params = compose(overrides)
    folders = []
    for name in ("a", "b"):
        (root / name).mkdir()
        (root / name / "params.yaml").write_text(params, encoding="utf-8")
        folders.append(root / name)
    for stage in STAGES:
        running = []
        for hash_seed, folder in enumerate(folders, start=1):
            env = stage_env(PYTHONHASHSEED=str(hash_seed), XDG_CACHE_HOME=str(folder / ".xdg"))
            running.append(subprocess.Popen(stage_command(stage), cwd=folder, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))
        for process in running:
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"{stage} failed:\n{output}"
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def short_twins(tmp_path_factory) -> tuple[Path, Path]:
    # The per-layer error report is left off: it writes no file these tests compare (the long one does).
    return run_twins(tmp_path_factory.mktemp("short_twins"), [*TINY, "quantize.layer_error_images=0"])


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> tuple[Path, Path]:
    return run_twins(tmp_path_factory.mktemp("twins"), LONG)


def read(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


# -- short: in `make test` ----------------------------------------------------------------------

@pytest.mark.slow
def test_short_run_gives_the_same_manifest(short_twins):
    a, b = short_twins
    assert read(a, "data/manifest.csv") == read(b, "data/manifest.csv")
    splits = json.loads(read(a, "metrics/validate.json"))["splits"]
    assert min(splits.values()) > 0, splits  # a real three-way split was compared


@pytest.mark.slow
def test_short_run_gives_a_byte_identical_keras_file(short_twins):
    a, b = short_twins
    first, second = read(a, "models/float.keras"), read(b, "models/float.keras")
    if first != second:  # say whether the weights or only the file's packing differ
        arrays = weights_of(first), weights_of(second)
        differing = [n for n in arrays[0] if n not in arrays[1] or not np.array_equal(arrays[0][n], arrays[1][n])]
        pytest.fail(f"the .keras files differ; {len(differing)} of {len(arrays[0])} weight arrays differ, "
                    f"e.g. {differing[:3]}")
    assert json.loads(read(a, "metrics/train.json"))["epochs_run"] == 2


@pytest.mark.slow
def test_short_run_gives_a_byte_identical_int8_tflite(short_twins):
    a, b = short_twins
    assert read(a, "models/int8.tflite") == read(b, "models/int8.tflite")


# -- long: optional (`make test-all`) -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.optional
def test_same_manifest_and_split(twins):
    a, b = twins
    assert read(a, "data/manifest.csv") == read(b, "data/manifest.csv")
    assert read(a, "metrics/validate.json") == read(b, "metrics/validate.json")
    splits = json.loads(read(a, "metrics/validate.json"))["splits"]
    assert min(splits.values()) > 0, splits  # a real three-way split was compared


def weights_of(keras_file: bytes) -> dict[str, np.ndarray]:
    """Every array of the .keras file's weights (model and optimizer), by its HDF5 path."""
    import h5py

    arrays = {}
    with zipfile.ZipFile(io.BytesIO(keras_file)) as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.mark.slow
@pytest.mark.optional
def test_deterministic_training_gives_the_same_weights(twins):
    a, b = twins
    first, second = weights_of(read(a, "models/float.keras")), weights_of(read(b, "models/float.keras"))
    assert first.keys() == second.keys() and len(first) > 100
    differing = [name for name in first if not np.array_equal(first[name], second[name])]
    assert differing == [], f"{len(differing)} of {len(first)} arrays differ, e.g. {differing[:3]}"
    plots = sorted(p.relative_to(a) for p in (a / "dvclive").rglob("*.tsv"))
    assert plots and all(read(a, p) == read(b, p) for p in plots), "every epoch's loss and accuracy"
    metrics = [json.loads(read(folder, "metrics/train.json")) for folder in twins]
    assert [{k: v for k, v in m.items() if k not in TIMING} for m in metrics] == [
        {k: v for k, v in metrics[0].items() if k not in TIMING}] * 2


@pytest.mark.slow
@pytest.mark.optional
def test_keras_file_is_byte_identical(twins):
    a, b = twins
    assert read(a, "models/float.keras") == read(b, "models/float.keras")


@pytest.mark.slow
@pytest.mark.optional
def test_int8_tflite_is_byte_identical(twins):
    a, b = twins
    assert read(a, "models/int8.tflite") == read(b, "models/int8.tflite")
    quantized = [json.loads(read(folder, "metrics/quantize.json")) for folder in twins]
    assert quantized[0]["int8_tflite"] == quantized[1]["int8_tflite"]
    for model in ("int8_tflite", "int8_qdq_onnx"):
        assert quantized[0][model]["agreement_with_float"] == quantized[1][model]["agreement_with_float"]


@pytest.mark.slow
@pytest.mark.optional
@pytest.mark.parametrize("name", ["float.onnx", "qdq_int8.onnx"])
def test_onnx_files_compute_exactly_the_same(twins, name):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    models = [onnx.load_from_string(read(folder, f"models/{name}")) for folder in twins]
    # The same weights, whatever tf2onnx named them (int64 initializers are Reshape shapes, one
    # per Reshape, and their number is what varies).
    values = [sorted(numpy_helper.to_array(t).tobytes() for t in m.graph.initializer
                     if t.data_type != onnx.TensorProto.INT64) for m in models]
    assert values[0] == values[1] and len(values[0]) > 50
    images = np.random.RandomState(0).randint(0, 256, (16, 32, 32, 3)).astype(np.float32)
    for level, exact in ((ort.GraphOptimizationLevel.ORT_DISABLE_ALL, True),
                         (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, False)):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        outputs = []
        for model in models:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            outputs.append(session.run(None, {session.get_inputs()[0].name: images})[0])
        if exact:  # op by op, without fusions: the very same arithmetic
            assert np.array_equal(outputs[0], outputs[1])
        else:
            np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1e-6)


# -- the .keras writer (fast) ---------------------------------------------------------------------

def small_model():
    import keras

    keras.utils.set_random_seed(3)
    # Named: Keras' automatic names differ between two models of one process (conv2d, conv2d_1).
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(x), name="small")


def resaved_elsewhere(data: bytes) -> bytes:
    """The archive as `model.save` writes it for the same model in another process at another
    time: another date_saved, another address for the shared objects, another weights entry time."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":
                content = content.replace(b'"date_saved": "', b'"date_saved": "1999-12-31@23:59:59 was ')
            elif info.filename == "config.json":
                content = re.sub(rb'"shared_object_id": \d+', b'"shared_object_id": 94000000000042', content)
            entry = zipfile.ZipInfo(info.filename, date_time=(2031, 5, 6, 7, 8, 10))
            entry.compress_type = info.compress_type
            target.writestr(entry, content)
    return out.getvalue()


def test_a_model_saved_twice_gives_the_same_bytes(tmp_path):
    import keras

    from mcuvision.model.training import reproducible_keras, save_model

    model = small_model()
    model.save(tmp_path / "plain.keras")
    plain = read(tmp_path, "plain.keras")
    assert b'"shared_object_id"' in plain and b'"date_saved"' in plain, "what there is to rewrite"
    elsewhere = resaved_elsewhere(plain)
    assert elsewhere != plain
    assert reproducible_keras(elsewhere) == reproducible_keras(plain)

    save_model(model, tmp_path / "ours.keras")
    ours = read(tmp_path, "ours.keras")
    assert ours == reproducible_keras(plain) == reproducible_keras(ours), "the writer uses it, and it is stable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.keras", "plain.keras"], "no temporary file left"
    with zipfile.ZipFile(io.BytesIO(ours)) as archive, zipfile.ZipFile(io.BytesIO(plain)) as original:
        assert archive.read("model.weights.h5") == original.read("model.weights.h5"), "weights copied unchanged"
        assert json.loads(archive.read("metadata.json")) == {"keras_version": keras.__version__}
        ids = set(re.findall(rb'"shared_object_id": (\d+)', archive.read("config.json")))
    assert ids == {b"1"}, ids

    loaded = keras.models.load_model(tmp_path / "ours.keras")
    images = np.random.RandomState(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    assert np.array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert loaded.get_config() == keras.models.load_model(tmp_path / "plain.keras").get_config()
