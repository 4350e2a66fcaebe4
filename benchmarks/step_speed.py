"""Training-step speed of the project's model for each speed lever, side by side in one run.

    .venv/bin/python benchmarks/step_speed.py [--steps 24] [--epochs 4] [--repeats 2] [--only NAME ...]

The model of the train stage (ST EfficientNet LC v1, 5 classes) compiled as the train stage
compiles it (the default profile's optimizer, fused update) trains on ONE in-memory batch of
random pixels, repeated: no decoding, caching or augmentation, so only the training step is timed.
Each setting runs in a fresh process (threads and oneDNN are fixed at TensorFlow's start), and the
settings take turns, round after round (--repeats), so that a background load hits them alike.
Per process: --epochs epochs of --steps steps; images/s = batch x steps / the median epoch time
after the first (which holds the trace). The table gives the median over rounds and each setting's
ratio to the first one: compare ratios, not absolute figures, on a shared machine.

bfloat16 runs only where the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16 in
/proc/cpuinfo's flags, read at run time); elsewhere its row says why it was skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace

from scratch import ROOT, cpu_name, cpuinfo

# name -> (batch, side, intra-op threads or None, environment, steps_per_execution, bfloat16)
SETTINGS = {
    "batch 32, 128x128 (default profile)": (32, 128, None, {}, 1, False),
    "batch 64": (64, 128, None, {}, 1, False),
    "batch 128": (128, 128, None, {}, 1, False),
    "batch 32, 96x96 (progressive resizing's low side)": (32, 96, None, {}, 1, False),
    "batch 64, 96x96": (64, 96, None, {}, 1, False),
    "1 intra-op thread": (32, 128, 1, {}, 1, False),
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": (32, 128, None, {"TF_ENABLE_ONEDNN_OPTS": "0"}, 1, False),
    "steps_per_execution 8": (32, 128, None, {}, 8, False),
    "mixed_bfloat16": (32, 128, None, {}, 1, True),
}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def training_setup(batch: int, side: int, steps: int):
    """The train stage's model (5 classes, `side` x `side`) compiled as the stage compiles it, and an
    endless tf.data dataset of ONE batch of random pixels (float32 0..255) and one-hot labels."""
    import numpy as np
    import tensorflow as tf

    from mcuvision.config.base import load_params
    from mcuvision.config.train import TrainConfig
    from mcuvision.model.architecture import build_model
    from mcuvision.model.training import compile_model

    train = replace(TrainConfig.from_params(load_params(ROOT / "params.yaml")), batch_size=batch)
    model = build_model(5, side, dropout=train.dropout)
    compile_model(model, train, steps, xla=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, side, side, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, batch)]
    return model, tf.data.Dataset.from_tensors((images, labels)).repeat()


def one(name: str, steps: int, epochs: int) -> dict:
    """Train in this process with setting `name`; returns {'images_per_s', 'first_epoch_s'}."""
    batch, side, threads, _, per_execution, bfloat16 = SETTINGS[name]
    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    if bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, data = training_setup(batch, side, steps)
    model.steps_per_execution = per_execution
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[Clock()])
    return {"images_per_s": batch * steps / statistics.median(times[1:]), "first_epoch_s": times[0]}


def run_one(name: str, steps: int, epochs: int) -> dict:
    env = {**os.environ, **SETTINGS[name][3], "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(steps), "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{name}: failed\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per process, the first one not counted")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the settings")
    parser.add_argument("--only", action="append", choices=list(SETTINGS), help="these settings only")
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch holds the trace and is not counted")
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.epochs)))
        return

    has_bf16 = bool(set((cpuinfo("flags") or "").split()) & set(BF16_FLAGS))
    names = args.only or list(SETTINGS)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.repeats):
        for name in names:
            if SETTINGS[name][5] and not has_bf16:
                continue
            results[name].append(run_one(name, args.steps, args.epochs))
            print(f"round {round_ + 1}/{args.repeats}  {name}: {results[name][-1]['images_per_s']:.1f} img/s",
                  flush=True)

    print(f"\n{cpu_name()}, {os.cpu_count()} CPUs; {args.steps} steps x {args.epochs - 1} timed epochs, "
          f"median of {args.repeats} rounds\n")
    print("| setting | training images/s | ratio | per round | first epoch |\n|---|---|---|---|---|")
    base = None
    for name in names:
        if not results[name]:
            print(f"| {name} | skipped: no {' or '.join(BF16_FLAGS)} in this CPU's flags | | | |")
            continue
        speed = statistics.median(r["images_per_s"] for r in results[name])
        base = base or speed
        rounds = " / ".join(f"{r['images_per_s']:.1f}" for r in results[name])
        first = statistics.median(r["first_epoch_s"] for r in results[name])
        print(f"| {name} | {speed:.1f} | {speed / base:.2f} | {rounds} | {first:.1f} s |")


if __name__ == "__main__":
    main()
