"""Run each model format on uint8 images (N, H, W, 3) and get class probabilities (N, P).

One interface for LiteRT (int8 TFLite), onnxruntime (float and QDQ ONNX) and Keras, so every
stage compares formats on the same decoded pixels.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuvision.errors import MissingInputError, PipelineError

SUFFIXES = (".tflite", ".onnx", ".keras")


class TfliteRunner:
    """LiteRT interpreter; quantizes raw pixels with the model's own input scale/zero point.

    `batch` > 1 resizes the input to (batch, H, W, 3) and pads the last batch: the same outputs
    as one image at a time (the int8 kernels are per-image), fewer Python round trips.
    """

    def __init__(self, content: bytes, threads: int = 1, batch: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        try:
            self.interpreter = Interpreter(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
            self.kernels = "XNNPACK (default)"
        except RuntimeError as error:
            # XNNPACK refuses some graphs (seen on an untrained model); the built-in kernels run them.
            self.interpreter = Interpreter(model_content=content, num_threads=threads,
                                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interpreter.allocate_tensors()
            self.kernels = f"none: built-in kernels (XNNPACK refused the model: {str(error).strip()[:120]})"
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = batch
        if batch > 1:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]

    def _quantize(self, image: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return image.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(image / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if values.dtype == np.float32:
            return values
        scale, zero = self.output["quantization"]
        return (values.astype(np.float32) - zero) * scale

    def predict(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            if len(chunk) < self.batch:  # the last one: repeat its final image to the batch size
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - len(chunk), axis=0)])
            self.interpreter.set_tensor(self.input["index"], self._quantize(chunk))
            self.interpreter.invoke()
            out.append(self._dequantize(self.interpreter.get_tensor(self.output["index"]))[:len(images) - start])
        return np.concatenate(out) if out else np.zeros((0, self.output["shape"][-1]), np.float32)


class OnnxRunner:
    """onnxruntime session, batched; transposes to NCHW when the model's input asks for it.

    `exact_qdq=True` is for accuracy on QDQ models: it stops onnxruntime from fusing QDQ pairs
    into its int8 x86 kernels, so each DequantizeLinear -> op -> QuantizeLinear runs as written
    (the arithmetic of a target with int32 accumulators). The fused u8s8 kernels saturate on x86
    CPUs with AVX2 but no VNNI: measured on the embedded sample, they cut the QDQ model's top-1
    agreement with float from 95% to 85%, an artifact of the host, not of the model.
    """

    def __init__(self, model: bytes | str, threads: int = 1, batch: int = 32, exact_qdq: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if exact_qdq:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.name, self.nchw, self.batch = first.name, first.shape[1] == 3, batch

    def predict(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch):
            x = images[start:start + self.batch].astype(np.float32)
            out.append(self.session.run(None, {self.name: x.transpose(0, 3, 1, 2) if self.nchw else x})[0])
        return np.concatenate(out, axis=0)


def keras_predict(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return model.predict(images.astype(np.float32), batch_size=batch, verbose=0)


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of images whose top-1 class is the same in both."""
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1))) if len(reference) else float("nan")


class UnsupportedModel(PipelineError, ValueError):
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


def _load(path: Path, suffix: str, batch: int) -> Predictor:
    if suffix == ".tflite":
        runner = TfliteRunner(path.read_bytes(), batch=batch)
        return Predictor(path, int(runner.input["shape"][1]), f"LiteRT ({runner.kernels})", runner.predict)
    if suffix == ".onnx":
        runner = OnnxRunner(str(path), batch=batch, exact_qdq=True)
        shape = runner.session.get_inputs()[0].shape
        return Predictor(path, int(shape[2] if runner.nchw else shape[1]), "onnxruntime", runner.predict)
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file that is there
        raise ValueError("not a Keras 3 archive (a .keras file is a zip)")
    import keras

    from mcuvision.model.layers import Clip  # noqa: F401  (registers the layer so the file loads)

    model = keras.models.load_model(path)
    return Predictor(path, int(model.input_shape[1]), f"Keras {keras.__version__}",
                     lambda images: keras_predict(model, images, batch))


def load_predictor(path: Path, batch: int = 32) -> Predictor:
    """A runner for a .tflite, .onnx or .keras file; QDQ ONNX runs without fused x86 int8 kernels.

    Raises MissingInputError (a FileNotFoundError) for a missing file, UnsupportedModel (one line naming the file and
    the runtime's reason) for another suffix or a file its runtime cannot load.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnsupportedModel(f"{path}: not a model this project runs (expected one of {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file")
    try:
        return _load(path, suffix, batch)
    except Exception as error:  # each runtime raises its own types for a file it cannot read
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UnsupportedModel(f"{path}: not a {suffix} model its runtime can load ({reason})") from error
