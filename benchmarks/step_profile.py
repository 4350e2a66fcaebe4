"""Where a training step's time goes: TensorFlow's profiler over steady training steps, op by op.

    .venv/bin/python benchmarks/step_profile.py [--side 128] [--batch 64] [--steps 8] [--top 10]

The model and step of benchmarks/step_speed.py (the train stage's model, compiled as the stage
compiles it, on one in-memory batch: no input pipeline). After two epochs that trace and warm up,
--steps steps run under `tf.profiler.experimental`; TensorFlow's own converter
(`xspace_to_tools_data`, the "framework_op_stats" tool behind TensorBoard's profile plugin) gives
each op type's self time on the host (idle time left out). Printed: the --top op types by self time, their share of all
op time, and the images/s of the profiled steps (the profiler itself costs some of it).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scratch import cpu_name
from step_speed import training_setup


def op_table(logdir: Path) -> list[dict]:
    """Rows {'type', 'self_us'} per op type, summed over the profile's host ops (microseconds)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    planes = [str(p) for p in logdir.rglob("*.xplane.pb")]
    data, _ = plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] for c in table["cols"]]
    kind, self_time = columns.index("type"), columns.index("total_self_time")
    host = columns.index("host_or_device") if "host_or_device" in columns else None
    totals: dict[str, float] = {}
    for row in table["rows"]:
        cells = [c["v"] if isinstance(c, dict) else c for c in row["c"]]
        if (host is not None and cells[host] != "Host") or cells[kind] == "IDLE":
            continue
        totals[cells[kind]] = totals.get(cells[kind], 0.0) + float(cells[self_time])
    return [{"type": k, "self_us": v} for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="profiled steps")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    import tensorflow as tf

    model, data = training_setup(args.batch, args.side, args.steps)
    model.fit(data, steps_per_epoch=args.steps, epochs=2, verbose=0)  # trace, then warm
    with tempfile.TemporaryDirectory(prefix="step_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        rows = op_table(Path(logdir))
    total = sum(r["self_us"] for r in rows)
    print(f"{cpu_name()}; batch {args.batch} at {args.side}x{args.side}, {args.steps} profiled steps: "
          f"{args.batch * args.steps / wall:.1f} images/s under the profiler\n")
    print("| op type | self time per step (ms) | share |\n|---|---|---|")
    for r in rows[:args.top]:
        print(f"| {r['type']} | {r['self_us'] / 1000 / args.steps:.1f} | {100 * r['self_us'] / total:.1f}% |")
    print(f"| all {len(rows)} op types | {total / 1000 / args.steps:.1f} | 100% |")


if __name__ == "__main__":
    main()
