"""Profile an int8 model for STM32 boards: measured off the board, estimated on it.

- liveness: the lower bound on activation RAM (peak of simultaneously live tensors);
- macc: MACC per layer from the .tflite graph;
- tflm: TFLite Micro's arena head/tail/total and the bisected minimal arena (child processes);
- latency: host latency of LiteRT, onnxruntime and TFLite Micro, median and spread;
- boards: latency and RAM/flash fit estimates from conf/board, with the calibration error;
- stedgeai: the optional ST Edge AI Core backend;
- report: reports/profile.md.
"""
