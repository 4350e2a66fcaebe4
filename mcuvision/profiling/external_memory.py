"""The time an MCU spends when its activations live in external RAM (SDRAM) instead of internal SRAM.

When a model's activation buffer does not fit the board's largest internal RAM region, ST's
runtime places it in the board's external SDRAM, which is slower. On the STM32H747I-DISCO the
per-kind model (fitted on models whose activations fit the 512 KiB AXI SRAM) under-estimated ST's
two zoo models at 224 whose activations do not (MobileNet v2 0.35: 686.5 KiB, SqueezeNet v1.1:
756.25 KiB, STM32Cube.AI 7.3.0) by 69 and 55 ms. The term added for them:

    extra_ms = cycles_per_byte * traffic_bytes / (clock_MHz * 1000)

traffic_bytes = `board_latency.activation_traffic` (activation bytes read and written by the
operators). One coefficient, fitted on relative error over the published times of the models in
external RAM, on top of the board's per-kind estimate of each. Weights in external flash would need
a term of their own; no published time was found to fit one, so none is modelled.
"""
from __future__ import annotations

import numpy as np


def extra_ms(cycles_per_byte: float, traffic_bytes: float, clock_mhz: float) -> float:
    """Added time in ms for `traffic_bytes` of activation traffic in external RAM at clock_mhz."""
    return float(cycles_per_byte) * float(traffic_bytes) / (float(clock_mhz) * 1000.0)


def fit(base_ms, published_ms, traffic_bytes, clock_mhz: float) -> float:
    """Cycles per byte (>= 0) minimising sum ((base + extra) / published - 1)^2.

    base_ms: the internal-RAM estimate of each model (ms); published_ms: the published time (ms);
    traffic_bytes: each model's activation traffic. Raises ValueError on empty or mismatched input
    or non-positive times.
    """
    base, published, traffic = (np.asarray(a, np.float64) for a in (base_ms, published_ms, traffic_bytes))
    if base.size == 0 or not base.shape == published.shape == traffic.shape:
        raise ValueError(f"need as many base estimates, published times and traffic counts: "
                         f"{base.shape}, {published.shape}, {traffic.shape}")
    if np.any(published <= 0) or np.any(base < 0) or clock_mhz <= 0:
        raise ValueError("published times and the clock must be positive")
    x = traffic / (clock_mhz * 1000.0) / published  # ms per cycle-per-byte, relative
    r = 1.0 - base / published
    denominator = float(np.sum(x * x))
    return max(0.0, float(np.sum(x * r)) / denominator) if denominator > 0 else 0.0


def leave_one_out(base_ms, published_ms, traffic_bytes, clock_mhz: float) -> list[float]:
    """Signed % error of each model's time, (base + extra from a fit on the others) vs published.

    Needs at least two models (ValueError otherwise).
    """
    base, published, traffic = (np.asarray(a, np.float64) for a in (base_ms, published_ms, traffic_bytes))
    if base.size < 2:
        raise ValueError("leave-one-out needs at least two models")
    errors = []
    for i in range(base.size):
        keep = np.arange(base.size) != i
        k = fit(base[keep], published[keep], traffic[keep], clock_mhz)
        errors.append(100.0 * ((base[i] + extra_ms(k, traffic[i], clock_mhz)) / published[i] - 1.0))
    return errors
