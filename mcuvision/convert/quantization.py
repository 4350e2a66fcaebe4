"""Conversions of the float Keras model: int8 TFLite, float ONNX, int8 QDQ ONNX; the check that the int8
TFLite model is what was asked for (check_int8).

Both int8 paths calibrate on the same decoded images (uint8 raw pixels, decoded once):
the model's own Rescaling layer makes raw pixels its float input, so a uint8 TFLite input
with scale 1 and zero point 0 takes camera pixels as they are.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import tensorflow as tf

from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import tflite_graph
from mcuvision.errors import PipelineError

TF_TYPES = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}
INPUT_NAME = "image"


class QuantizationError(PipelineError, RuntimeError):
    """The converter produced something that is not what was asked for."""


def int8_converter(model, images: np.ndarray, config: QuantizeConfig, float_io: bool = False):
    """The TFLiteConverter of the int8 model: calibrated on uint8 `images` (n, H, W, 3), int8 built-ins only,
    the configured weight granularity and I/O types (float32 I/O with `float_io`, which TensorFlow Lite's
    quantization debugger requires: mcuvision.convert.layer_error)."""
    def representative() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        converter.inference_input_type = TF_TYPES[config.tflite.input_type]
        converter.inference_output_type = TF_TYPES[config.tflite.output_type]
    if config.tflite.granularity == "per_tensor":
        # The converter has no public switch for per-tensor weights; this is the one it reads.
        converter._experimental_disable_per_channel = True
    return converter


@contextlib.contextmanager
def quiet_conversion() -> Iterator[None]:
    """Keep the converter's chatter off the stage's output: Keras' export inside TFLiteConverter prints
    the saved endpoints and every captured variable to stdout (hundreds of lines for this model), and
    TensorFlow warns that no statistics were given for the quantized input, which a uint8 input of
    scale 1 does not need (check_int8 checks the input quantization it got); the quantization debugger
    runs TensorFlow's own interpreter, which warns that it is deprecated and that keeping every tensor
    is for debugging (which is what it is for here). Errors still raise."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
        warnings.filterwarnings("ignore", message=r"Warning: Enabling `experimental_preserve_all_tensors`")
        yield


def int8_tflite(model, images: np.ndarray, config: QuantizeConfig) -> bytes:
    """Post-training full-integer quantization: every op an int8 built-in, no float fallback."""
    with quiet_conversion():
        return int8_converter(model, images, config).convert()


def check_int8(content: bytes, config: QuantizeConfig) -> dict:
    """The facts of an int8 TFLite model (input/output types and quantization, weights, operators);
    QuantizationError when a float tensor hides between its ops or its types are not those asked for."""
    graph = tflite_graph.load(content)
    hidden = tflite_graph.float_tensors(graph)
    if hidden:
        raise QuantizationError(f"the int8 TFLite model kept {len(hidden)} float tensors inside "
                                f"(e.g. {hidden[:3]}): an op fell back to float")
    inputs, outputs = tflite_graph.io_tensors(graph)
    if inputs[0].dtype != config.tflite.input_type or outputs[0].dtype != config.tflite.output_type:
        raise QuantizationError(f"asked for {config.tflite.input_type} in / {config.tflite.output_type} out, "
                                f"got {inputs[0].dtype} / {outputs[0].dtype}")
    if inputs[0].dtype == "uint8" and (abs(inputs[0].scale[0] - 1.0) > 1e-6 or inputs[0].zero_point[0] != 0):
        print(f"quantize: warning: uint8 input scale {inputs[0].scale[0]} zero point {inputs[0].zero_point[0]}: "
              "raw pixels must be requantized before inference (the calibration images never reach 0 or 255)")
    return {"input": {"dtype": inputs[0].dtype, "shape": list(inputs[0].shape),
                      "scale": inputs[0].scale[0] if inputs[0].scale else None,
                      "zero_point": inputs[0].zero_point[0] if inputs[0].zero_point else None},
            "output": {"dtype": outputs[0].dtype, "shape": list(outputs[0].shape)},
            "weights_bytes": tflite_graph.weights_bytes(graph),
            "operators": sorted(set(tflite_graph.operator_names(graph)))}


def float_onnx(model, res: int, opset: int, layout: str) -> onnx.ModelProto:
    """tf2onnx conversion with a dynamic batch; `nchw` transposes the input for NCHW callers."""
    import tf2onnx

    spec = (tf.TensorSpec((None, res, res, 3), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image):
        return {"probabilities": model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=spec, opset=opset,
        inputs_as_nchw=[INPUT_NAME] if layout == "nchw" else None)
    return proto


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over in-memory images."""

    def __init__(self, images: np.ndarray, nchw: bool):
        self.images, self.nchw, self.index = images, nchw, 0

    def get_next(self) -> dict | None:
        if self.index >= len(self.images):
            return None
        image = self.images[self.index][None].astype(np.float32)
        self.index += 1
        return {INPUT_NAME: image.transpose(0, 3, 1, 2) if self.nchw else image}

    def rewind(self) -> None:
        self.index = 0


def preprocessed(float_model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's pre-quantization pass (shape inference, BatchNorm folded into the convolutions):
    the graph whose weights the QDQ models actually quantize."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx"
        onnx.save(float_model, source)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        return onnx.load(str(prepared))


def qdq_onnx(float_model: onnx.ModelProto, images: np.ndarray, config: QuantizeConfig) -> onnx.ModelProto:
    """onnxruntime static QDQ: symmetric per-channel int8 weights, asymmetric int8 activations.

    The mixed int4/int8 model starts from this one (mcuvision.convert.int4_search).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        prepared, output = Path(tmp) / "pre.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(preprocessed(float_model), prepared)
        quantize_static(str(prepared), str(output), _Reader(images, config.onnx.layout == "nchw"),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                        calibrate_method=methods[config.onnx.calibration],
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        return onnx.load(str(output))
