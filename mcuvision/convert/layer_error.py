"""Per-layer quantization error of the int8 TFLite model, measured by TensorFlow Lite's quantization
debugger (`tf.lite.experimental.QuantizationDebugger`), and each worst layer's share of the output error.

The debugger calibrates the float model on the calibration images as `int8_tflite` does and builds a
debug model in which every quantized op runs beside its float twin, fed the same (dequantized) inputs,
with a NumericVerify op comparing the two outputs: the error of each layer alone, not accumulated
from earlier ones. Per layer, over `images` validation images (means over images):
- sqnr_db: 10 log10(mean float output^2 / mean (dequantized int8 - float)^2), the signal-to-quantization-
  noise ratio (higher is better; each bit of resolution adds about 6 dB);
- rmse_steps: the error's root mean square in quantization steps of the output tensor (scale); pure
  rounding of a well-spread signal gives 1/sqrt(12) = 0.289, more means clipping or coarse steps.
Output error: the mean squared difference between the float Keras model's class probabilities and the int8
model's on the same images. A layer's share of it: the fraction that disappears when the debugger keeps
that layer in float (its `denylisted_nodes`, selective quantization), 1 - error_without / error_full; it
can be negative (errors of several layers cancel), is 0 for a layer whose only error is the rounding of its
output (the next int8 op rounds its input to the same grid), and is None when the converter keeps the layer
int8.

The debug model has float32 input and output (the debugger requires it); its int8 ops are those of the
deployed model, calibrated on the same images.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

IDEAL_RMSE_STEPS = 1 / math.sqrt(12)  # uniform rounding error, in steps
WORST = 3  # layers the report names
WEIGHTED_OP = re.compile(r"(convolution|depthwise|MatMul)")  # the TensorFlow op a layer with weights ends in
CSV_FILE, PLOT_FILE = "layer_error.csv", "layer_error.png"
COLUMNS = ["order", "layer", "op", "sqnr_db", "rmse_steps", "rmse", "mean_error", "max_abs_error", "elements",
           "scale", "zero_point", "tensor_index", "tensor_name"]


@dataclass(frozen=True)
class LayerErrors:
    """The measurement: `table` has COLUMNS, one row per quantized op output in graph order."""
    table: pd.DataFrame
    images: int                  # validation images the debugger ran
    output_mse: float            # float vs int8 class probabilities, mean squared difference
    worst: list[dict]            # the WORST lowest-SQNR layers: layer, op, sqnr_db, rmse_steps, share
    worst_share: float | None    # share of the output error of the WORST layers kept in float together
    matches_deployed: bool       # every int8 tensor of the debugged model has the deployed model's scale, zero point


def layer_name(tensor_name: str, known: set[str]) -> str:
    """The Keras layer an op output belongs to. A TFLite tensor name lists the TensorFlow ops fused into it
    (';'-separated paths `model/layer/op`): the layer of the convolution, depthwise convolution or matrix
    product comes first, then the others in order; the first that is one of `known` (TensorFlow may add a
    call suffix such as `_1`) is the answer, else the first layer named; "model output" for a tensor named
    after the model's output alone."""
    if "/" not in tensor_name:
        return "model output"
    parts = sorted(tensor_name.split(";"), key=lambda part: not WEIGHTED_OP.match(part.split("/")[-1]))
    candidates = [pieces[1] if len(pieces) > 1 else pieces[0] for pieces in (part.split("/") for part in parts)]
    for candidate in candidates:
        for name in (candidate, candidate.rsplit("_", 1)[0]):
            if name in known:
                return name
    return candidates[0] if candidates else tensor_name


def _signal_power(float_value, quantized, scale, zero_point) -> float:
    return float(np.mean(np.square(np.asarray(float_value, np.float64))))


def _noise_power(float_value, quantized, scale, zero_point) -> float:
    dequantized = (np.asarray(quantized, np.float64) - zero_point) * scale
    return float(np.mean(np.square(dequantized - np.asarray(float_value, np.float64))))


def per_layer(debug_model: bytes, images: np.ndarray, known: set[str]) -> pd.DataFrame:
    """The debugger's layer statistics for the debug model `debug_model` (NumericVerify ops) on uint8
    `images` (n, H, W, 3), as a table with COLUMNS in graph order."""
    import tensorflow as tf

    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"signal_power": _signal_power, "noise_power": _noise_power})
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debug_model, debug_dataset=_dataset(images), debug_options=options)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    stats = pd.read_csv(io.StringIO(dump.getvalue()))
    with np.errstate(divide="ignore"):
        sqnr = 10 * np.log10(stats["signal_power"] / stats["noise_power"])
    table = pd.DataFrame({
        "layer": [layer_name(n, known) for n in stats["tensor_name"]], "op": stats["op_name"],
        "sqnr_db": sqnr.replace(np.inf, np.nan), "rmse_steps": np.sqrt(stats["mean_squared_error"]) / stats["scale"],
        "rmse": np.sqrt(stats["mean_squared_error"]), "mean_error": stats["mean_error"],
        "max_abs_error": stats["max_abs_error"], "elements": stats["num_elements"].astype(int),
        "scale": stats["scale"], "zero_point": stats["zero_point"].astype(int),
        "tensor_index": stats["tensor_idx"].astype(int), "tensor_name": stats["tensor_name"]})
    table = table.sort_values("tensor_index", kind="stable").reset_index(drop=True)
    table.insert(0, "order", range(len(table)))
    return table[COLUMNS]


def _dataset(images: np.ndarray):
    def generate():
        for image in images:
            yield [image[None].astype(np.float32)]
    return generate


def probabilities(content: bytes, images: np.ndarray) -> np.ndarray:
    """float32 (n, classes) outputs of a float-input TFLite model on uint8 `images`, with LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    out = []
    for image in images:
        interpreter.set_tensor(source, image[None].astype(np.float32))
        interpreter.invoke()
        out.append(interpreter.get_tensor(target)[0].copy())
    return np.stack(out)


def quantization_of(content: bytes) -> dict[str, tuple]:
    """{tensor name: (scales, zero points)} of the quantized tensors of a TFLite model."""
    from mcuvision.convert import tflite_graph

    found = {}
    for tensor in tflite_graph.load(content).subgraphs[0].tensors:
        q = tensor.quantization
        if q is not None and q.scale is not None and len(q.scale):
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            found[name] = (tuple(float(v) for v in q.scale), tuple(int(v) for v in q.zeroPoint))
    return found


def same_quantization(debugged: bytes, deployed: bytes) -> bool:
    """Whether every quantized tensor of `debugged` has, in `deployed`, a tensor of its name with the same
    scales and zero points (the deployed model also quantizes its uint8 input, which the debugged lacks)."""
    ours, theirs = quantization_of(debugged), quantization_of(deployed)
    return all(theirs.get(name) == q for name, q in ours.items())


def measure(converter, images: np.ndarray, reference: np.ndarray, known: set[str], deployed: bytes) -> LayerErrors:
    """Run the debugger (see _measure), with the converter's chatter kept off the output."""
    from mcuvision.convert.quantization import quiet_conversion

    with quiet_conversion():
        return _measure(converter, images, reference, known, deployed)


def _measure(converter, images: np.ndarray, reference: np.ndarray, known: set[str], deployed: bytes) -> LayerErrors:
    """Run the debugger. `converter`: a TFLiteConverter set up as the deployed int8 model's (optimizations,
    representative dataset of the calibration images, int8 built-ins, granularity) with float32 input and
    output; `images`: uint8 (n, H, W, 3) validation images; `reference`: the float model's probabilities
    (n, classes) on them; `known`: the Keras model's layer names; `deployed`: the int8 TFLite model whose
    quantization the debugged one is checked against. Raises ValueError (the debugger's) when the converter
    cannot make a debug model."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=_dataset(images))
    table = per_layer(debugger.get_debug_quantized_model(), images, known)
    full_model = debugger.get_nondebug_quantized_model()
    full = float(np.mean(np.square(probabilities(full_model, images) - reference)))

    def share(tensor_names: list[str]) -> float | None:
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=tensor_names)
        kept = debugger.get_nondebug_quantized_model()
        if kept == full_model or full == 0:
            return None  # the converter kept them int8 (or there is no error to share)
        return 1 - float(np.mean(np.square(probabilities(kept, images) - reference))) / full

    ranked = table.dropna(subset=["sqnr_db"]).sort_values("sqnr_db", kind="stable").head(WORST)
    worst = [{"layer": r.layer, "op": r.op, "order": int(r.order), "sqnr_db": float(r.sqnr_db),
              "rmse_steps": float(r.rmse_steps), "share_of_output_error": share([r.tensor_name])}
             for r in ranked.itertuples()]
    together = share(list(ranked["tensor_name"])) if len(ranked) else None
    return LayerErrors(table=table, images=len(images), output_mse=full, worst=worst, worst_share=together,
                       matches_deployed=same_quantization(full_model, deployed))


def record(errors: LayerErrors, split: str = "val") -> dict:
    """metrics/quantize.json's `layer_error`: what the model card reads."""
    return {"images": errors.images, "split": split, "layers": len(errors.table),
            "output_mse": errors.output_mse, "worst": errors.worst, "worst_share_of_output_error": errors.worst_share,
            "median_sqnr_db": float(errors.table["sqnr_db"].median()),
            "matches_deployed_quantization": errors.matches_deployed,
            "tool": "tf.lite.experimental.QuantizationDebugger (per-layer NumericVerify)"}


def write_reports(errors: LayerErrors, folder: Path) -> list[Path]:
    """`folder`/layer_error.csv (the table) and layer_error.png (SQNR and RMSE per layer, the worst
    marked); returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    csv, png = folder / CSV_FILE, folder / PLOT_FILE
    errors.table.to_csv(csv, index=False, float_format="%.6g")
    t = errors.table
    worst = {w["order"] for w in errors.worst}
    colours = ["tab:red" if i in worst else "tab:gray" for i in t["order"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, len(t) * 0.06), 6), dpi=100, sharex=True)
    top.bar(t["order"], t["sqnr_db"].fillna(0), color=colours, width=0.8)
    top.set_ylabel("SQNR (dB)")
    top.set_title(f"Per-layer int8 error, {errors.images} validation images (red: the {len(worst)} lowest SQNR)")
    for w in errors.worst:
        top.annotate(w["layer"], (w["order"], w["sqnr_db"]), textcoords="offset points", xytext=(0, 4),
                     ha="center", fontsize=7, rotation=90)
    bottom.bar(t["order"], t["rmse_steps"], color=colours, width=0.8)
    bottom.axhline(IDEAL_RMSE_STEPS, color="tab:blue", linestyle="--", linewidth=1,
                   label="rounding alone, 1/sqrt(12) step")
    bottom.set_ylabel("RMSE (steps)")
    bottom.set_xlabel("op output, in graph order")
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return [csv, png]
