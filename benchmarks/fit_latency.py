"""Refit the per-kind board latency model on published times and print its leave-one-out error.

    python benchmarks/fit_latency.py --zoo ../shared/reference/st_zoo_models [--write]
    python benchmarks/fit_latency.py --cached          # refit from the counts kept in the JSON

Points (STM32H747I-DISCO, Cortex-M7 at 400 MHz): ST's six int8 model-zoo models with the times
in the zoo folder's published.csv (STM32Cube.AI 7.3.0), and the seed card's two ST EfficientNet
LC v1 times (STEdgeAI Core 3.0.0, from conf/board/stm32h747i_disco.yaml), whose work is counted
on the project's own 5-class model (built and quantized here, untrained: counts need no weights).
The zoo models are ST's (SLA0044): they are read where they lie and never copied; only counts
(facts) and published figures go into mcuvision/profiling/board_latency.json with --write.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, run as a script

import numpy as np

from mcuvision.atomic import write_json
from mcuvision.config.board import BoardConfig
from mcuvision.convert import tflite_graph
from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import liveness

ROOT = Path(__file__).resolve().parents[1]
BOARD = "stm32h747i_disco"
ZOO_SOURCE = ("ST model zoo, STM32Cube.AI 7.3.0 on STM32H747I-DISCO at 400 MHz "
              "(st_zoo_models/published.csv)")
ARCHITECTURES = {"mobilenet_v1": "MobileNet v1", "mobilenet_v2": "MobileNet v2", "fdmobilenet": "FD-MobileNet",
                 "squeezenet_v1.0": "SqueezeNet v1.0", "squeezenet_v1.1": "SqueezeNet v1.1"}
# The seed card's "Reference MCU memory footprints" (STM32H7, STEdgeAI Core 3.0.0): Activation RAM.
LC_V1_ACTIVATION_KIB = {128: 181.01, 224: 466.01}


def architecture(name: str) -> str:
    return next((v for k, v in ARCHITECTURES.items() if name.startswith(k)), name)


def graph_facts(content: bytes) -> dict:
    graph = tflite_graph.load(content)
    return {"work": bl.work(graph), "whole_tensor_peak_bytes": liveness.peak(graph)["peak_bytes"]}


def zoo_points(zoo: Path) -> list[dict]:
    points = []
    with (zoo / "published.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            facts = graph_facts((zoo / f"{row['model']}.tflite").read_bytes())
            points.append({"name": row["model"], "architecture": architecture(row["model"]),
                           "resolution": int(row["res"]), "board": BOARD, "tool": "STM32Cube.AI 7.3.0",
                           "published_ms": float(row["h747_400mhz_ms"]),
                           "published_activation_kib": float(row["activation_ram_kib"]), "source": ZOO_SOURCE,
                           **facts})
    return points


def lc_v1_points(board: BoardConfig) -> list[dict]:
    import yaml

    from mcuvision.config.quantize import QuantizeConfig
    from mcuvision.convert.quantization import int8_tflite
    from mcuvision.model.architecture import build_model

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    # The card's recipe: uint8 input, float output (st_facts.md), whatever params.yaml says now.
    config = QuantizeConfig.from_params(params)
    config = dataclasses.replace(config, tflite=dataclasses.replace(config.tflite, input_type="uint8",
                                                                    output_type="float32"))
    points = []
    for p in board.latency.calibration:
        images = np.random.default_rng(0).integers(0, 256, (4, p.resolution, p.resolution, 3)).astype(np.uint8)
        facts = graph_facts(int8_tflite(build_model(5, p.resolution), images, config))
        points.append({"name": f"st_efficientnet_lc_v1_{p.resolution}_int8", "architecture": "ST EfficientNet LC v1",
                       "resolution": p.resolution, "board": BOARD, "tool": "STEdgeAI Core 3.0.0",
                       "published_ms": p.published_ms, "published_activation_kib": LC_V1_ACTIVATION_KIB[p.resolution],
                       "source": p.source, **facts})
    return points


def macc_total(point: dict) -> int:
    """conv + depthwise + dense MACC, the figure the one-coefficient model multiplies."""
    return sum(point["work"][k] for k in ("conv", "pointwise", "depthwise"))


def refit(points: list[dict], board: BoardConfig) -> dict:
    """The board's entry of board_latency.json: coefficients, LOO and fitted errors, old-model errors."""
    rows, ms = bl.as_matrix([p["work"] for p in points]), np.array([p["published_ms"] for p in points])
    cycles = bl.fit(rows, ms, board.clock_mhz)
    fitted = 100.0 * (bl.predict_ms(cycles, rows, board.clock_mhz) / ms - 1.0)
    loo = bl.leave_one_out(rows, ms, board.clock_mhz)
    by_architecture = bl.leave_one_out(rows, ms, board.clock_mhz, [p["architecture"] for p in points])
    old = [100.0 * (macc_total(p) * board.latency.value / (board.clock_mhz * 1000.0) / p["published_ms"] - 1.0)
           for p in points]
    names = [p["name"] for p in points]
    return {"clock_mhz": board.clock_mhz,
            "cycles_per_unit": {k: round(float(c), 6) for k, c in zip(bl.KINDS, cycles)},
            "leave_one_out_pct": {n: round(float(e), 2) for n, e in zip(names, loo)},
            **bl.summary(loo),
            "leave_one_architecture_out_pct": {n: round(float(e), 2) for n, e in zip(names, by_architecture)},
            "architecture_out": bl.summary(by_architecture),
            "fitted_error_pct": {n: round(float(e), 2) for n, e in zip(names, fitted)},
            "architectures": sorted({p["architecture"] for p in points}),
            "one_coefficient": f"{board.latency.value:g} cycles/MACC (board file)",
            "one_coefficient_error_pct": {n: round(e, 2) for n, e in zip(names, old)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="folder with ST's .tflite models and published.csv")
    parser.add_argument("--cached", action="store_true", help="refit from the counts already in the JSON")
    parser.add_argument("--write", action="store_true", help=f"update {bl.DATA.relative_to(ROOT)}")
    args = parser.parse_args()
    if (args.zoo is None) == (not args.cached):
        parser.error("give exactly one of --zoo DIR or --cached")
    board = BoardConfig.from_file(ROOT / "conf" / "board" / f"{BOARD}.yaml")
    if args.cached:
        points = bl.points_for(BOARD)
    else:
        points = zoo_points(args.zoo) + lc_v1_points(board)
    entry = refit(points, board)

    print(f"{board.display_name}, {board.clock_mhz:g} MHz: cycles per unit "
          + ", ".join(f"{k} {v:.4g}/{bl.UNITS[k]}" for k, v in entry["cycles_per_unit"].items()))
    print("| model | published ms | old estimate ms (error) | new estimate ms (fitted error) | leave-one-out error "
          "| architecture held out |")
    print("|---|---|---|---|---|---|")
    for p in points:
        n, ms = p["name"], p["published_ms"]
        old, fitted = entry["one_coefficient_error_pct"][n], entry["fitted_error_pct"][n]
        print(f"| {n} | {ms:.2f} | {ms * (1 + old / 100):.2f} ({old:+.1f}%) | {ms * (1 + fitted / 100):.2f} "
              f"({fitted:+.1f}%) | {entry['leave_one_out_pct'][n]:+.1f}% "
              f"| {entry['leave_one_architecture_out_pct'][n]:+.1f}% |")
    print(f"leave-one-out over {entry['points']} points: median |error| {entry['median_abs_pct']:.1f}%, "
          f"worst {entry['max_abs_pct']:.1f}%; holding out whole architectures: median "
          f"{entry['architecture_out']['median_abs_pct']:.1f}%, worst {entry['architecture_out']['max_abs_pct']:.1f}%; "
          f"architectures: {', '.join(entry['architectures'])}")
    if args.write:
        data = bl.load() if bl.DATA.is_file() else {}
        data.update({
            "about": "Per-kind board latency model (mcuvision/profiling/board_latency.py): work counted by "
                     "board_latency.work on each calibration model, published times, fitted cycles per unit and "
                     "leave-one-out errors. Counts of ST's models are facts read from ST's files, which are not "
                     "in the project.",
            "refit": "python benchmarks/fit_latency.py --zoo ../shared/reference/st_zoo_models --write",
            "kinds": {k: bl.UNITS[k] for k in bl.KINDS},
            "points": points, "boards": {**data.get("boards", {}), BOARD: entry}})
        write_json(bl.DATA, data)
        print(f"wrote {bl.DATA.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
