"""The GPU path without a GPU: the CPU split into two logical devices, so that training runs under
MirroredStrategy with two replicas and a mixed-precision policy (bfloat16 stands in for a GPU's
float16), as on a machine with several GPUs, then quantize runs as usual on the float32 model it
saved; and the XLA-compiled training step on one device.

XLA under MirroredStrategy is not run here: on logical CPU devices TensorFlow compiles every
replica's step for CPU:0 and fails to reach replica 1's variables on CPU:1 ("Trying to access
resource ... located in device CPU:1 from device CPU:0", TensorFlow's XLA known issue "tf.Variable
on a different device"), which says nothing of GPUs, where each replica has a device of its own."""
from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT, stage_command, stage_env
from mcuvision.model import layers  # noqa: F401  (registers the custom layer the saved model uses)

pytestmark = pytest.mark.slow

# Half depth (every kind of block, half the repeats) halves the tracing and XLA compilation of the
# training step; the per-layer int8 error report is off: nothing here reads it, and it is a third of
# quantize's time.
TINY = ["dataset=synthetic", "dataset.source.images_per_class=16", "dataset.source.image_size=48",
        "model.res=64", "model.depth=0.5", "train=fast", "train.epochs=2", "train.batch_size=8",
        "train.warmup_epochs=0", "train.low_res=32", "train.low_res_epochs=1", "train.precise_bn_images=16",
        "train.mixed_precision=true", "quantize.calibration_images=16", "quantize.layer_error_images=0"]

# The train stage's run() with the paths of dvc.yaml's train command, in a process whose CPU is
# DEVICES logical devices (set before TensorFlow makes any), XLA on or off as XLA says.
TRAIN = """
import os
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["DEVICES"]))
from pathlib import Path
from mcuvision.config.base import load_params, seed_of
from mcuvision.config.model import ModelConfig
from mcuvision.config.train import TrainConfig
from stages import train
params = load_params()
train.run(TrainConfig.from_params(params), ModelConfig.from_params(params), seed_of(params),
          manifest_path=Path("data/manifest.csv"), raw=Path("data/raw"), model_out=Path("models/float.keras"),
          metrics_out=Path("metrics/train.json"), live_dir=Path("dvclive/train"), backup_root=Path(".cache/train"),
          xla=os.environ["XLA"] == "1")
"""


def run(args: list[str], cwd, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=stage_env(**env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def project(folder, *overrides: str):
    """`folder` with params.yaml composed from TINY and `overrides`, ingest and validate run."""
    run([sys.executable, "-m", "mcuvision.compose", *TINY, *overrides, "--output", str(folder / "params.yaml")], ROOT)
    for name in ("ingest", "validate"):
        run(stage_command(name), folder)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = project(tmp_path_factory.mktemp("replicas"))
    log = run([sys.executable, "-c", TRAIN], folder, DEVICES="2", XLA="0").stdout
    return folder, log


def test_training_runs_on_two_replicas_with_bfloat16(trained):
    folder, log = trained
    metrics = json.loads((folder / "metrics" / "train.json").read_text())
    assert (metrics["replicas"], metrics["precision_policy"], metrics["xla"]) == (2, "mixed_bfloat16", False)
    assert metrics["epochs_run"] == 2 and "2 replica(s) on CPU, mixed_bfloat16" in log, log


def test_the_training_step_compiles_with_xla(tmp_path):
    # One block a stage (depth 0.1): every kind of layer, a fifth of the graph for XLA to compile.
    folder = project(tmp_path, "model.depth=0.1", "train.epochs=1", "train.low_res=null", "train.low_res_epochs=0")
    log = run([sys.executable, "-c", TRAIN], folder, DEVICES="1", XLA="1").stdout
    metrics = json.loads((folder / "metrics" / "train.json").read_text())
    assert (metrics["replicas"], metrics["precision_policy"], metrics["xla"]) == (1, "mixed_bfloat16", True)
    assert metrics["epochs_run"] == 1 and "1 replica(s) on CPU, mixed_bfloat16, XLA" in log, log


def test_the_saved_model_is_float32_throughout(trained):
    folder, _ = trained
    model = keras.models.load_model(folder / "models" / "float.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert {w.dtype for w in model.weights} == {"float32"}
    assert model.input_shape == (None, 64, 64, 3)  # the fixed side, after 1 epoch at 32x32
    # Precise BN ran with two replicas: the moving statistics are finite and no longer the initial ones.
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert np.isfinite(norm.moving_variance.numpy()).all() and np.abs(norm.moving_mean.numpy()).max() > 0


def test_quantize_takes_it_as_usual(trained):
    """The stage's own checks pass (uint8 input, no float tensor left between quantized ops) and no
    tensor of the int8 model is bfloat16 or float16: calibration and weights came from float32.
    Agreement with float is not asserted: two epochs leave the classes a hair apart, and a float32
    single-replica model of the same config agreed on 0.56 of 16 images where this one did on 0.38:
    both near chance, too few images to tell them apart."""
    import tensorflow as tf

    folder, _ = trained
    run(stage_command("quantize"), folder)
    assert json.loads((folder / "metrics" / "quantize.json").read_text())["int8_tflite"]["input"]["dtype"] == "uint8"
    interpreter = tf.lite.Interpreter(model_content=(folder / "models" / "int8.tflite").read_bytes())
    dtypes = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int8" in dtypes and not dtypes & {"bfloat16", "float16"}, dtypes
