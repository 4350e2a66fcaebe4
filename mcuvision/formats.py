"""The model formats the pipeline makes, one name each, and a predictor for any model file.

The names are the keys of metrics/quantize.json, metrics/evaluate.json and the model card, so
`dvc metrics diff` lines up the same model across stages and commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtimes import OnnxRunner, TfliteRunner, keras_predict

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
SUFFIXES = (".tflite", ".onnx", ".keras")


class UnsupportedModel(ValueError):
    """Not a model file this project can run."""


@dataclass
class Predictor:
    """uint8 pixels (N, res, res, 3) in, class probabilities (N, classes) out."""
    path: Path
    res: int
    runtime: str
    _predict: object

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._predict(images)


def load_predictor(path: Path, batch: int = 32) -> Predictor:
    """A runner for a .tflite, .onnx or .keras file; QDQ ONNX runs without fused x86 int8 kernels."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        runner = TfliteRunner(path.read_bytes(), batch=batch)
        return Predictor(path, int(runner.input["shape"][1]), f"LiteRT ({runner.kernels})", runner.predict)
    if suffix == ".onnx":
        runner = OnnxRunner(str(path), batch=batch, exact_qdq=True)
        shape = runner.session.get_inputs()[0].shape
        return Predictor(path, int(shape[2] if runner.nchw else shape[1]), "onnxruntime", runner.predict)
    if suffix == ".keras":
        import keras

        from .model import Clip  # noqa: F401  (registers the layer so the file loads)

        model = keras.models.load_model(path)
        return Predictor(path, int(model.input_shape[1]), f"Keras {keras.__version__}",
                         lambda images: keras_predict(model, images, batch))
    raise UnsupportedModel(f"{path}: not a model this project runs (expected one of {', '.join(SUFFIXES)})")
