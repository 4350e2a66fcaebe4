"""Run each model format on uint8 images (N, H, W, 3) and get class probabilities (N, P).

One interface for LiteRT (int8 TFLite), onnxruntime (float and QDQ ONNX) and Keras, so every
stage compares formats on the same decoded pixels.
"""
from __future__ import annotations

import numpy as np


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
