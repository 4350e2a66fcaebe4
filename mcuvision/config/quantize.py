"""The `quantize` section: int8 TFLite and QDQ ONNX options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .base import choice, integer, require, mapping_at

GRANULARITIES = ("per_channel", "per_tensor")
TFLITE_INPUTS = ("uint8", "int8", "float32")
TFLITE_OUTPUTS = ("float32", "int8", "uint8")
ONNX_LAYOUTS = ("nhwc", "nchw")
CALIBRATIONS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    name: str
    calibration_images: int
    tflite_granularity: str
    tflite_input_type: str
    tflite_output_type: str
    tflite_weight_bits: int
    onnx_opset: int
    onnx_layout: str
    onnx_calibration: str

    @classmethod
    def from_params(cls, params: Mapping) -> "QuantizeConfig":
        s = mapping_at(params, "quantize")
        tflite, onnx = mapping_at(s, "tflite", "quantize"), mapping_at(s, "onnx", "quantize")
        bits = tflite.get("weight_bits", 8)
        # TFLite's int8 built-in kernels take 8-bit weights only; int4 lives in the ONNX path.
        require(bits == 8, "quantize.tflite.weight_bits", bits,
                "8 (TFLite full-integer kernels have no int4 weights; use the ONNX w4w8 option)")
        opset = integer(onnx, "quantize.onnx", "opset", 13)
        require(opset <= 21, "quantize.onnx.opset", opset, "13..21 (per-channel QDQ needs 13)")
        return cls(name=str(s.get("name")),
                   calibration_images=integer(s, "quantize", "calibration_images", 1),
                   tflite_granularity=choice(tflite, "quantize.tflite", "granularity", GRANULARITIES),
                   tflite_input_type=choice(tflite, "quantize.tflite", "input_type", TFLITE_INPUTS),
                   tflite_output_type=choice(tflite, "quantize.tflite", "output_type", TFLITE_OUTPUTS),
                   tflite_weight_bits=bits, onnx_opset=opset,
                   onnx_layout=choice(onnx, "quantize.onnx", "layout", ONNX_LAYOUTS),
                   onnx_calibration=choice(onnx, "quantize.onnx", "calibration", CALIBRATIONS))
