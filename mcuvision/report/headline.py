"""metrics/headline.json: the only file declared as DVC metrics, the figures experiments are compared by.

`dvc exp show` prints a column per number of every metrics file; with every stage's full record
declared it printed 329 metric columns, the first top-1 at column 306, after validate's
per-class image counts. The full records stay in metrics/<stage>.json (outputs read by the model card
and `make diff`); this file holds at most ~30 numbers, accuracy first:

1. per format: top1 with its 95% Wilson interval (top1_low, top1_high), the quantized formats'
   drop_points against float, the int4/int8 model's drop_vs_int8_points and int4_share_pct;
2. images: how many images those top-1s were measured on;
3. the int8 TFLite model's activation_ram_bytes (TFLite Micro arena head), weights_flash_bytes,
   macc, and the selected board's estimated_ms;
4. training: best_val_accuracy and epochs_run.

Key names are the source files' own, so a figure has one name wherever it appears.
"""
from __future__ import annotations

from mcuvision.formats import FORMATS, QUANTIZED

W4W8 = "w4w8_qdq_onnx"
MAX_COLUMNS = 30


def headline(evaluate: dict, profile: dict, quantize: dict, train: dict) -> dict:
    """The headline figures from the loaded metrics/evaluate.json, profile.json, quantize.json and
    train.json documents, as an ordered dict of numbers (fractions, points, bytes, MACC, ms, counts).

    Formats absent from evaluate (the int4/int8 model when quantize made none) are left out.
    Raises KeyError when a document lacks a field the headline needs (run `dvc repro` first)."""
    out: dict = {}
    for name in FORMATS:
        if name not in evaluate:
            continue
        m = evaluate[name]
        figures = {k: m[k] for k in ("top1", "top1_low", "top1_high")}
        if name in QUANTIZED:
            figures["drop_points"] = m["drop_points"]
        if name == W4W8:
            figures["drop_vs_int8_points"] = m["drop_vs_int8_points"]
            figures["int4_share_pct"] = quantize[W4W8]["int4_share_pct"]
        out[name] = figures
    out["images"] = evaluate["images"]
    model = profile["int8_tflite"]
    out.update(activation_ram_bytes=model["activation_ram"]["head_bytes"], weights_flash_bytes=model["weights_bytes"],
               macc=model["macc"]["total"], board_estimated_ms=profile["boards"][profile["board"]]["estimated_ms"],
               best_val_accuracy=train["best_val_accuracy"], epochs_run=train["epochs_run"])
    return out


def leaf_count(document) -> int:
    """How many columns `dvc exp show` gives a metrics document: one per leaf of its nested dicts that
    is a number, bool or string (DVC 3 shows no column for a list or a null)."""
    if isinstance(document, dict):
        return sum(leaf_count(v) for v in document.values())
    return 0 if document is None or isinstance(document, list) else 1
