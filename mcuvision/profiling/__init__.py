"""Profile an int8 model for STM32 boards: measured off the board, estimated on it.

- liveness: the whole-tensor peak for this op order (most bytes of whole tensors live at once);
- macc: MACC per layer from the .tflite graph;
- tflm: TFLite Micro's arena head/tail/total and the bisected minimal arena (child processes);
- latency: host latency of LiteRT, onnxruntime and TFLite Micro, median and spread;
- board_latency: the per-kind latency model (work per op kind, fit, leave-one-out error);
- holdout: error bars from whole-architecture hold-out, and the check that they cover;
- external_memory: the time added when activations live in external RAM;
- latency_estimate: a board's time, what it is calibrated on, its error bar (or why none);
- energy: energy per inference and what a battery gives, estimated from datasheet current;
- boards: latency, energy, RAM fit per runtime and flash fit, per board;
- stedgeai: the optional ST Edge AI Core backend;
- report: reports/profile.md.
"""
