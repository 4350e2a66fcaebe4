"""Host latency: repeated single-image runs, median and spread, labelled with this host's CPU.

These are measurements on the machine that runs the profiler, not on a board: they compare
runtimes and catch regressions, they do not predict STM32 times (the board models do that).
Each runtime gets one warm-up run, then `repeats` timed runs of one image (batch 1).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "unknown CPU"


def summary(seconds: list[float], runtime: str, threads: int | None) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"runtime": runtime, "threads": threads, "runs": int(ms.size),
            "median_ms": round(float(np.median(ms)), 3), "p10_ms": round(float(np.percentile(ms, 10)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3), "min_ms": round(float(ms.min()), 3),
            "max_ms": round(float(ms.max()), 3), "measured_on": f"this host ({host_cpu()})"}


def _image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _input_for(shape, dtype: np.dtype) -> np.ndarray:
    """A random image in the model's own input type (int8 inputs get pixels shifted by -128)."""
    raw = _image(shape)
    if dtype == np.int8:
        return (raw.astype(np.int16) - 128).astype(np.int8)
    return raw.astype(dtype)


def litert(content: bytes, repeats: int) -> dict:
    """LiteRT (ai_edge_litert), 1 thread, invoke() only."""
    from mcuvision.runtime.runners import TfliteRunner

    runner = TfliteRunner(content, threads=1)
    interpreter, delegate = runner.interpreter, runner.kernels
    detail = interpreter.get_input_details()[0]
    x = _input_for(detail["shape"], np.dtype(detail["dtype"]))
    times = []
    for i in range(repeats + 1):
        interpreter.set_tensor(detail["index"], x)
        start = time.perf_counter()
        interpreter.invoke()
        if i:
            times.append(time.perf_counter() - start)
    return {**summary(times, "LiteRT", 1), "kernels": delegate}


def onnxruntime(model: Path, repeats: int) -> dict:
    """onnxruntime CPU, 1 intra-op thread, session.run on one image."""
    from mcuvision.runtime.runners import OnnxRunner

    runner = OnnxRunner(str(model), threads=1)
    shape = [d if isinstance(d, int) else 1 for d in runner.session.get_inputs()[0].shape]
    x = _image(shape).astype(np.float32)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        runner.session.run(None, {runner.name: x})
        if i:
            times.append(time.perf_counter() - start)
    return {**summary(times, "onnxruntime", 1), "kernels": "CPUExecutionProvider"}


def tflite_micro(invoke_times_s: list[float]) -> dict:
    """TFLite Micro's invoke times, taken by the probe process (first run dropped as warm-up)."""
    times = invoke_times_s[1:] if len(invoke_times_s) > 1 else invoke_times_s
    return {**summary(times, "TFLite Micro", 1), "kernels": "TFLite Micro kernels (tflite-micro Python wheel, x86)"}
