"""reports/profile.md: the seed card's footprint and inference-time tables, measured vs estimated.

Every column says where its figure comes from: "measured (TFLite Micro)" for what the real
microcontroller runtime allocated on this host, "measured on this host" for host latency,
"computed" for figures read from the graph, "estimated (board model)" for anything about a
board, which no run here has touched. An estimated time carries a ± only where its model was
fitted on several architectures (the hold-out bar), RAM verdicts are given per runtime, "not
modelled" where none was, and energy per inference is labelled estimated.
"""
from __future__ import annotations

from mcuvision.formats import W4W8_MODEL_FILE
from mcuvision.markdown import kib, table


def _fit(ok: bool | None, margin: float | None) -> str:
    if ok is None:
        return "not modelled"
    return f"{'yes' if ok else '**no**'} ({margin:+.2f} KiB)"


def error_bar(b: dict) -> str:
    """A board's estimated time with its error bar where one is measured, e.g. "158.74 ±8.6%"; a board
    calibrated on too few points or not at all says so instead of printing a ±."""
    bar = b.get("latency_bar_pct")
    if bar is not None:
        text = f"{b['estimated_ms']:.2f} ±{bar:.1f}%"
    else:
        text = f"{b['estimated_ms']:.2f} " + ("(no error bar: 2 points)" if b.get("calibrated") else "(uncalibrated)")
    memory = b.get("external_memory") or {}
    return text + (" (activations in external RAM)" if memory.get("applies") else "")


def error_text(b: dict) -> str:
    """What a board's time is calibrated on and how its error bar was measured, in words, for a table cell."""
    e, memory = b.get("latency_error"), (b.get("external_memory") or {})
    tail = f"; {memory['basis']}" if memory.get("applies") else ""
    if e:
        unseen = e["unseen"]
        seen = (f"; on {unseen['count']} of ST's published models it never saw: {unseen['min_pct']:+.1f}% to "
                f"{unseen['max_pct']:+.1f}%, {unseen['covered']} inside the bar") if unseen["count"] else ""
        return (f"± = {e['note']}; seen: {', '.join(e['architectures'])}; holding each architecture out of the fit "
                f"and of the bar, the bar covered {e['coverage']}{seen}; leave-one-point-out median "
                f"{e['median_abs_pct']:.1f}%" + tail)
    if not b.get("calibrated"):
        return f"**uncalibrated**: no published time to measure an error on ({b.get('assumption')})" + tail
    checks = b.get("latency_checks")
    seen = ("; on ST's published models it never saw: " + ", ".join(f"{n} {v:+.1f}%" for n, v in checks.items())
            if checks else "; not measured on other architectures")
    return f"calibrated on {b['calibrated_on']}{seen}" + tail


def render(p: dict) -> str:
    t, q = p["int8_tflite"], p.get("int8_qdq_onnx")
    ram, macc = t["activation_ram"], t["macc"]
    res = "x".join(str(v) for v in t["input"]["shape"][1:])
    name = p["model"]["name"]
    out = [f"# Profile of {name} ({res}, int8)", "",
           f"Measured on this host ({p['host']['cpu']}) with TFLite Micro {p['host']['versions']['tflite_micro']}, "
           f"LiteRT {p['host']['versions']['litert']} and onnxruntime {p['host']['versions']['onnxruntime']}. "
           "No board was attached: every board figure is an **estimate** (conf/board and the per-kind latency "
           "model, with its hold-out error bar where one is measured), never a measurement.", ""]

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
            "The ± is printed only where a board's model was fitted on several architectures: it is the 80th "
            "percentile of the errors with each architecture held out of the fit. Boards calibrated on the card's "
            "two LC v1 points print no ±.", ""]
    header = ["Model", "Format", "Resolution", "Board", "Execution Engine", "Frequency",
              "Inference time (ms), estimated (board model) ± hold-out error bar", "Latency model",
              "Calibrated on, and error (how measured)"]
    rows = []
    for b in p["boards"].values():
        rows.append([name, "Int8", res, b["display_name"], b["execution_engine"], f"{b['clock_mhz']:g} MHz",
                     error_bar(b), _model_text(b), error_text(b)])
    out += table(header, rows)
    out += energy_section(p["boards"].values())
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

    out += ["## Board latency models: calibration and hold-out error", "",
            "Per kind of work where a board has a fitted model (mcuvision/profiling/board_latency.json; refit with "
            "`python benchmarks/fit_latency.py --cached`): cycles per unit of each kind of work, non-negative least "
            "squares on relative error. The STM32F769I-DISCO uses the H747's per-kind shape with one scale; the other "
            "boards the board file's one coefficient. Hold-out: each published time predicted by a fit without "
            "any resolution of its architecture; the residual on a fitted point is not shown as an error.", ""]
    header = ["Board", "Latency model", "Calibrated on", "Error bar", "Hold-out error (median / worst)",
              "This model's work"]
    rows = []
    for b in p["boards"].values():
        e = b.get("latency_error")
        work = ", ".join(f"{k} {v:,}" for k, v in t.get("work", {}).items()) if b.get("latency_coefficients") else "-"
        rows.append([b["display_name"], _model_text(b), b.get("calibrated_on", "-"),
                     f"±{e['bar_pct']:.1f}% ({e['percentile']:g}th percentile)" if e else "none (too few points)",
                     f"{e['architecture_out']['median_abs_pct']:.1f}% / {e['architecture_out']['max_abs_pct']:.1f}%"
                     if e else "-", work])
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


def energy_section(boards) -> list[str]:
    """The energy-per-inference table (every figure estimated: mcuvision/profiling/energy.py)."""
    rows, battery = [], None
    for b in boards:
        e = b.get("energy")
        if e is None:
            rows.append([b["display_name"], "not estimated: no datasheet run-mode current in the board file "
                         "(its comment says why)", "-", "-", "-", "-"])
            continue
        battery = e["battery"]
        charge, year = e["inferences_per_charge"], e["per_hour_for_a_year"]
        rows.append([b["display_name"], f"{e['uj']:,.0f} ({e['uj_low']:,.0f}-{e['uj_high']:,.0f})",
                     f"{e['mw_low']:g}-{e['mw_high']:g}", _span(charge, "{:,}"), _span(year, "{:g}"),
                     f"{e['basis']}; {e['source']}"])
    return (["## Energy per inference, estimated", "",
             "Estimated, not measured: the estimated time (± its error bar where the board has one) × the chip's "
             "run-mode current × supply voltage from its datasheet (cited per board). The chip alone, not the board "
             "(SDRAM, display, debugger); inferences per charge count only the inferences' energy (no sleep current, "
             f"no converter loss), so they are upper bounds. Battery: {battery or '1000 mAh at 3.3 V'}.", ""]
            + table(["Board", "Energy per inference (µJ), estimated (interval)", "Active power (mW), datasheet",
                     f"Inferences per charge of {battery or 'the battery'}, estimated",
                     "Inferences per hour for the battery to last a year, estimated", "Basis and source"], rows))


def _span(pair: list, form: str) -> str:
    return "-" if None in pair else f"{form.format(pair[0])}-{form.format(pair[1])}"


def _model_text(b: dict) -> str:
    if b.get("latency_coefficients"):
        kind = "per kind" if b.get("latency_method") == "per-kind" else "the H747's per-kind shape, scaled"
        return f"{kind}: " + ", ".join(f"{k} {v:.3g}" for k, v in b["latency_coefficients"].items()) + \
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
