"""profile_on_board: measured memory, MACC, flash and host latency, and board estimates, per int8 model.

No board is attached to this machine. What can be measured exactly off the board is measured with
the real microcontroller runtime; the rest is estimated with a documented, checked model, and
labelled so:
1. Graph (computed): MACC per layer and per kind of work, weights flash (constant tensors), the
   whole-tensor peak for this op order (simultaneously live whole activation tensors).
2. TFLite Micro (measured): arena head (planned activations), tail (persistent) and total, and
   the smallest arena that allocates and runs, by bisection (each probe a child process).
3. Host latency (measured on this host): LiteRT 1 thread, TFLite Micro, onnxruntime 1 thread on
   the QDQ ONNX model; median and spread of single-image runs.
4. Boards (estimated): inference time from the per-kind latency model where a board has one
   (board_latency.json), the H747's shape for the F769, or the board file's one coefficient, with
   its hold-out error bar where one is measured and the external-RAM term where it applies; energy
   per inference where the board file gives the datasheet's run-mode current; RAM fit per runtime
   (TFLite Micro; ST Edge AI Core when its report exists) and flash fit with margins; the optional
   ST Edge AI Core backend when the selected board asks for it.

Pipeline: `--tflite --qdq --boards --metrics --report` (paths from dvc.yaml); the selected board
is params.yaml's `board` section, and every file in `--boards` is estimated too.
Anywhere: `python -m stages.profile_on_board --model any.tflite --board stm32h747i_disco`
(or `--board-file my_board.yaml`) prints the report and needs no params.yaml.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import tempfile
from pathlib import Path

import onnx

from mcuvision.atomic import write_json, write_text
from mcuvision.cli import prog
from mcuvision.config.base import load_params
from mcuvision.config.board import BoardConfig, load_board_dir
from mcuvision.convert import onnx_graph, tflite_graph
from mcuvision.errors import PipelineError, fail, require_files, require_inputs
from mcuvision.formats import W4W8_MODEL_FILE
from mcuvision.profiling import board_latency, latency, liveness, macc, profile_md, stedgeai, tflm
from mcuvision.profiling import boards as board_model

PROJECT_BOARDS = Path(__file__).resolve().parents[1] / "conf" / "board"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def activation_ram(model_path: Path, graph, invokes: int) -> dict:
    measured = tflm.measure(model_path, invokes=invokes)
    peak = liveness.peak(graph)
    gap = measured["head_bytes"] - peak["peak_bytes"]
    return {**{k: v for k, v in measured.items() if k != "invoke_times_s"},
            "whole_tensor_peak_bytes": peak["peak_bytes"],
            "whole_tensor_peak_aligned_bytes": peak["peak_aligned_bytes"],
            "peak_op_index": peak["peak_op_index"], "peak_op": peak["peak_op"],
            "head_over_whole_tensor_peak_bytes": gap,
            "head_over_whole_tensor_peak_pct": (round(100.0 * gap / peak["peak_bytes"], 3)
                                                if peak["peak_bytes"] else 0.0),
            "how": ("head/tail/total: TFLite Micro RecordingMicroAllocator report with a generous arena; "
                    "minimal: bisection on arena_size, allocate + one invoke per probe in a child process; "
                    "whole-tensor peak: most bytes of whole activation tensors live at once over the op order, "
                    "from the flatbuffer")
            }, measured["invoke_times_s"]


def onnx_facts(path: Path, repeats: int) -> dict:
    return {"file_bytes": path.stat().st_size, "weights_bytes": onnx_graph.weights_bytes(onnx.load(str(path))),
            "latency": {"onnxruntime_1_thread": latency.onnxruntime(path, repeats)}}


def profile(tflite_path: Path, qdq_path: Path | None, boards: dict[str, BoardConfig], selected: str | None,
            repeats: int, w4w8_path: Path | None = None) -> dict:
    """Everything measured, computed and estimated for one int8 TFLite model (and its QDQ ONNX twin)."""
    content = tflite_path.read_bytes()
    graph = tflite_graph.load(content, source=tflite_path)
    inputs, outputs = tflite_graph.io_tensors(graph)
    print(f"profile: {tflite_path}: TFLite Micro arena and bisection", flush=True)
    ram, tflm_times = activation_ram(tflite_path, graph, invokes=repeats + 1)
    counts = macc.count(graph)
    work = board_latency.work(graph)
    traffic = board_latency.activation_traffic(graph)
    weights = tflite_graph.weights_bytes(graph)
    print("profile: host latency (LiteRT, TFLite Micro, onnxruntime)", flush=True)
    result = {
        "model": {"name": tflite_path.name, "sha256": hashlib.sha256(content).hexdigest(),
                  "onnx_name": qdq_path.name if qdq_path else None},
        "host": {"cpu": latency.host_cpu(), "repeats": repeats,
                 "versions": {"tflite_micro": _version("tflite-micro"), "litert": _version("ai-edge-litert"),
                              "onnxruntime": _version("onnxruntime")}},
        "int8_tflite": {
            "file_bytes": len(content), "weights_bytes": weights,
            "input": {"dtype": inputs[0].dtype, "shape": list(inputs[0].shape)},
            "output": {"dtype": outputs[0].dtype, "shape": list(outputs[0].shape)},
            "activation_ram": ram, "macc": counts, "work": work, "activation_traffic_bytes": traffic,
            "latency": {"litert_1_thread": latency.litert(content, repeats),
                        "tflite_micro": latency.tflite_micro(tflm_times)},
        },
    }
    if qdq_path is not None:
        result["int8_qdq_onnx"] = onnx_facts(qdq_path, repeats)
    if w4w8_path is not None:
        result["w4w8_qdq_onnx"] = onnx_facts(w4w8_path, repeats)
    result["board"] = selected
    result["boards"] = {}
    for name, board in boards.items():
        vendor = None
        if name == selected and board.vendor_backend == "stedgeai":
            with tempfile.TemporaryDirectory() as tmp:
                vendor = stedgeai.run(tflite_path, board.stedgeai_target, Path(tmp))
        estimate = board_model.estimate(board, counts["total"], ram["total_bytes"], weights, work, vendor, traffic)
        estimate["selected"] = name == selected
        result["boards"][name] = estimate
    return result


def run(board: BoardConfig, *, tflite_path: Path, qdq_path: Path | None, board_dir: Path, metrics_out: Path,
        report_out: Path, repeats: int = 20, w4w8_dir: Path | None = None) -> dict:
    require_inputs(tflite_path, qdq_path, board_dir)  # every missing one named at once
    require_files(tflite_path, qdq_path)
    w4w8_path = w4w8_dir / W4W8_MODEL_FILE if w4w8_dir is not None else None
    w4w8_path = w4w8_path if w4w8_path is not None and w4w8_path.is_file() else None
    boards = load_board_dir(board_dir)
    boards[board.name] = board  # params.yaml (with any -S override) wins over the file of the same name
    boards = {board.name: boards.pop(board.name), **dict(sorted(boards.items()))}
    result = profile(tflite_path, qdq_path, boards, board.name, repeats, w4w8_path)
    write_json(metrics_out, result)
    write_text(report_out, profile_md.render(result))
    return result


def _summary(result: dict) -> str:
    t = result["int8_tflite"]
    ram = t["activation_ram"]
    sel = result["boards"][result["board"]]
    bar = profile_md.error_bar(sel)[len(f"{sel['estimated_ms']:.2f}"):]
    st = sel["ram_fit_by_runtime"]["stedgeai"]["fits"]
    return (f"profile: MACC {t['macc']['total']:,}, weights {t['weights_bytes']} B, TFLite Micro head "
            f"{ram['head_bytes']} B / tail {ram['tail_bytes']} B / minimal {ram['minimal_arena_bytes']} B "
            f"(whole-tensor peak {ram['whole_tensor_peak_bytes']} B); {sel['display_name']}: "
            f"~{sel['estimated_ms']:.1f} ms{bar} (estimated), fits RAM with TFLite Micro {sel['fits_ram']} "
            f"({sel['ram_margin_kib']:+.1f} KiB), with ST Edge AI Core {'not modelled' if st is None else st}, "
            f"fits flash {sel['fits_flash']} ({sel['flash_margin_kib']:+.1f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(prog=prog("stages.profile_on_board"),
                                     description="Profile int8 models: measured off the board, estimated on it.")
    parser.add_argument("--tflite", type=Path, help="pipeline: the int8 TFLite model")
    parser.add_argument("--qdq", type=Path, help="pipeline: the int8 QDQ ONNX model")
    parser.add_argument("--w4w8", type=Path, help="pipeline: quantize's int4/int8 folder (its model is optional)")
    parser.add_argument("--boards", type=Path, default=PROJECT_BOARDS, help="folder of board files (conf/board)")
    parser.add_argument("--metrics", type=Path, help="write the JSON here")
    parser.add_argument("--report", type=Path, help="write the Markdown report here")
    parser.add_argument("--model", type=Path, help="standalone: any .tflite model (no params.yaml needed)")
    parser.add_argument("--onnx", type=Path, help="standalone: its QDQ ONNX twin, optional")
    parser.add_argument("--board", help="standalone: a board name from --boards (e.g. stm32h747i_disco)")
    parser.add_argument("--board-file", type=Path, help="standalone: a board YAML file of your own")
    parser.add_argument("--repeats", type=int, default=20, help="timed single-image runs per runtime")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        if args.model is not None:
            if (args.board is None) == (args.board_file is None):
                parser.error("standalone use needs exactly one of --board NAME or --board-file PATH")
            board = (BoardConfig.from_file(args.board_file) if args.board_file
                     else BoardConfig.from_file(args.boards / f"{args.board}.yaml"))
            require_files(args.model, args.onnx, hint="")
            result = profile(args.model, args.onnx, {board.name: board}, board.name, args.repeats)
            text = profile_md.render(result)
            if args.metrics:
                write_json(args.metrics, result)
            if args.report:
                write_text(args.report, text)
            print(text)
        else:
            missing = [f"--{n}" for n in ("tflite", "qdq", "metrics", "report") if getattr(args, n) is None]
            if missing:
                parser.error(f"pipeline use needs {', '.join(missing)} (or --model PATH --board NAME standalone)")
            board = BoardConfig.from_params(load_params())
            result = run(board, tflite_path=args.tflite, qdq_path=args.qdq, board_dir=args.boards,
                         metrics_out=args.metrics, report_out=args.report, repeats=args.repeats, w4w8_dir=args.w4w8)
    except PipelineError as error:  # a user's mistake (a path, a file, an op the runtime lacks)
        fail("profile_on_board", error)
    print(_summary(result))


if __name__ == "__main__":
    main()
