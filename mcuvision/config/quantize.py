"""The `quantize` section: int8 TFLite and QDQ ONNX options, and the mixed int4/int8 ONNX search."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mcuvision.config.base import choice, fields_of, integer, key_of, mapping_at, number, require

GRANULARITIES = ("per_channel", "per_tensor")
TFLITE_INPUTS = ("uint8", "int8", "float32")
TFLITE_OUTPUTS = ("float32", "int8", "uint8")
ONNX_LAYOUTS = ("nhwc", "nchw")
CALIBRATIONS = ("minmax", "entropy", "percentile")


def boolean(section: Mapping, prefix: str, name: str) -> bool:
    value = section.get(name)
    require(isinstance(value, bool), key_of(prefix, name), value, "true or false")
    return value


@dataclass(frozen=True)
class W4W8Config:
    """`quantize.w4w8`: search which QDQ ONNX weights can be int4 (mcuvision/convert/int4_search.py)."""
    enabled: bool
    tolerance_points: float   # allowed top-1 drop against the int8 QDQ model, in points
    max_evaluations: int      # candidate models scored, binary search and refinement together
    refine: bool              # after the binary search, try the remaining int8 tensors one by one
    search_images: int = 512  # train images held out of calibration that score the candidates

    @classmethod
    def from_section(cls, s: Mapping, prefix: str = "quantize.w4w8") -> "W4W8Config":
        return cls(enabled=boolean(s, prefix, "enabled"),
                   tolerance_points=number(s, prefix, "tolerance_points", 0.0, 100.0),
                   max_evaluations=integer(s, prefix, "max_evaluations", 1),
                   refine=boolean(s, prefix, "refine"),
                   search_images=integer(s, prefix, "search_images", 1))


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
    w4w8: W4W8Config

    @classmethod
    def from_params(cls, params: Mapping) -> "QuantizeConfig":
        # The YAML nests tflite/onnx options that this class holds flat: its keys are listed here.
        s = mapping_at(params, "quantize", known=("name", "calibration_images", "tflite", "onnx", "w4w8"))
        tflite = mapping_at(s, "tflite", "quantize", known=("granularity", "input_type", "output_type", "weight_bits"))
        onnx = mapping_at(s, "onnx", "quantize", known=("opset", "layout", "calibration"))
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
                   onnx_calibration=choice(onnx, "quantize.onnx", "calibration", CALIBRATIONS),
                   w4w8=W4W8Config.from_section(mapping_at(s, "w4w8", "quantize", fields_of(W4W8Config))))
