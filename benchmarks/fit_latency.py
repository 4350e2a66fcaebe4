"""Refit the board latency models on published times and print their hold-out errors and checks.

    python benchmarks/fit_latency.py --zoo ../shared/reference/st_zoo_models [--write]
    python benchmarks/fit_latency.py --cached [--results]   # refit from the counts kept in the JSON

Boards (the points and their sources: benchmarks/zoo_counts.py):
- STM32H747I-DISCO (Cortex-M7, 400 MHz): per kind (conv, pointwise, depthwise MACC, elementwise
  elements, operators) on ST's six zoo models (STM32Cube.AI 7.3.0) and the card's two LC v1 times
  (STEdgeAI Core 3.0.0); plus cycles per byte of activation traffic for models whose activations
  exceed the 512 KiB AXI SRAM, fitted on ST's two zoo models at 224 that do.
- STM32MP157F-DK2 (2 Cortex-A7, 800 MHz, TensorFlow Lite): per kind on the four published zoo times
  (TensorFlow Lite 2.11.0) and the card's two LC v1 times (2.18.0). TensorFlow Lite on a Cortex-A runs
  int8 convolutions through XNNPACK, which turns kxk and 1x1 convolutions alike into one GEMM kernel
  (indirect GEMM) and gives depthwise its own kernel; the model has those two kinds ("gemm",
  "depthwise"). Elementwise and per-operator terms were tried and fitted to zero on these points.
- STM32F769I-DISCO (Cortex-M7, 216 MHz): the H747's per-kind shape, scaled by one factor fitted on
  the card's two LC v1 points; checked on ST's two FD-MobileNet times.
Error bars: the 80th percentile of |error| with every resolution of the held-out architecture left
out (mcuvision/profiling/holdout.py), and the coverage check of that bar.
Only counts (facts) and published figures go into mcuvision/profiling/board_latency.json with --write;
ST's models (SLA0044) are read where they lie and never copied.

--results (implied by --write) writes the tables of docs/profiling.md to benchmarks/results/ (render them
with benchmarks/render_docs.py): board_latency_h747.csv and board_latency_mp157.csv (the fitted points),
board_latency_checks.csv (ST's other published times, never fitted) and energy_lc_v1_128.csv (every
board's estimate for ST EfficientNet LC v1 at 128, from the counts in the JSON and the TFLite Micro
arena measured in profile_lc_v1_128.csv, as the profile stage makes it).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, run as a script

import numpy as np

from benchmarks import zoo_counts
from mcuvision.atomic import write_json
from mcuvision.config.board import BoardConfig, load_board_dir
from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import boards as board_estimate
from mcuvision.profiling import external_memory, holdout, latency_estimate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
H747, MP157, F769 = "stm32h747i_disco", "stm32mp157f_dk2", "stm32f769i_disco"
KINDS = {H747: bl.KINDS, MP157: ("gemm", "depthwise")}
ZOO_SOURCE = {H747: "ST model zoo, STM32Cube.AI 7.3.0 on STM32H747I-DISCO at 400 MHz (st_zoo_models/published.csv)",
              MP157: "ST model zoo, TensorFlow Lite 2.11.0 on STM32MP157F-DK2, 2 CPU at 800 MHz "
                     "(st_zoo_models/published.csv, mp157_ms)"}
TOOL = {H747: ("STM32Cube.AI 7.3.0", "STEdgeAI Core 3.0.0"),
        MP157: ("TensorFlow Lite 2.11.0", "TensorFlow Lite 2.18.0")}
# The seed card's "Reference MCU memory footprints" (STM32H7, STEdgeAI Core 3.0.0): Activation RAM.
LC_V1_ACTIVATION_KIB = {128: 181.01, 224: 466.01}


def board(name: str) -> BoardConfig:
    return BoardConfig.from_file(ROOT / "conf" / "board" / f"{name}.yaml")


def zoo_points(zoo: Path) -> list[dict]:
    points = []
    with (zoo / "published.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            facts = zoo_counts.facts(zoo_counts.tflite_graph.load((zoo / f"{row['model']}.tflite").read_bytes()))
            for name, column in ((H747, "h747_400mhz_ms"), (MP157, "mp157_ms")):
                if row[column].strip():
                    points.append({"name": row["model"], "architecture": zoo_counts.architecture(row["model"]),
                                   "resolution": int(row["res"]), "board": name, "tool": TOOL[name][0],
                                   "published_ms": float(row[column]),
                                   "published_activation_kib": float(row["activation_ram_kib"]),
                                   "source": ZOO_SOURCE[name], **facts})
    return points


def lc_v1_points() -> list[dict]:
    points = []
    for name in (H747, MP157):
        for p in board(name).latency.calibration:
            points.append({"name": f"st_efficientnet_lc_v1_{p.resolution}_int8",
                           "architecture": "ST EfficientNet LC v1", "resolution": p.resolution, "board": name,
                           "tool": TOOL[name][1], "published_ms": p.published_ms,
                           "published_activation_kib": LC_V1_ACTIVATION_KIB[p.resolution],
                           "source": p.source, **zoo_counts.lc_v1(p.resolution)})
    return points


def _errors(names, values) -> dict:
    return {n: round(float(e), 2) for n, e in zip(names, values)}


def per_kind(points: list[dict], checks: list[dict], config: BoardConfig, kinds: tuple[str, ...]) -> dict:
    """A board's per-kind entry: coefficients, errors left out by point and by architecture, bar, coverage."""
    rows, ms = bl.as_matrix([p["work"] for p in points], kinds), np.array([p["published_ms"] for p in points])
    clock, groups, names = config.clock_mhz, [p["architecture"] for p in points], [p["name"] for p in points]
    cycles = bl.fit(rows, ms, clock)
    by_architecture = bl.leave_one_out(rows, ms, clock, groups)
    coverage = holdout.coverage(rows, ms, clock, groups)
    covered, checked = holdout.covered_count(coverage)
    unseen = [c for c in checks if c["published_activation_kib"] <= config.arena_ram_kib or config.engine != "mcu"]
    unseen_ms = bl.predict_ms(cycles, bl.as_matrix([c["work"] for c in unseen], kinds), clock) if unseen else []
    loo = bl.leave_one_out(rows, ms, clock)
    return {"method": "per-kind", "clock_mhz": clock, "kinds": list(kinds),
            "cycles_per_unit": {k: round(float(c), 6) for k, c in zip(kinds, cycles)},
            "leave_one_out_pct": _errors(names, loo), **bl.summary(loo),
            "leave_one_architecture_out_pct": _errors(names, by_architecture),
            "architecture_out": bl.summary(by_architecture),
            "error_bar": {"percentile": holdout.PERCENTILE, "pct": round(holdout.bar_pct(by_architecture), 2),
                          "basis": "whole-architecture hold-out"},
            "coverage": coverage, "coverage_covered": covered, "coverage_checked": checked,
            "fitted_error_pct": _errors(names, 100.0 * (bl.predict_ms(cycles, rows, clock) / ms - 1.0)),
            "architectures": sorted(set(groups)),
            "unseen_pct": _errors([c["name"] for c in unseen],
                                  [100.0 * (e / c["published_ms"] - 1.0) for e, c in zip(unseen_ms, unseen)])}


def one_coefficient_errors(points: list[dict], config: BoardConfig) -> dict:
    """The board file's one-coefficient model's error on each point (the model the per-kind one replaces)."""
    old = [100.0 * (sum(p["work"][k] for k in ("conv", "pointwise", "depthwise")) / 1e6 * config.latency.value
                    / p["published_ms"] - 1.0) if config.latency.model == "ms_per_mmacc" else
           100.0 * (sum(p["work"][k] for k in ("conv", "pointwise", "depthwise")) * config.latency.value
                    / (config.clock_mhz * 1000.0) / p["published_ms"] - 1.0) for p in points]
    unit = "cycles/MACC" if config.latency.model == "cycles_per_macc" else "ms/MMACC"
    return {"one_coefficient": f"{config.latency.value:g} {unit} (board file)",
            "one_coefficient_error_pct": _errors([p["name"] for p in points], old)}


def external(entry: dict, checks: list[dict], config: BoardConfig) -> dict:
    """The external-RAM term of an MCU board, fitted on its check points whose activations exceed internal RAM."""
    out = [c for c in checks if c["published_activation_kib"] > config.arena_ram_kib]
    cycles = [entry["cycles_per_unit"][k] for k in entry["kinds"]]
    base = [float(bl.predict_ms(cycles, bl.as_matrix([c["work"]], entry["kinds"])[0], config.clock_mhz)) for c in out]
    args = (base, [c["published_ms"] for c in out], [c["activation_traffic_bytes"] for c in out], config.clock_mhz)
    names = [c["name"] for c in out]
    return {"cycles_per_byte": round(external_memory.fit(*args), 4), "internal_ram_kib": config.arena_ram_kib,
            "fitted_on": names, "per_kind_alone_pct": _errors(names, [100 * (b / c["published_ms"] - 1)
                                                                      for b, c in zip(base, out)]),
            "leave_one_out_pct": _errors(names, external_memory.leave_one_out(*args)),
            "basis": f"fitted on {len(out)} published times (ST zoo models whose activations exceed "
                     f"{config.arena_ram_kib:g} KiB)"}


def transferred(source: dict, lc: list[dict], checks: list[dict], config: BoardConfig) -> dict:
    """The F769's model: the source board's per-kind cycles times one scale fitted on the board file's points.

    lc: the source board's LC v1 points (their work), in the order of the board file's calibration.
    """
    kinds, clock = source["kinds"], config.clock_mhz
    cycles = np.array([source["cycles_per_unit"][k] for k in kinds])
    shape = np.array([float(bl.predict_ms(cycles, bl.as_matrix([p["work"]], kinds)[0], clock)) for p in lc])
    ms = np.array([p.published_ms for p in config.latency.calibration])
    x = shape / ms
    scale = float(x.sum() / (x * x).sum())
    check_ms = [scale * float(bl.predict_ms(cycles, bl.as_matrix([c["work"]], kinds)[0], clock)) for c in checks]
    em = source.get("external_memory")
    return {"method": "transferred", "from": H747, "clock_mhz": clock, "kinds": kinds, "scale": round(scale, 5),
            "cycles_per_unit": {k: round(float(c) * scale, 6) for k, c in zip(kinds, cycles)},
            "fitted_on": [c.source for c in config.latency.calibration],
            "fitted_error_pct": _errors([p["name"] for p in lc], 100 * (scale * shape / ms - 1)),
            "unseen_pct": _errors([c["name"] for c in checks],
                                  [100 * (e / c["published_ms"] - 1) for e, c in zip(check_ms, checks)]),
            "external_memory": None if em is None else {
                **em, "cycles_per_byte": round(em["cycles_per_byte"] * clock / source["clock_mhz"], 4),
                "basis": "transferred from the STM32H747I-DISCO (same time per byte of SDRAM traffic), not fitted "
                         "on this board"}}


def _pct(value) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def print_board(title: str, entry: dict, points: list[dict]) -> None:
    clock = entry["clock_mhz"]
    print(f"\n## {title}, {clock:g} MHz: cycles per unit "
          + ", ".join(f"{k} {v:.4g}/{bl.UNITS[k]}" for k, v in entry["cycles_per_unit"].items()))
    print("| model | tool | published ms | estimated ms (fitted) | leave-one-out | architecture held out |")
    print("|---|---|---|---|---|---|")
    for p in points:
        n, ms = p["name"], p["published_ms"]
        fitted = entry["fitted_error_pct"][n]
        print(f"| {n} | {p['tool']} | {ms:.2f} | {ms * (1 + fitted / 100):.2f} ({fitted:+.1f}%) "
              f"| {entry['leave_one_out_pct'][n]:+.1f}% | {entry['leave_one_architecture_out_pct'][n]:+.1f}% |")
    bar = entry["error_bar"]
    print(f"leave-one-out median |error| {entry['median_abs_pct']:.1f}%, worst {entry['max_abs_pct']:.1f}%; "
          f"architecture held out: median {entry['architecture_out']['median_abs_pct']:.1f}%, worst "
          f"{entry['architecture_out']['max_abs_pct']:.1f}%; printed bar = {bar['percentile']:g}th percentile of "
          f"|{bar['basis']} errors| = ±{bar['pct']:.1f}%")
    print("Coverage: each architecture held out of the fit and of the bar (bar recomputed on the others):")
    print("| architecture held out | points | its error | bar from the others | covered |")
    print("|---|---|---|---|---|")
    for r in entry["coverage"]:
        covered = "-" if r["covered"] is None else ("yes" if r["covered"] else "**no**")
        bar_text = "-" if r["bar_pct"] is None else f"±{r['bar_pct']:.1f}% ({r['bar_points']} errors)"
        print(f"| {r['group']} | {r['points']} | {_pct(r['error_pct'])} | {bar_text} | {covered} |")
    print(f"covered {entry['coverage_covered']} of {entry['coverage_checked']}")


def print_checks(title: str, entry: dict, checks: list[dict]) -> None:
    print(f"\n{title} (published, never fitted):")
    print("| model | tool | published ms | estimated ms | error | activations KiB (ST) |")
    print("|---|---|---|---|---|---|")
    for c in checks:
        n, ms = c["name"], c["published_ms"]
        e = entry["unseen_pct"].get(n)
        if e is None and entry.get("external_memory"):
            e = entry["external_memory"]["leave_one_out_pct"].get(n)
            n += " (external RAM; term fitted on the other)"
        if e is None:
            continue
        print(f"| {n} | {c['tool'].split(',')[0]} | {ms:.2f} | {ms * (1 + e / 100):.2f} | {e:+.1f}% "
              f"| {c['published_activation_kib']:g} |")


# --- the CSVs of docs/profiling.md ----------------------------------------------------------------

def display(point: dict) -> str:
    """'MobileNet v1 0.25, 224' for mobilenet_v1_0.25_224_int8."""
    alpha = re.search(r"_(0\.\d+)_", point["name"])
    return f"{point['architecture']}{' ' + alpha[1] if alpha else ''}, {point['resolution']}"


def _signed(value: float) -> str:
    return f"{value:+.1f}"


def _work_ms(entry: dict, work: dict) -> float:
    kinds = entry["kinds"]
    cycles = [entry["cycles_per_unit"][k] for k in kinds]
    return float(bl.predict_ms(cycles, bl.as_matrix([work], kinds)[0], entry["clock_mhz"]))


def fit_rows(entry: dict, points: list[dict], config: BoardConfig) -> list[dict]:
    """One row per fitted point: published, fitted, the board file's one coefficient, the hold-out errors."""
    rows = []
    for p in points:
        ms = p["published_ms"]
        fitted = _work_ms(entry, p["work"])
        one = latency_estimate.one_coefficient_ms(config, sum(p["work"][k] for k in ("conv", "pointwise",
                                                                                      "depthwise")))
        rows.append({"model": display(p), "tool": p["tool"], "published_ms": f"{ms:.2f}",
                     "fitted_ms": f"{fitted:.2f}", "fitted_error_pct": _signed(100 * (fitted / ms - 1)),
                     "one_coefficient_ms": f"{one:.2f}", "one_coefficient_error_pct": _signed(100 * (one / ms - 1)),
                     "leave_one_out_error_pct": _signed(entry["leave_one_out_pct"][p["name"]]),
                     "architecture_out_error_pct": _signed(entry["leave_one_architecture_out_pct"][p["name"]])})
    return rows


def check_rows(entry: dict, checks: list[dict], config: BoardConfig) -> list[dict]:
    """ST's other published times on one board: the estimate, its error, and whether the board's bar covers it.

    A model whose activations exceed the board's internal RAM gets the external-RAM term fitted on the
    other such models (the term is fitted on them, so each is predicted from the others)."""
    term = entry.get("external_memory") or {}
    outside = [c for c in checks if c["name"] in term.get("fitted_on", ())]
    base = {c["name"]: _work_ms(entry, c["work"]) for c in checks}
    held_out = dict(zip([c["name"] for c in outside], external_memory.leave_one_out(
        [base[c["name"]] for c in outside], [c["published_ms"] for c in outside],
        [c["activation_traffic_bytes"] for c in outside], config.clock_mhz))) if len(outside) > 1 else {}
    bar = entry.get("error_bar", {}).get("pct")
    rows = []
    for c in checks:
        ms = c["published_ms"]
        error = held_out.get(c["name"], 100 * (base[c["name"]] / ms - 1))
        note = "external RAM: term fitted on the other model" if c["name"] in held_out else ""
        rows.append({"board": config.display_name, "model": display(c), "tool": c["tool"].split(",")[0],
                     "published_ms": f"{ms:.2f}", "estimated_ms": f"{ms * (1 + error / 100):.2f}",
                     "error_pct": _signed(error), "bar_pct": "" if bar is None else f"{bar:.1f}",
                     "covered": "no bar" if bar is None else ("yes" if abs(error) <= bar else "no"), "note": note})
    return rows


def energy_rows(points: list[dict]) -> list[dict]:
    """Every board's time and energy per inference for ST EfficientNet LC v1 at 128, as the profile stage
    estimates them: the work counted on the card's model (in the JSON) and the TFLite Micro arena and
    weights measured on the project's model (profile_lc_v1_128.csv) for the RAM verdict."""
    lc = next(p for p in points if p["board"] == H747 and p["resolution"] == 128
              and p["architecture"] == "ST EfficientNet LC v1")
    with (RESULTS / "profile_lc_v1_128.csv").open(encoding="utf-8") as f:
        measured = {row["figure"]: int(row["value"]) for row in csv.DictReader(f)}
    macc = sum(lc["work"][k] for k in ("conv", "pointwise", "depthwise"))
    rows = []
    first = (H747, F769, "b_u585i_iot02a")  # the boards with a power section, then the others by name
    configs = load_board_dir(ROOT / "conf" / "board").values()
    for config in sorted(configs, key=lambda b: (first.index(b.name) if b.name in first else len(first), b.name)):
        e = board_estimate.estimate(config, macc, measured["TFLite Micro arena total"], measured["weights flash"],
                                    lc["work"], None, lc["activation_traffic_bytes"])
        bar, energy = e["latency_bar_pct"], e["energy"]
        time = ("no error bar" if config.latency.calibrated else "uncalibrated") if bar is None else f"±{bar:.1f}%"
        row = {"board": config.display_name, "estimated_ms": f"{e['estimated_ms']:.2f}", "time_error": time,
               "uj": "", "uj_low": "", "uj_high": "", "mw_low": "", "mw_high": "", "per_charge_low": "",
               "per_charge_high": "", "per_hour_for_a_year_low": "", "per_hour_for_a_year_high": "",
               "source": "no datasheet current known with confidence (no power section in the board file)"}
        if energy is not None:
            row.update({"uj": f"{energy['uj']:.0f}", "uj_low": f"{energy['uj_low']:.0f}",
                        "uj_high": f"{energy['uj_high']:.0f}", "mw_low": f"{energy['mw_low']:g}",
                        "mw_high": f"{energy['mw_high']:g}",
                        "per_charge_low": str(energy["inferences_per_charge"][0]),
                        "per_charge_high": str(energy["inferences_per_charge"][1]),
                        "per_hour_for_a_year_low": f"{energy['per_hour_for_a_year'][0]:g}",
                        "per_hour_for_a_year_high": f"{energy['per_hour_for_a_year'][1]:g}",
                        "source": energy["source"]})
        rows.append(row)
    return rows


def write_csv(name: str, rows: list[dict]) -> None:
    with (RESULTS / name).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {(RESULTS / name).relative_to(ROOT)}")


def write_results(boards: dict, on: dict, checks_on: dict, points: list[dict]) -> None:
    write_csv("board_latency_h747.csv", fit_rows(boards[H747], on[H747], board(H747)))
    write_csv("board_latency_mp157.csv", fit_rows(boards[MP157], on[MP157], board(MP157)))
    write_csv("board_latency_checks.csv", [row for name in (H747, MP157, F769)
                                           for row in check_rows(boards[name], checks_on[name], board(name))])
    write_csv("energy_lc_v1_128.csv", energy_rows(points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="folder with ST's .tflite models and published.csv")
    parser.add_argument("--cached", action="store_true", help="refit from the counts already in the JSON")
    parser.add_argument("--write", action="store_true",
                        help=f"update {bl.DATA.relative_to(ROOT)} and the CSVs of --results")
    parser.add_argument("--results", action="store_true",
                        help=f"write the tables of docs/profiling.md to {RESULTS.relative_to(ROOT)}/")
    args = parser.parse_args()
    if (args.zoo is None) == (not args.cached):
        parser.error("give exactly one of --zoo DIR or --cached")
    if args.cached:
        points, checks = bl.load()["points"], bl.load()["checks"]
    else:
        points, checks = zoo_points(args.zoo) + lc_v1_points(), zoo_counts.check_points(args.zoo)
    on = {name: [p for p in points if p["board"] == name] for name in (H747, MP157)}
    checks_on = {name: [c for c in checks if c["board"] == name] for name in (H747, MP157, F769)}
    boards = {}
    for name in (H747, MP157):
        config = board(name)
        boards[name] = {**per_kind(on[name], checks_on[name], config, KINDS[name]),
                        **one_coefficient_errors(on[name], config)}
    boards[H747]["external_memory"] = external(boards[H747], checks_on[H747], board(H747))
    lc = [p for p in on[H747] if p["architecture"] == "ST EfficientNet LC v1"]
    boards[F769] = transferred(boards[H747], lc, checks_on[F769], board(F769))

    print_board("STM32H747I-DISCO", boards[H747], on[H747])
    em = boards[H747]["external_memory"]
    print(f"\nExternal RAM term: {em['cycles_per_byte']:.3f} cycles per byte of activation traffic, {em['basis']}; "
          "per-kind alone: " + ", ".join(f"{n} {e:+.1f}%" for n, e in em["per_kind_alone_pct"].items()))
    print_checks("STM32H747I-DISCO, ST's other zoo models", boards[H747], checks_on[H747])
    print_board("STM32MP157F-DK2", boards[MP157], on[MP157])
    print_checks("STM32MP157F-DK2, ST's other zoo models", boards[MP157], checks_on[MP157])
    f = boards[F769]
    print(f"\n## STM32F769I-DISCO: the H747's per-kind shape x {f['scale']:.4f} (fitted on the card's 2 LC v1 "
          "points; residuals " + ", ".join(f"{e:+.1f}%" for e in f["fitted_error_pct"].values()) + ")")
    print_checks("STM32F769I-DISCO, ST's other zoo models", f, checks_on[F769])
    if args.write:
        data = bl.load() if bl.DATA.is_file() else {}
        data.update({
            "about": "Board latency models (mcuvision/profiling/board_latency.py): work counted by board_latency.work "
                     "on each calibration and check model, published times, fitted cycles per unit, hold-out errors "
                     "and error bars. Counts of ST's models are facts read from ST's files, which are not in the "
                     "project. `points` are fitted; `checks` are ST's other published times, never fitted per kind.",
            "refit": "python benchmarks/fit_latency.py --zoo ../shared/reference/st_zoo_models --write",
            "kinds": {k: bl.UNITS[k] for k in (*bl.KINDS, *bl.DERIVED)},
            "points": points, "checks": checks, "boards": boards})
        write_json(bl.DATA, data)
        print(f"wrote {bl.DATA.relative_to(ROOT)}")
    if args.write or args.results:
        write_results(boards, on, checks_on, points)  # after --write: the energy reads the JSON just written


if __name__ == "__main__":
    main()
