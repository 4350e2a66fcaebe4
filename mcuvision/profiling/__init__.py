"""Profile an int8 model for STM32 boards: measured off the board, estimated on it.

- liveness: the whole-tensor peak for this op order (most bytes of whole tensors live at once);
- macc: MACC per layer from the .tflite graph;
- tflm: TFLite Micro's arena head/tail/total and the bisected minimal arena (child processes);
- latency: host latency of LiteRT, onnxruntime and TFLite Micro, median and spread;
- board_latency: the per-kind latency model (work per op kind, fit, leave-one-out error);
- boards: latency with its leave-one-out error, RAM fit per runtime and flash fit, per board;
- stedgeai: the optional ST Edge AI Core backend;
- report: reports/profile.md.
"""
