"""Activation RAM measured with the TensorFlow Lite Micro runtime (the `tflite-micro` wheel).

TFLite Micro takes one arena: the planned, non-persistent activations at its head (laid out by
its greedy memory planner) and the persistent runtime data at its tail (eval tensors, node
structs, per-channel quantization multipliers...). Its RecordingMicroAllocator prints both
("Arena allocation head/tail/total") from `print_allocations()`; the Python API has no getter,
so a probe reads that report.

Every probe runs in its own process: with an arena that is too small the runtime may raise
RuntimeError, but it may also crash the process (seen: a segmentation fault after "Failed to
allocate tail memory"), so a crash must not take the stage with it.

Minimal arena: the smallest `arena_size` with which the model allocates AND runs one inference,
by bisection; then `minimal - 1` is confirmed to fail. The runtime aligns arena buffers to
16 bytes, so the minimum can sit up to 15 bytes under the recorded total.

`python -m mcuvision.profiling.tflm MODEL ARENA_BYTES [INVOKES]` is the probe itself: it prints
one JSON line (ok, error, invoke times) on stdout and the allocation report on stderr.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from mcuvision.errors import PipelineError

ALIGNMENT = 16  # tflite::MicroArenaBufferAlignment()
_RECORD = re.compile(r"Arena allocation (head|tail|total) (\d+) bytes")
# What TFLite Micro's op resolver prints to stderr for an op it lacks (its Python error drops it).
_MISSING_OP = re.compile(r"Didn't find op for (?:builtin opcode|custom opcode) '([^']+)'")


class TflmError(PipelineError, RuntimeError):
    """TFLite Micro could not run the model even with a generous arena."""


def probe(model: Path, arena_size: int, invokes: int = 1, timeout: float = 300.0) -> dict:
    """One TFLite Micro run in a child process: {"ok", "error", "times_s", "head", "tail", "total"}."""
    cmd = [sys.executable, "-m", "mcuvision.profiling.tflm", str(Path(model).resolve()), str(arena_size), str(invokes)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", "arena_size": arena_size}
    result = {"ok": False, "error": f"probe exited with status {done.returncode}"}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if done.returncode != 0:
        result["ok"] = False
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        result["error"] = f"exit status {done.returncode}: {tail}"[:300]
    result.update({k: int(v) for k, v in _RECORD.findall(done.stderr)})
    missing = sorted(set(_MISSING_OP.findall(done.stderr)))
    if missing and not result["ok"]:
        result["missing_ops"] = missing
        result["error"] = f"TFLite Micro has no kernel for {', '.join(missing)} ({result['error']})"
    result["arena_size"] = arena_size
    return result


def minimal_arena(model: Path, start: int, limit: int) -> dict:
    """Bisect the smallest arena_size that allocates and invokes, starting from the recorded total.

    The recorded total can be too small: allocation also needs transient (temp) space, which on
    some graphs (e.g. tiny inputs whose late layers are 1x1) exceeds the final head + tail.
    Then the search first grows from `start` (up to `limit`, which must work).
    """
    probes = 0

    def ok(size: int) -> bool:
        nonlocal probes
        probes += 1
        return size > 0 and probe(model, size)["ok"]

    lo, hi = 0, start
    while not ok(hi):
        if hi >= limit:
            raise TflmError(f"TFLite Micro failed with every arena from the recorded total ({start} B) to {limit} B")
        lo, hi = hi, min(limit, hi * 2)
    if lo == 0:
        step, lo = 64, max(0, hi - 64)
        while lo > 0 and ok(lo):  # walk down in growing steps until a size fails
            hi, step = lo, step * 4
            lo = max(0, hi - step)
    while hi - lo > 1:  # invariant: lo fails, hi works
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    one_less_fails = not ok(hi - 1)
    return {"minimal_arena_bytes": hi, "one_byte_less_fails": one_less_fails, "probes": probes}


def measure(model: Path, invokes: int = 1, generous: int | None = None) -> dict:
    """Head/tail/total with a generous arena, the bisected minimum, and TFLite Micro invoke times."""
    size = generous or max(8 << 20, 8 * model.stat().st_size)
    first = probe(model, size, invokes)
    if not first["ok"] or "total" not in first:
        raise TflmError(f"TFLite Micro could not run {model} with a {size} B arena: {first.get('error')}")
    bisect = minimal_arena(model, first["total"], size)
    return {"head_bytes": first["head"], "tail_bytes": first["tail"], "total_bytes": first["total"],
            **bisect, "alignment_bytes": ALIGNMENT,
            "total_minus_minimal_bytes": first["total"] - bisect["minimal_arena_bytes"],
            "invoke_times_s": first["times_s"]}


def _main(argv: list[str]) -> int:
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    model, arena = Path(argv[0]), int(argv[1])
    invokes = int(argv[2]) if len(argv) > 2 else 1
    try:
        interpreter = runtime.Interpreter.from_bytes(model.read_bytes(), arena_size=arena)
        detail = interpreter.get_input_details(0)
        dtype, shape = np.dtype(detail["dtype"]), tuple(detail["shape"])
        rng = np.random.default_rng(0)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            image = rng.integers(info.min, info.max + 1, shape, dtype=dtype)
        else:
            image = rng.uniform(0, 255, shape).astype(dtype)
        times = []
        for _ in range(max(1, invokes)):
            interpreter.set_input(image, 0)
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        interpreter.get_output(0)
    except (RuntimeError, ValueError) as error:
        print(json.dumps({"ok": False, "error": str(error)[:300]}), flush=True)
        return 0
    print(json.dumps({"ok": True, "error": None, "times_s": times}), flush=True)
    sys.stdout.flush()
    interpreter.print_allocations()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
