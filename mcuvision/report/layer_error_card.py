"""The model card's per-layer quantization error section, from metrics/quantize.json's `layer_error`
(written by quantize: mcuvision/convert/layer_error.py)."""
from __future__ import annotations

from mcuvision.markdown import table


def _share(value: float | None) -> str:
    return "n/a (kept int8 by the converter)" if value is None else f"{100 * value:.1f}%"


def layer_error_section(quantize: dict) -> list[str]:
    """Markdown lines naming the lowest-SQNR layers and their share of the output error; [] when the
    record has no per-layer measurement (quantize.layer_error_images 0, or an older record)."""
    record = quantize.get("layer_error")
    if not record or not record.get("images"):
        return []
    rows = [[f"`{w['layer']}`", w["op"], f"{w['sqnr_db']:.1f}", f"{w['rmse_steps']:.2f}",
             _share(w["share_of_output_error"])] for w in record["worst"]]
    together = record["worst_share_of_output_error"]
    caveat = ("" if record.get("matches_deployed_quantization", True) else
              " Warning: the debugged model's int8 scales differ from the deployed model's.")
    return (["## Quantization error per layer", "",
             f"Measured by TensorFlow Lite's quantization debugger on {record['images']} {record['split']} images: "
             "each int8 op against its float twin fed the same inputs, so a layer's figure is its own error, "
             f"not its predecessors'. Median SQNR {record['median_sqnr_db']:.1f} dB over {record['layers']} op "
             "outputs; RMSE in quantization steps is 0.29 for rounding alone. The "
             f"{len(rows)} lowest SQNR:", ""]
            + table(["Layer", "Op", "SQNR (dB)", "RMSE (steps)", "Share of the output error"], rows)
            + [f"Share: how much of the int8 model's output error (mean squared difference of the class "
               f"probabilities against float, {record['output_mse']:.3g} here) goes away when the debugger keeps "
               f"that layer in float; the {len(rows)} together: {_share(together)}. A share of 0: the layer's error "
               "is the rounding of its output, which the next int8 op applies anyway; a negative one: its error "
               f"offset others'.{caveat} Every layer: `reports/quantize/layer_error.csv` and `.png`.", ""])
