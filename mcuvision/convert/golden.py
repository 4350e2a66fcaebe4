"""Golden vectors: held-out images as the int8 model's exact input tensors, and the exact outputs
TensorFlow Lite Micro gives for them, for a firmware to check its port of the model against.

The inputs are the images as the pipeline decodes and resizes them (mcuvision.data.input_pipeline),
quantized with the model's input scale and zero point as every runner here does (uint8 with scale 1,
zero point 0: the pixels unchanged). The outputs are run by the TFLite Micro wheel's reference kernels,
the runtime a firmware links, in a child process (a model the runtime rejects may abort the process,
as mcuvision.profiling.tflm explains). They are kept as codes of the output's int8 quantization: for a
float32 output (the default), the codes of the int8 tensor its final DEQUANTIZE reads, which the float
values are exactly `scale * (code - zero_point)` of, so a comparison counts in quantization steps.

`python -m mcuvision.convert.golden MODEL INPUTS.npy OUTPUTS.npy` is the child: it runs every input
through TFLite Micro and saves the outputs.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mcuvision.convert import tflite_graph
from mcuvision.convert.tflite_graph import schema
from mcuvision.errors import PipelineError

TFLM_ARENA_MIN = 8 << 20  # bytes; the generous arena of mcuvision.profiling.tflm.measure


class GoldenError(PipelineError, RuntimeError):
    """Golden vectors cannot be made for this model or dataset."""


@dataclass(frozen=True)
class Quantization:
    """An int8/uint8 tensor's affine quantization: real = scale * (code - zero_point)."""
    dtype: str          # "int8" | "uint8"
    scale: float
    zero_point: int


@dataclass(frozen=True)
class GoldenSet:
    """What export writes as C: `inputs` (n, H, W, C) in the model input's dtype, `codes` (n, classes) int
    codes of the output quantization `output`, as TFLite Micro gives them for `inputs`."""
    inputs: np.ndarray
    codes: np.ndarray
    labels: np.ndarray           # int, true class of each image (manifest)
    paths: list[str]             # each image, relative to data/raw
    split: str                   # the split they come from: test, or val without a test split
    input_dtype: str             # the model input's dtype: uint8 | int8 | float32
    input_quantization: tuple[float, int] | None  # (scale, zero point); None for a float32 input
    output_dtype: str            # the model output's dtype: float32 | int8 | uint8
    output: Quantization
    litert_diff_steps: dict      # {LITERT_KERNELS name: largest |LiteRT - TFLite Micro| code difference, or None}

    @property
    def litert_max_diff_steps(self) -> int:
        """The largest code difference of LiteRT's optimized kernels (XNNPACK, built-in) from these outputs."""
        return max((v for k, v in self.litert_diff_steps.items() if k != "reference" and v is not None), default=0)

    @property
    def top1(self) -> np.ndarray:
        """int class the int8 model gives each image (argmax of its codes)."""
        return self.codes.argmax(axis=1)


def held_out_split(manifest: pd.DataFrame, wanted: str) -> str:
    """`wanted` (evaluate.split), or val when it is test and the manifest has no test image, as evaluate
    scores. Raises GoldenError when that split is empty."""
    counts = manifest["split"].value_counts()
    split = "val" if wanted == "test" and not counts.get("test", 0) else wanted
    if not counts.get(split, 0):
        raise GoldenError(f"the {split} split has no images to make golden vectors of (see dataset.split)")
    return split


def pick(manifest: pd.DataFrame, split: str, count: int) -> pd.DataFrame:
    """`count` rows of `split` (all when fewer), one class after another in class order, each class's
    images in manifest order: the golden images cover as many classes as `count` allows, the same ones
    on every run."""
    rows = manifest[manifest["split"] == split].copy()
    rows["rank"] = rows.groupby("class_index").cumcount()
    return rows.sort_values(["rank", "class_index"], kind="stable").head(count).drop(columns="rank")


def quantize_input(images: np.ndarray, dtype: str, quantization: tuple[float, int] | None) -> np.ndarray:
    """uint8 pixels (n, H, W, 3) as the model's input tensor: round(pixel / scale + zero_point), rounded
    half to even and clipped to the dtype's range, as mcuvision.runtime.runners.TfliteRunner feeds them;
    float32 pixels for a float32 input."""
    if dtype == "float32":
        return images.astype(np.float32)
    scale, zero = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)


def output_quantization(content: bytes) -> Quantization:
    """The int8 quantization of the model's output: its own for an int8/uint8 output; for a float32 one,
    that of the tensor its producing DEQUANTIZE reads. Raises GoldenError for another graph."""
    model = tflite_graph.load(content)
    _, (out,) = tflite_graph.io_tensors(model)
    if out.dtype in ("int8", "uint8"):
        return Quantization(out.dtype, out.scale[0], out.zero_point[0])
    graph = model.subgraphs[0]
    names = tflite_graph.operator_names(model)
    for op, name in zip(graph.operators, names):
        if graph.outputs[0] in list(op.outputs) and name == "DEQUANTIZE":
            source = graph.tensors[op.inputs[0]]
            dtype = {schema.TensorType.INT8: "int8", schema.TensorType.UINT8: "uint8"}.get(source.type)
            q = source.quantization
            if dtype and q is not None and q.scale is not None and len(q.scale) == 1:
                return Quantization(dtype, float(q.scale[0]), int(q.zeroPoint[0]))
    raise GoldenError(f"the int8 model's {out.dtype} output comes from no int8 DEQUANTIZE: no output codes to "
                      "compare (quantize.tflite.output_type int8 gives them directly)")


def nearest_codes(values: np.ndarray, quantization: Quantization) -> np.ndarray:
    """int64 codes (same shape) nearest to float outputs `values`: round(value / scale) + zero_point."""
    return np.round(values.astype(np.float64) / quantization.scale).astype(np.int64) + quantization.zero_point


def codes_of(values: np.ndarray, quantization: Quantization) -> np.ndarray:
    """int64 codes (same shape) of float outputs `values` = scale * (code - zero_point), as TFLite's
    DEQUANTIZE computes them. Raises GoldenError when a value is not exactly that."""
    codes = nearest_codes(values, quantization)
    back = (np.float64(np.float32(quantization.scale)) * (codes - quantization.zero_point)).astype(np.float32)
    if not np.array_equal(back, values.astype(np.float32)):
        raise GoldenError("the int8 model's float output is not its int8 codes times the output scale")
    return codes


def run_tflm(content: bytes, inputs: np.ndarray, timeout: float = 600.0) -> np.ndarray:
    """TFLite Micro's outputs (n, classes) in the model's output dtype for `inputs` (n, H, W, C) in the model
    input's dtype, one invoke per image, in a child process. Raises GoldenError when the runtime fails."""
    arena = max(TFLM_ARENA_MIN, 8 * len(content))
    with tempfile.TemporaryDirectory() as tmp:
        model, source, target = Path(tmp) / "model.tflite", Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        model.write_bytes(content)
        np.save(source, inputs)
        cmd = [sys.executable, "-m", "mcuvision.convert.golden", str(model), str(source), str(target), str(arena)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=Path(__file__).resolve().parents[2])
        except subprocess.TimeoutExpired as error:
            raise GoldenError(f"TFLite Micro ran past {timeout:.0f} s on {len(inputs)} golden images") from error
        if done.returncode != 0 or not target.is_file():
            tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
            raise GoldenError(f"TFLite Micro could not run the int8 model on the golden images "
                              f"(exit status {done.returncode}{': ' + tail if tail else ''})")
        return np.load(target)


# LiteRT's kernel sets the outputs are compared with: its reference kernels (the same integer arithmetic as
# TFLite Micro's), its default (XNNPACK) and its optimized built-in kernels without XNNPACK.
LITERT_KERNELS = {"reference": "BUILTIN_REF", "xnnpack": "AUTO",
                  "builtin_optimized": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


def run_litert(content: bytes, inputs: np.ndarray, kernels: str) -> np.ndarray:
    """LiteRT's outputs (n, classes), in the model's output dtype, for input tensors `inputs` (n, H, W, C),
    with the op resolver named `kernels` (a value of LITERT_KERNELS)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=content, experimental_op_resolver_type=getattr(OpResolverType, kernels))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    outputs = []
    for tensor in inputs:
        interpreter.set_tensor(source, tensor[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target)[0].copy())
    return np.stack(outputs) if outputs else np.zeros((0, 0), np.float32)


def make(content: bytes, manifest: pd.DataFrame, raw: Path, split: str, count: int, res: int,
         interpolation: str) -> GoldenSet:
    """Golden vectors of `count` images of `split` (held_out_split, pick) for the int8 TFLite model `content`,
    decoded and resized as the pipeline does (res, interpolation). Raises GoldenError (see run_tflm,
    output_quantization) and the input pipeline's errors for an image that does not decode."""
    from mcuvision.data.input_pipeline import decode_all

    split = held_out_split(manifest, split)
    rows = pick(manifest, split, count)
    orientations = rows["orientation"].to_numpy(np.int32) if "orientation" in rows else None
    images = decode_all([str(raw / p) for p in rows["path"]], res, interpolation, orientations)
    (inp,), (out,) = tflite_graph.io_tensors(tflite_graph.load(content))
    in_q = (inp.scale[0], inp.zero_point[0]) if inp.dtype != "float32" else None
    inputs = quantize_input(images, inp.dtype, in_q)
    output = output_quantization(content)
    outputs = run_tflm(content, inputs)
    codes = outputs.astype(np.int64) if out.dtype != "float32" else codes_of(outputs, output)
    diffs = {}
    for name, kernels in LITERT_KERNELS.items():
        try:
            litert = run_litert(content, inputs, kernels).astype(np.float64)
        except RuntimeError:  # XNNPACK refuses some graphs (see runners.TfliteRunner): nothing to compare
            diffs[name] = None
            continue
        litert_codes = nearest_codes(litert, output) if out.dtype == "float32" else litert.astype(np.int64)
        diffs[name] = int(np.abs(litert_codes - codes).max()) if len(codes) else 0
    return GoldenSet(inputs=inputs, codes=codes, labels=rows["class_index"].to_numpy(np.int64),
                     paths=[str(p) for p in rows["path"]], split=split, input_dtype=inp.dtype,
                     input_quantization=in_q, output_dtype=out.dtype, output=output,
                     litert_diff_steps=diffs)


def _main(argv: list[str]) -> int:
    from tflite_micro.python.tflite_micro import runtime

    model, source, target, arena = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    interpreter = runtime.Interpreter.from_bytes(model.read_bytes(), arena_size=arena)
    outputs = []
    for tensor in np.load(source):
        interpreter.set_input(tensor[None], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    np.save(target, np.stack(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
