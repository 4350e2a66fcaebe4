"""The model formats the pipeline makes, one name each (runners: mcuvision.runtime.runners).

The names are the keys of metrics/quantize.json, metrics/evaluate.json and the model card, so
`dvc metrics diff` lines up the same model across stages and commits.
"""
from __future__ import annotations

# key -> what a person reads in a table
FORMATS = {
    "float_keras": "Float (Keras)",
    "float_onnx": "Float ONNX",
    "int8_tflite": "Int8 TFLite (LiteRT)",
    "int8_qdq_onnx": "Int8 QDQ ONNX (onnxruntime)",
    "w4w8_qdq_onnx": "Int4/Int8 QDQ ONNX (onnxruntime)",
}
QUANTIZED = ("int8_tflite", "int8_qdq_onnx", "w4w8_qdq_onnx")
# quantize writes its int4/int8 folder always; the model inside only when the search is enabled.
W4W8_MODEL_FILE, W4W8_SEARCH_FILE = "qdq_w4w8.onnx", "search.json"
