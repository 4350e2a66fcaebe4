"""ST EfficientNet LC v1 builder: the figures of shared/reference/st_facts.md and portability."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from mcuvision.model.architecture import Clip, build_model
from mcuvision.model.keras_macc import count_macc

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("num_classes, expected", [(5, 516_153), (39, 535_771), (101, 571_545)])
def test_parameter_counts_match_st(num_classes, expected):
    # Parameters do not depend on resolution, so the smallest legal input keeps this fast.
    assert build_model(num_classes, 32).count_params() == expected


def test_parameter_count_independent_of_resolution():
    assert build_model(5, 128).count_params() == build_model(5, 224).count_params()


@pytest.mark.parametrize("res, expected", [(224, 60.6e6), (128, 19.8e6)])
def test_macc_matches_st(res, expected):
    macc = count_macc(build_model(5, res))
    assert abs(macc["total"] - expected) / expected < 0.01
    by_kind = macc["by_kind"]
    assert macc["total"] == by_kind["conv"] + by_kind["depthwise"] + by_kind["dense"]
    assert sum(row["macc"] for row in macc["per_layer"] if row["kind"] != "other") == macc["total"]


@pytest.mark.parametrize("res", [100, 0, -32, 127.5, "128", True])
def test_bad_resolution_rejected(res):
    with pytest.raises(ValueError, match=r"model\.res="):
        build_model(5, res)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.5, "5"])
def test_bad_num_classes_rejected(num_classes):
    with pytest.raises(ValueError, match=r"dataset\.num_classes="):
        build_model(num_classes, 32)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_bad_dropout_rejected(dropout):
    with pytest.raises(ValueError, match=r"train\.dropout="):
        build_model(5, 32, dropout=dropout)


def test_no_lambda_layers_and_clip_on_every_se():
    model = build_model(5, 32)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    # 16 MBConv blocks, each with one squeeze-and-excitation.
    assert sum(isinstance(layer, Clip) for layer in model.layers) == 16
    assert model.get_layer("block3b_se_clip").get_config()["max_value"] == 4.0


def test_input_takes_raw_pixels_and_output_is_a_distribution():
    model = build_model(7, 64)
    assert model.input.dtype == "float32"
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    x = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (1, 7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_keras_round_trip_in_fresh_process(tmp_path):
    model = build_model(5, 64)
    x = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model(x, training=False).numpy())
    model.save(tmp_path / "m.keras")

    # A fresh interpreter proves that importing mcuvision.model.architecture alone registers Clip,
    # and load_model's default safe_mode=True proves there is no Lambda to deserialize.
    script = (
        "import sys, numpy as np, keras, mcuvision.model.architecture\n"
        "d = sys.argv[1]\n"
        "m = keras.models.load_model(d + '/m.keras')\n"
        "y = m(np.load(d + '/x.npy'), training=False).numpy()\n"
        "np.testing.assert_allclose(y, np.load(d + '/y.npy'), rtol=0, atol=1e-6)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, check=True)


def test_float_tflite_conversion_uses_builtin_ops():
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema

    model = build_model(5, 32)
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()

    tflite = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in tflite.operatorCodes]
    op_names = {name for name, code in vars(schema.BuiltinOperator).items() if code in codes}
    assert schema.BuiltinOperator.CUSTOM not in codes  # no Flex / custom ops
    assert {"MINIMUM", "MAXIMUM"} <= op_names  # the SE clip

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    x = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(y, model(x, training=False).numpy(), atol=1e-4)
