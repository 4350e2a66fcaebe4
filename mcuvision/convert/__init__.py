"""Conversions of the trained model: int8 TFLite, ONNX and QDQ ONNX, the int4/int8 search, graph readers, C source."""
