"""Work counted on ST's model-zoo models for the board latency fits, and the published times beside them.

Calibration points (fitted): ST's six int8 models in ../shared/reference/st_zoo_models with the
times of its published.csv (STM32H747I-DISCO, and the STM32MP157F-DK2 where `mp157_ms` is given),
and the seed card's ST EfficientNet LC v1 times (counted on the project's own 5-class model).

Check points (never fitted per kind; used for the external-memory term and as unseen models):
ST's other published times for the same families, from the model READMEs of ST's public model zoo
(image_classification/models/<family>/README.md, the STM32Cube.AI 7.3.0 release; MP157 times with
TensorFlow Lite 2.11.0). Their work is counted on ST's own files run at the other resolution
(TFLite's interpreter resizes the input and gives every tensor's shape), or, for MobileNet v1 0.5,
on keras.applications.MobileNet(alpha=0.5) converted here: at alpha 0.25 that conversion gives
exactly the counts of ST's file except 4 explicit PAD operators that ST's older converter kept,
which are added.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, run as a script

import numpy as np

from mcuvision.convert import tflite_graph
from mcuvision.profiling import board_latency as bl
from mcuvision.profiling import liveness

ROOT = Path(__file__).resolve().parents[1]
README = "ST model zoo, image_classification/models/{}/README.md (STM32Cube.AI 7.3.0 release)"
# (name, family folder, counted from (ST file, resolution) or "built", activation KiB, weights KiB,
#  {board: published ms}); MCU activation and weights figures are ST's STM32H7 footprints.
CHECKS = [
    ("mobilenet_v1_0.5_224_int8", "mobilenetv1", "built", 404.28, 812.61,
     {"stm32h747i_disco": 520.02, "stm32mp157f_dk2": 165.39}),
    ("mobilenet_v2_0.35_224_int8", "mobilenetv2", ("mobilenet_v2_0.35_128_int8", 224), 686.5, 406.86,
     {"stm32h747i_disco": 392.92, "stm32mp157f_dk2": 141.92}),
    ("fdmobilenet_0.25_224_int8", "fdmobilenet", ("fdmobilenet_0.25_128_int8", 224), 152.0, 129.0,
     {"stm32h747i_disco": 63.19, "stm32mp157f_dk2": 23.55, "stm32f769i_disco": 112.4}),
    ("fdmobilenet_0.25_128_int8", "fdmobilenet", ("fdmobilenet_0.25_128_int8", 128), 51.0, 129.0,
     {"stm32mp157f_dk2": 8.53, "stm32f769i_disco": 39.47}),
    ("squeezenet_v1.1_224_int8", "squeezenetv1.1", ("squeezenet_v1.1_128_int8", 224), 756.25, 716.71,
     {"stm32h747i_disco": 977.8, "stm32mp157f_dk2": 224.2}),
]
TOOLS = {"stm32h747i_disco": "STM32Cube.AI 7.3.0, 400 MHz", "stm32f769i_disco": "STM32Cube.AI 7.3.0, 216 MHz "
         "(the README's row says STM32H769I-DISCO, a typo for the F769 board at 216 MHz)",
         "stm32mp157f_dk2": "TensorFlow Lite 2.11.0, 2 CPU at 800 MHz"}
ARCHITECTURES = {"mobilenet_v1": "MobileNet v1", "mobilenet_v2": "MobileNet v2", "fdmobilenet": "FD-MobileNet",
                 "squeezenet_v1.0": "SqueezeNet v1.0", "squeezenet_v1.1": "SqueezeNet v1.1"}


def architecture(name: str) -> str:
    return next((v for k, v in ARCHITECTURES.items() if name.startswith(k)), name)


def facts(graph) -> dict:
    """Work per kind, whole-tensor peak and activation traffic of a loaded .tflite graph."""
    return {"work": bl.work(graph), "whole_tensor_peak_bytes": liveness.peak(graph)["peak_bytes"],
            "activation_traffic_bytes": bl.activation_traffic(graph)}


def resized(content: bytes, resolution: int):
    """The graph of `content` with every tensor's shape at a square input of `resolution`."""
    from ai_edge_litert import interpreter as litert

    graph = tflite_graph.load(content)
    runner = litert.Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = runner.get_input_details()[0]
    runner.resize_tensor_input(detail["index"], [1, resolution, resolution, int(detail["shape"][3])])
    runner.allocate_tensors()
    tensors = graph.subgraphs[0].tensors
    for d in runner.get_tensor_details():
        if d["index"] < len(tensors):
            tensors[d["index"]].shape = np.array(d["shape"], dtype=np.int32)
    return graph


def _quantized(model, resolution: int) -> bytes:
    import yaml

    from mcuvision.config.quantize import QuantizeConfig
    from mcuvision.convert.quantization import int8_tflite

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    config = QuantizeConfig.from_params(params)  # ST's recipe: uint8 input, float output
    config = dataclasses.replace(config, tflite=dataclasses.replace(config.tflite, input_type="uint8",
                                                                    output_type="float32"))
    images = np.random.default_rng(0).integers(0, 256, (4, resolution, resolution, 3)).astype(np.uint8)
    return int8_tflite(model, images, config)


def built_mobilenet_v1(alpha: float, resolution: int) -> dict:
    """Facts of keras.applications.MobileNet(alpha) + ST's head (pool, dropout, dense 5), int8 here."""
    import keras

    base = keras.applications.MobileNet(input_shape=(resolution, resolution, 3), alpha=alpha, include_top=False,
                                        weights=None)
    x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(base.output))
    model = keras.Model(base.input, keras.layers.Dense(5, activation="softmax")(x))
    out = facts(tflite_graph.load(_quantized(model, resolution)))
    out["work"]["ops"] += 4  # the explicit PADs of ST's converter (see the module docstring)
    return out


def lc_v1(resolution: int) -> dict:
    """Facts of the project's 5-class ST EfficientNet LC v1 at `resolution` (untrained: counts need no weights)."""
    from mcuvision.model.architecture import build_model

    return facts(tflite_graph.load(_quantized(build_model(5, resolution), resolution)))


def check_points(zoo: Path) -> list[dict]:
    """One entry per (model, board) of CHECKS, with the model's facts counted from `zoo`."""
    out = []
    for name, family, counted, act_kib, weights_kib, times in CHECKS:
        if counted == "built":
            found, how = built_mobilenet_v1(0.5, 224), "keras.applications.MobileNet(alpha=0.5) converted here"
        else:
            found = facts(resized((zoo / f"{counted[0]}.tflite").read_bytes(), counted[1]))
            how = f"ST's {counted[0]}.tflite run at {counted[1]}x{counted[1]}"
        for board, ms in times.items():
            out.append({"name": name, "architecture": architecture(name), "resolution": int(name.split("_")[-2]),
                        "board": board, "tool": TOOLS[board], "published_ms": ms,
                        "published_activation_kib": act_kib, "published_weights_kib": weights_kib,
                        "source": README.format(family), "counted_on": how, **found})
    return out
