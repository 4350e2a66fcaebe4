"""reports/profile.md: the seed card's footprint and inference-time tables, measured vs estimated.

Every column says where its figure comes from: "measured (TFLite Micro)" for what the real
microcontroller runtime allocated on this host, "measured on this host" for host latency,
"computed" for figures read from the graph, "estimated (board model)" for anything about a
board, which no run here has touched. Every estimated time carries its latency model's
leave-one-out error, and RAM verdicts are given per runtime, "not modelled" where none was.
"""
from __future__ import annotations

from mcuvision.formats import W4W8_MODEL_FILE
from mcuvision.markdown import kib, table


def _fit(ok: bool | None, margin: float | None) -> str:
    if ok is None:
        return "not modelled"
    return f"{'yes' if ok else '**no**'} ({margin:+.2f} KiB)"


def error_bar(b: dict) -> str:
    """A board's estimated time with its leave-one-out error, e.g. "158.74 ±4.5%"."""
    e = b.get("latency_error")
    return f"{b['estimated_ms']:.2f} " + (f"±{e['median_abs_pct']:.1f}%" if e else "(no error measured)")


def error_text(b: dict) -> str:
    """How the error bar of a board's time was measured, in words, for a table cell."""
    e = b.get("latency_error")
    if not e:
        return f"**uncalibrated**: no published time to measure an error on ({b.get('assumption')})"
    return (f"leave-one-out median {e['median_abs_pct']:.1f}%, worst {e['max_abs_pct']:.1f}% over {e['points']} "
            f"published times; seen: {', '.join(e['architectures'])}; {e['note']}")


def render(p: dict) -> str:
    t, q = p["int8_tflite"], p.get("int8_qdq_onnx")
    ram, macc = t["activation_ram"], t["macc"]
    res = "x".join(str(v) for v in t["input"]["shape"][1:])
    name = p["model"]["name"]
    out = [f"# Profile of {name} ({res}, int8)", "",
           f"Measured on this host ({p['host']['cpu']}) with TFLite Micro {p['host']['versions']['tflite_micro']}, "
           f"LiteRT {p['host']['versions']['litert']} and onnxruntime {p['host']['versions']['onnxruntime']}. "
           "No board was attached: every board figure is an **estimate** (conf/board and the per-kind latency "
           "model, with its leave-one-out error), never a measurement.", ""]

    out += ["## Memory footprint", "",
            "Shaped like the seed card's \"Reference MCU memory footprints\". Activation RAM is TFLite Micro's "
            "planned arena head, Runtime RAM its persistent tail (ST's runtime keeps less there: the card's "
            "figures come from ST Edge AI Core, not from TFLite Micro).", ""]
    header = ["Model", "Format", "Resolution", "Activation RAM, measured (TFLite Micro head)",
              "Runtime RAM, measured (TFLite Micro tail)", "TFLite Micro arena (measured)",
              "Minimal arena, measured (bisection)", "Whole-tensor peak for this op order (computed)",
              "Weights Flash, measured (constant tensors)", "Model file"]
    rows = [[name, "Int8 TFLite", res, kib(ram["head_bytes"]), kib(ram["tail_bytes"]), kib(ram["total_bytes"]),
             f"{ram['minimal_arena_bytes']} B", kib(ram["whole_tensor_peak_bytes"]), kib(t["weights_bytes"]),
             kib(t["file_bytes"])]]
    for key, label in (("int8_qdq_onnx", "Int8 QDQ ONNX"), ("w4w8_qdq_onnx", "Int8/Int4 QDQ ONNX")):
        if key in p:
            rows.append([p["model"].get("onnx_name", "-") if key == "int8_qdq_onnx" else W4W8_MODEL_FILE, label, res,
                         "n/a (TFLite Micro runs .tflite only)", "n/a", "n/a", "n/a", "n/a",
                         kib(p[key]["weights_bytes"]), kib(p[key]["file_bytes"])])
    out += table(header, rows)
    gap = ram["head_bytes"] - ram["whole_tensor_peak_bytes"]
    out += [f"- Arena: head {ram['head_bytes']} B + tail {ram['tail_bytes']} B = total {ram['total_bytes']} B. "
            f"Smallest arena_size that allocates and runs one inference: {ram['minimal_arena_bytes']} B; "
            f"{ram['minimal_arena_bytes'] - 1} B {'fails' if ram['one_byte_less_fails'] else '**does not fail**'} "
            f"({ram['probes']} probes). {_total_vs_minimum(ram)}",
            f"- Whole-tensor peak for this op order (computed): the most bytes of whole activation tensors live "
            f"at once = {ram['whole_tensor_peak_bytes']} B (at op {ram['peak_op_index']} {ram['peak_op']}); TFLite "
            f"Micro gives every tensor a whole buffer, and its plan is {gap} B "
            f"({ram['head_over_whole_tensor_peak_pct']:.2f}%) above it. It bounds no other runtime: ST Edge AI Core "
            "overlaps buffers and can need less, or more with its scratch buffers.",
            f"- MACC, computed from the graph: **{macc['total']:,}** (conv {macc['by_kind']['conv']:,}, depthwise "
            f"{macc['by_kind']['depthwise']:,}, dense {macc['by_kind']['dense']:,}); other ops, not in the total: "
            + ", ".join(f"{k} {v:,}" for k, v in macc["by_kind"].items() if k not in ("conv", "depthwise", "dense"))
            + ".", ""]

    out += ["## Fit on each board: estimated (board model), per runtime", "",
            "RAM needed with TFLite Micro = TFLite Micro arena (measured) + the board file's runtime RAM "
            "allowance. With ST Edge AI Core: its report's activations + runtime RAM when the vendor backend ran, "
            "otherwise \"not modelled\" (its allocator overlaps buffers: neither the TFLite Micro arena nor the "
            "whole-tensor peak tells whether it fits). Flash needed = weights (measured) + the board file's code "
            "flash (assumed, from the card's ~101 KiB). Budgets: the largest contiguous internal RAM region / "
            "internal flash, or external memory where the board file says so.", ""]
    header = ["Board", "Series", "RAM budget", "RAM needed with TFLite Micro", "Fits with TFLite Micro (margin)",
              "RAM needed with ST Edge AI Core", "Fits with ST Edge AI Core (margin)",
              "Code Flash, estimated (board model)", "Flash needed, estimated", "Flash budget", "Fits flash (margin)"]
    rows = []
    for b in p["boards"].values():
        tflm, st = b["ram_fit_by_runtime"]["tflite_micro"], b["ram_fit_by_runtime"]["stedgeai"]
        rows.append([b["display_name"] + (" (selected)" if b.get("selected") else ""), b["series"],
                     f"{b['ram_budget_kib']:,.0f} KiB {b['ram_fit']}", f"{tflm['needed_kib']:.2f} KiB",
                     _fit(tflm["fits"], tflm["margin_kib"]),
                     "-" if st["needed_kib"] is None else f"{st['needed_kib']:.2f} KiB",
                     _fit(st["fits"], st["margin_kib"]),
                     f"{b['code_flash_kib']:g} KiB", f"{b['flash_needed_kib']:.2f} KiB",
                     f"{b['flash_budget_kib']:,.0f} KiB {b['flash_fit']}",
                     _fit(b["fits_flash"], b["flash_margin_kib"])])
    out += table(header, rows)
    basis = {st["basis"] for b in p["boards"].values() for st in [b["ram_fit_by_runtime"]["stedgeai"]]}
    out += [f"- ST Edge AI Core: {text}." for text in sorted(basis)] + [""]

    out += ["## Inference time", "", "Shaped like the seed card's \"Reference MCU/MPU inference time\". "
            "Each time carries its model's leave-one-out error (median over the published times it was checked "
            "on; the worst case is in the last column).", ""]
    header = ["Model", "Format", "Resolution", "Board", "Execution Engine", "Frequency",
              "Inference time (ms), estimated (board model) ± leave-one-out error", "Latency model",
              "Error (how measured)"]
    rows = []
    for b in p["boards"].values():
        rows.append([name, "Int8", res, b["display_name"], b["execution_engine"], f"{b['clock_mhz']:g} MHz",
                     error_bar(b), _model_text(b), error_text(b)])
    out += table(header, rows)
    header = ["Runtime", "Format", "Threads", "Median (ms), measured on this host", "p10-p90 (ms)", "min-max (ms)",
              "Runs", "Kernels"]
    rows = [[s["runtime"], fmt, s["threads"], f"{s['median_ms']:.2f}", f"{s['p10_ms']:.2f}-{s['p90_ms']:.2f}",
             f"{s['min_ms']:.2f}-{s['max_ms']:.2f}", s["runs"], s.get("kernels", "-")]
            for fmt, s in [("Int8 TFLite", t["latency"]["litert_1_thread"]),
                           ("Int8 TFLite", t["latency"]["tflite_micro"])]
            + ([("Int8 QDQ ONNX", q["latency"]["onnxruntime_1_thread"])] if q else [])
            + ([("Int8/Int4 QDQ ONNX", p["w4w8_qdq_onnx"]["latency"]["onnxruntime_1_thread"])]
               if "w4w8_qdq_onnx" in p else [])]
    out += [f"Host latency, measured on this host ({p['host']['cpu']}), single image, after one warm-up run:", ""]
    out += table(header, rows)

    out += ["## Board latency models: leave-one-out error", "",
            "Per kind of work where a board has a fitted model (mcuvision/profiling/board_latency.json; refit with "
            "`python benchmarks/fit_latency.py`): cycles per conv, pointwise and depthwise MACC, per elementwise "
            "element and per operator, non-negative least squares on relative error. Otherwise the board file's "
            "one coefficient, fitted on the seed card's two LC v1 points. Leave-one-out: each published time "
            "predicted by a fit on the others; the residual on a fitted point is not shown as an error.", ""]
    header = ["Board", "Latency model", "Points", "Leave-one-out error (median / worst)", "Architectures seen",
              "This model's work"]
    rows = []
    for b in p["boards"].values():
        e = b.get("latency_error")
        work = ", ".join(f"{k} {v:,}" for k, v in t.get("work", {}).items()) if b.get("latency_coefficients") else "-"
        rows.append([b["display_name"], _model_text(b), e["points"] if e else 0,
                     f"{e['median_abs_pct']:.1f}% / {e['max_abs_pct']:.1f}%" if e else "uncalibrated",
                     ", ".join(e["architectures"]) if e else (b.get("assumption") or "-"), work])
    out += table(header, rows)

    vendor = {k: b["vendor"] for k, b in p["boards"].items() if b.get("vendor")}
    if vendor:
        out += ["## ST Edge AI Core (vendor tool estimates, not measured on a board)", ""]
        header = ["Board", "Activation RAM", "Runtime RAM", "Weights Flash", "Code Flash", "MACC", "Tool"]
        out += table(header, [[p["boards"][k]["display_name"], kib(v["activation_ram_bytes"]),
                                kib(v["runtime_ram_bytes"]), kib(v["weights_flash_bytes"]), kib(v["code_flash_bytes"]),
                                f"{v['macc']:,}", v.get("tool_version") or "-"] for k, v in vendor.items()])

    out += ["<details><summary>MACC per layer (computed from the .tflite graph)</summary>", ""]
    out += table(["#", "Op", "Kind", "MACC", "Output tensor"],
                  [[r["index"], r["op"], r["kind"], f"{r['macc']:,}", r["output"][:80]] for r in macc["per_layer"]])
    out += ["</details>", ""]
    return "\n".join(out)


def _model_text(b: dict) -> str:
    if b.get("latency_coefficients"):
        return "per kind: " + ", ".join(f"{k} {v:.3g}" for k, v in b["latency_coefficients"].items()) + \
            " cycles per MACC/element/op"
    unit = "cycles/MACC" if b["latency_model"] == "cycles_per_macc" else "ms/MMACC"
    return f"one coefficient: {b['latency_value']:g} {unit}"


def _total_vs_minimum(ram: dict) -> str:
    diff = ram["total_minus_minimal_bytes"]
    if diff >= 0:
        return (f"TFLite Micro aligns buffers to {ram['alignment_bytes']} B, hence the {diff} B between the "
                "recorded total and the minimum.")
    # Allocation needs transient space that is released before the final head/tail are recorded.
    return (f"The minimum is {-diff} B above the recorded total: allocating the tensors needs transient "
            "(temp) arena space beyond the final head + tail.")
