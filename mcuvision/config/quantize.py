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
    tolerance_points: float   # risk budget of the whole search and the check's allowed top-1 drop, in points
    max_evaluations: int      # candidate models the binary search scores (the check and sensitivity pass aside)
    check_fraction: float     # share of the validation images kept out of the search to check its result
    sensitivity_images: int   # search views each weight tensor's int4 sensitivity is measured on
    mirror: bool              # also score each search image mirrored left-right

    @classmethod
    def from_section(cls, s: Mapping, prefix: str = "quantize.w4w8") -> "W4W8Config":
        return cls(enabled=boolean(s, prefix, "enabled"),
                   tolerance_points=number(s, prefix, "tolerance_points", 0.0, 100.0),
                   max_evaluations=integer(s, prefix, "max_evaluations", 1),
                   check_fraction=number(s, prefix, "check_fraction", 0.0, 1.0, low_open=True, high_open=True),
                   sensitivity_images=integer(s, prefix, "sensitivity_images", 1),
                   mirror=boolean(s, prefix, "mirror"))


@dataclass(frozen=True)
class TfliteOptions:
    """`quantize.tflite`: the int8 TFLite model's weights granularity and I/O types."""
    granularity: str          # per_channel | per_tensor (weights)
    input_type: str           # uint8 | int8 | float32
    output_type: str          # float32 | uint8 | int8
    weight_bits: int = 8      # 8 only: TFLite's int8 kernels take no int4 weights

    @classmethod
    def from_section(cls, s: Mapping, prefix: str = "quantize.tflite") -> "TfliteOptions":
        """Raises ConfigError naming the first bad key."""
        bits = s.get("weight_bits", 8)
        # TFLite's int8 built-in kernels take 8-bit weights only; int4 lives in the ONNX path.
        require(bits == 8, f"{prefix}.weight_bits", bits,
                "8 (TFLite full-integer kernels have no int4 weights; use the ONNX w4w8 option)")
        return cls(granularity=choice(s, prefix, "granularity", GRANULARITIES),
                   input_type=choice(s, prefix, "input_type", TFLITE_INPUTS),
                   output_type=choice(s, prefix, "output_type", TFLITE_OUTPUTS), weight_bits=bits)


@dataclass(frozen=True)
class OnnxOptions:
    """`quantize.onnx`: opset, tensor layout and the QDQ model's calibration method."""
    opset: int                # 13..21
    layout: str               # nhwc | nchw
    calibration: str          # onnxruntime's calibration method

    @classmethod
    def from_section(cls, s: Mapping, prefix: str = "quantize.onnx") -> "OnnxOptions":
        """Raises ConfigError naming the first bad key."""
        opset = integer(s, prefix, "opset", 13)
        require(opset <= 21, f"{prefix}.opset", opset, "13..21 (per-channel QDQ needs 13)")
        return cls(opset=opset, layout=choice(s, prefix, "layout", ONNX_LAYOUTS),
                   calibration=choice(s, prefix, "calibration", CALIBRATIONS))


@dataclass(frozen=True)
class QuantizeConfig:
    """`quantize`: attribute paths follow the YAML paths (`quantize.tflite.granularity` is
    `config.tflite.granularity`)."""
    name: str
    calibration_images: int
    tflite: TfliteOptions
    onnx: OnnxOptions
    w4w8: W4W8Config
    layer_error_images: int = 64  # validation images the per-layer error report runs on; 0: no report

    @classmethod
    def from_params(cls, params: Mapping) -> "QuantizeConfig":
        """Raises ConfigError naming the first unknown, missing or bad key."""
        s = mapping_at(params, "quantize", known=fields_of(cls))
        return cls(name=str(s.get("name")),
                   calibration_images=integer(s, "quantize", "calibration_images", 1),
                   tflite=TfliteOptions.from_section(mapping_at(s, "tflite", "quantize", fields_of(TfliteOptions))),
                   onnx=OnnxOptions.from_section(mapping_at(s, "onnx", "quantize", fields_of(OnnxOptions))),
                   w4w8=W4W8Config.from_section(mapping_at(s, "w4w8", "quantize", fields_of(W4W8Config))),
                   layer_error_images=integer(s, "quantize", "layer_error_images", 0))
