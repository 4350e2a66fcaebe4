"""A user's mistake on the command line is one line naming the file (and the op), exit status 2,
never a Python traceback: predict and profile_on_board given a missing file, a file that is not a
model, a folder, or a model with an op TFLite Micro lacks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def assert_one_line_naming(done: subprocess.CompletedProcess, *names: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    for name in names:
        assert name in last, last


@pytest.fixture(scope="module")
def not_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    for suffix in (".tflite", ".onnx", ".keras"):
        (folder / f"notes{suffix}").write_text("meeting notes, not a model\n")
    (folder / "folder.tflite").mkdir()  # a folder named like a model
    return folder


@pytest.fixture(scope="module")
def topk_model(tmp_path_factory) -> Path:
    """A float .tflite ending in TOPK_V2, a builtin op TFLite Micro has no kernel for."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)], autograph=False)
    def top2(x):
        return tf.math.top_k(tf.nn.relu(x), k=2).indices

    path = tmp_path_factory.mktemp("topk") / "topk.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([top2.get_concrete_function()], top2)
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", ".keras"])
def test_predict_names_a_file_that_is_not_a_model(not_models, suffix):
    model = not_models / f"notes{suffix}"
    done = run_cli("mcuvision.runtime.predict", "--model", str(model), str(ROOT / "data/sample"))
    assert_one_line_naming(done, str(model))


def test_predict_names_a_missing_model(tmp_path):
    model = tmp_path / "missing.tflite"
    done = run_cli("mcuvision.runtime.predict", "--model", str(model), str(ROOT / "data/sample"))
    assert_one_line_naming(done, str(model))


@pytest.mark.parametrize("name", ["missing.tflite", "notes.tflite", "folder.tflite"])
def test_profile_names_a_missing_file_or_one_that_is_not_a_model(not_models, name):
    model = not_models / name
    done = run_cli("stages.profile_on_board", "--model", str(model), "--board", "stm32h747i_disco")
    assert_one_line_naming(done, str(model))


def test_profile_names_the_op_tflite_micro_lacks(topk_model):
    done = run_cli("stages.profile_on_board", "--model", str(topk_model), "--board", "stm32h747i_disco")
    assert_one_line_naming(done, str(topk_model), "TOPK_V2")
