"""reports/profile.md: the seed card's footprint and inference-time tables, measured vs estimated.

Every column says where its figure comes from: "measured (TFLite Micro)" for what the real
microcontroller runtime allocated on this host, "measured on this host" for host latency,
"computed" for figures read from the graph, "estimated (board model)" for anything about a
board, which no run here has touched.
"""
from __future__ import annotations

from ..formats import W4W8_MODEL_FILE

KIB = 1024.0


def kib(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value / KIB:.2f} KiB"


def _fit(ok: bool, margin: float) -> str:
    return f"{'yes' if ok else '**no**'} ({margin:+.2f} KiB)"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def render(p: dict) -> str:
    t, q = p["int8_tflite"], p.get("int8_qdq_onnx")
    ram, macc = t["activation_ram"], t["macc"]
    res = "x".join(str(v) for v in t["input"]["shape"][1:])
    name = p["model"]["name"]
    out = [f"# Profile of {name} ({res}, int8)", "",
           f"Measured on this host ({p['host']['cpu']}) with TFLite Micro {p['host']['versions']['tflite_micro']}, "
           f"LiteRT {p['host']['versions']['litert']} and onnxruntime {p['host']['versions']['onnxruntime']}. "
           "No board was attached: every board figure is an **estimate** from conf/board "
           "(latency model calibrated on the seed card, see the last table), never a measurement.", ""]

    out += ["## Memory footprint", "",
            "Shaped like the seed card's \"Reference MCU memory footprints\". Activation RAM is TFLite Micro's "
            "planned arena head, Runtime RAM its persistent tail (ST's runtime keeps less there: the card's "
            "figures come from ST Edge AI Core, not from TFLite Micro).", ""]
    header = ["Model", "Format", "Resolution", "Activation RAM, measured (TFLite Micro head)",
              "Runtime RAM, measured (TFLite Micro tail)", "Total RAM, measured (TFLite Micro arena)",
              "Minimal arena, measured (bisection)", "Lower bound, computed (peak live activations)",
              "Weights Flash, measured (constant tensors)", "Model file"]
    rows = [[name, "Int8 TFLite", res, kib(ram["head_bytes"]), kib(ram["tail_bytes"]), kib(ram["total_bytes"]),
             f"{ram['minimal_arena_bytes']} B", kib(ram["lower_bound_bytes"]), kib(t["weights_bytes"]),
             kib(t["file_bytes"])]]
    for key, label in (("int8_qdq_onnx", "Int8 QDQ ONNX"), ("w4w8_qdq_onnx", "Int8/Int4 QDQ ONNX")):
        if key in p:
            rows.append([p["model"].get("onnx_name", "-") if key == "int8_qdq_onnx" else W4W8_MODEL_FILE, label, res,
                         "n/a (TFLite Micro runs .tflite only)", "n/a", "n/a", "n/a", "n/a",
                         kib(p[key]["weights_bytes"]), kib(p[key]["file_bytes"])])
    out += table(header, rows)
    gap = ram["head_bytes"] - ram["lower_bound_bytes"]
    out += [f"- Arena: head {ram['head_bytes']} B + tail {ram['tail_bytes']} B = total {ram['total_bytes']} B. "
            f"Smallest arena_size that allocates and runs one inference: {ram['minimal_arena_bytes']} B; "
            f"{ram['minimal_arena_bytes'] - 1} B {'fails' if ram['one_byte_less_fails'] else '**does not fail**'} "
            f"({ram['probes']} probes). {_total_vs_minimum(ram)}",
            f"- Lower bound: peak of simultaneously live activations over the op order = {ram['lower_bound_bytes']} B "
            f"(at op {ram['peak_op_index']} {ram['peak_op']}); TFLite Micro's plan is {gap} B "
            f"({ram['head_over_lower_bound_pct']:.2f}%) above it.",
            f"- MACC, computed from the graph: **{macc['total']:,}** (conv {macc['by_kind']['conv']:,}, depthwise "
            f"{macc['by_kind']['depthwise']:,}, dense {macc['by_kind']['dense']:,}); other ops, not in the total: "
            + ", ".join(f"{k} {v:,}" for k, v in macc["by_kind"].items() if k not in ("conv", "depthwise", "dense"))
            + ".", ""]

    out += ["## Fit on each board: estimated (board model)", "",
            "RAM needed = TFLite Micro total arena (measured) + the board file's runtime RAM allowance; "
            "flash needed = weights (measured) + the board file's code flash (assumed, from the card's ~101 KiB). "
            "Budgets: the largest contiguous internal RAM region / internal flash, or external memory where the "
            "board file says so.", ""]
    header = ["Board", "Series", "RAM needed, estimated", "RAM budget", "Fits RAM (margin)",
              "Code Flash, estimated (board model)", "Flash needed, estimated", "Flash budget", "Fits flash (margin)"]
    rows = []
    for b in p["boards"].values():
        rows.append([b["display_name"] + (" (selected)" if b.get("selected") else ""), b["series"],
                     f"{b['ram_needed_kib']:.2f} KiB", f"{b['ram_budget_kib']:,.0f} KiB {b['ram_fit']}",
                     _fit(b["fits_ram"], b["ram_margin_kib"]), f"{b['code_flash_kib']:g} KiB",
                     f"{b['flash_needed_kib']:.2f} KiB", f"{b['flash_budget_kib']:,.0f} KiB {b['flash_fit']}",
                     _fit(b["fits_flash"], b["flash_margin_kib"])])
    out += table(header, rows)

    out += ["## Inference time", "", "Shaped like the seed card's \"Reference MCU/MPU inference time\".", ""]
    header = ["Model", "Format", "Resolution", "Board", "Execution Engine", "Frequency",
              "Inference time (ms), estimated (board model)", "Latency model", "Calibration"]
    rows = []
    for b in p["boards"].values():
        model = (f"{b['latency_value']:g} cycles/MACC" if b["latency_model"] == "cycles_per_macc"
                 else f"{b['latency_value']:g} ms/MMACC")
        calib = (f"max error {b['max_abs_calibration_error_pct']:.1f}% on the card's points" if b["calibrated"]
                 else "**uncalibrated** (assumption)")
        rows.append([name, "Int8", res, b["display_name"], b["execution_engine"], f"{b['clock_mhz']:g} MHz",
                     f"{b['estimated_ms']:.2f}", model, calib])
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

    out += ["## Board latency model: error on its calibration points", "",
            "One coefficient per board, least squares on relative error through the seed card's two published "
            "times (an affine model would pass through both exactly and could not be checked). "
            "Coefficient: value in the board file; fit: recomputed here from the points.", ""]
    header = ["Board", "Latency model", "Coefficient (file)", "Coefficient (fit)", "Resolution", "MACC",
              "Published (ms)", "Model (ms)", "Error", "Source"]
    rows = []
    for b in p["boards"].values():
        if not b["calibrated"]:
            rows.append([b["display_name"], b["latency_model"], f"{b['latency_value']:g}", "-", "-", "-", "-", "-",
                         "uncalibrated", b["assumption"]])
        for e in b["calibration"]:
            rows.append([b["display_name"], b["latency_model"], f"{b['latency_value']:g}",
                         f"{b['latency_value_fitted']:.4f}", e["resolution"], f"{e['macc']:,}",
                         f"{e['published_ms']:.2f}", f"{e['model_ms']:.2f}", f"{e['error_pct']:+.2f}%", e["source"]])
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


def _total_vs_minimum(ram: dict) -> str:
    diff = ram["total_minus_minimal_bytes"]
    if diff >= 0:
        return (f"TFLite Micro aligns buffers to {ram['alignment_bytes']} B, hence the {diff} B between the "
                "recorded total and the minimum.")
    # Allocation needs transient space that is released before the final head/tail are recorded.
    return (f"The minimum is {-diff} B above the recorded total: allocating the tensors needs transient "
            "(temp) arena space beyond the final head + tail.")
