"""export: the quantized models -> artifacts/, what a user takes away to firmware or an app.

Files are named in ST's model-zoo convention (st_efficientnetlcv1_{res}_tfs_...), with
labels.txt, a metadata JSON (classes, preprocessing, I/O types, quantization, provenance),
the int8 TFLite model as C source + header, the model's one custom Keras layer as a file of its
own with a README that says how to load each model, and SHA256SUMS over all of them.

golden/: `evaluate.golden_images` held-out images (evaluate.split) as the int8 model's exact input
tensors and TFLite Micro's exact outputs for them, with a C comparison and a C reference of the input
preparation (mcuvision/convert/golden.py, golden_c.py, prep_c.py); the README shows the firmware's lines.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd

from mcuvision.atomic import atomic_dir
from mcuvision.config.base import as_dict, load_params, seed_of
from mcuvision.config.evaluate import EvaluateConfig
from mcuvision.config.model import ModelConfig
from mcuvision.config.quantize import QuantizeConfig
from mcuvision.convert import c_array, golden, golden_c, prep_c, tflite_graph
from mcuvision.errors import REPRO_HINT, PipelineError, fail, require_inputs
from mcuvision.formats import W4W8_MODEL_FILE, W4W8_SEARCH_FILE


def artifact_names(res: int, w4w8: dict | None = None) -> dict[str, str]:
    stem = f"st_efficientnetlcv1_{res}_tfs"
    names = {"tflite": f"{stem}_int8.tflite", "qdq": f"{stem}_qdq_int8.onnx", "keras": f"{stem}.keras",
             "onnx": f"{stem}.onnx", "c_name": f"{stem}_int8"}
    if w4w8:
        # ST's convention carries the achieved shares and accuracy in the file name: here the top-1 on
        # the validation images that checked the search (the test split is evaluate's).
        names["w4w8"] = (f"{stem}_qdq_w4_{w4w8['int4_share_pct']:.1f}%_w8_{w4w8['int8_share_pct']:.1f}%"
                         f"_a8_{w4w8['activations_int8_pct']:g}%_acc_{w4w8['check_top1']:.2f}.onnx")
    return names


# The custom layer's source, copied beside the .keras model: found, not imported (no TensorFlow here).
LAYERS_SOURCE = Path(importlib.util.find_spec("mcuvision.model.layers").origin)
LAYERS_FILE = "mcuvision_layers.py"


def readme(names: dict, classes: list[str], res: int) -> str:
    """artifacts/README.md: what each file is and the lines that load it, without this project."""
    stem = LAYERS_FILE.removesuffix(".py")
    return f"""# ST EfficientNet LC v1, {res}x{res}, {len(classes)} classes

Classes, in output order: `labels.txt`. Input: RGB pixels 0..255, {res}x{res}, not normalized
(every model divides by 255 itself). Details and provenance: `metadata.json`.

- `{names['tflite']}`: int8, uint8 input, for TFLite Micro / STM32 (also as C source: `{names['c_name']}.c/.h`).
- `{names['qdq']}`: int8 QDQ ONNX; `{names['onnx']}`: float ONNX. `onnxruntime.InferenceSession(path)`.
- `{names['keras']}`: float Keras 3. Its squeeze-and-excitation clip is a custom layer, defined
  in `{LAYERS_FILE}` (needs only Keras). From this folder:

```python
import keras
import {stem}  # registers the layer
model = keras.models.load_model("{names['keras']}")  # safe mode, no other code needed
```

`SHA256SUMS`: `sha256sum -c SHA256SUMS` checks every file.
"""


class NotAKerasFile(PipelineError, ValueError):
    """models/float.keras is not a .keras archive with its weights (damaged or cut short)."""


def keras_params(keras_path: Path) -> int:
    """Parameter count of a .keras file, as Keras' count_params gives it, without loading TensorFlow.

    The archive's weights file keeps the model's variables under layers/ (optimizer state elsewhere).
    Raises NotAKerasFile naming the file when it is no zip archive or lacks the weights.
    """
    import h5py

    try:
        with zipfile.ZipFile(keras_path) as archive, \
                h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            sizes = []
            weights["layers"].visititems(
                lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None)
    except (zipfile.BadZipFile, KeyError, OSError) as error:  # no archive; no weights entry or group
        raise NotAKerasFile(f"{keras_path}: not a .keras file with its weights ({error}); {REPRO_HINT}") from error
    return int(sum(sizes))


def metadata(names: dict, res: int, classes: list[str], tflite: bytes, params: int, model_config: ModelConfig,
             quantize: QuantizeConfig, source: dict, seed: int) -> dict:
    inputs, outputs = tflite_graph.io_tensors(tflite_graph.load(tflite))
    quant = lambda t: {"scale": t.scale[0], "zero_point": t.zero_point[0]} if t.scale else None  # noqa: E731
    return {
        "model": "ST EfficientNet LC v1", "files": {k: v for k, v in names.items() if k != "c_name"},
        "classes": classes, "num_classes": len(classes),
        "keras_custom_objects": {"mcuvision>Clip": f"{LAYERS_FILE}: import it before keras.models.load_model"},
        "resolution": [res, res], "parameter_count": params,
        "preprocessing": {
            "input": "RGB pixels 0..255, unnormalized (the model rescales by 1/255 itself)",
            "resize": f"{model_config.interpolation}, to {res}x{res}", "interpolation": model_config.interpolation,
            "channel_order": "RGB", "layout": "NHWC"},
        "int8_tflite": {"input": {"dtype": inputs[0].dtype, "shape": list(inputs[0].shape),
                                  "quantization": quant(inputs[0])},
                        "output": {"dtype": outputs[0].dtype, "shape": list(outputs[0].shape),
                                   "quantization": quant(outputs[0])}},
        "onnx": {"input": ("float32 (N, H, W, 3) raw pixels" if quantize.onnx.layout == "nhwc"
                           else "float32 (N, 3, H, W) raw pixels"),
                 "output": "float32 (N, classes) probabilities", "opset": quantize.onnx.opset},
        "source": {k: source.get(k) for k in ("dataset", "kind", "url", "sha256", "path") if source.get(k) is not None},
        "params": {"model": as_dict(model_config), "quantize": as_dict(quantize), "seed": seed},
    }


GOLDEN_DIR = "golden"


def write_golden(folder: Path, vectors: golden.GoldenSet, model_config: ModelConfig, c_name: str) -> bool:
    """golden/ in `folder`: golden.h/.c, and prepare.h/.c where model.interpolation has a C reference
    (returned: whether it has)."""
    folder.mkdir()
    (folder / "golden.h").write_text(golden_c.header(vectors, f"{c_name}_labels in {c_name}.h"), encoding="utf-8")
    (folder / "golden.c").write_text(golden_c.source(vectors), encoding="utf-8")
    if model_config.interpolation not in prep_c.SUPPORTED:
        return False
    scale, zero = vectors.input_quantization or (None, None)
    (folder / "prepare.h").write_text(prep_c.header(model_config.res, model_config.interpolation,
                                                    vectors.input_dtype), encoding="utf-8")
    (folder / "prepare.c").write_text(prep_c.source(model_config.res, model_config.interpolation,
                                                    vectors.input_dtype, scale, zero), encoding="utf-8")
    return True


def golden_record(vectors: golden.GoldenSet, prepare: bool) -> dict:
    """metadata.json's `golden`: which images, what the model gave them, the tolerances."""
    return {"folder": GOLDEN_DIR, "split": vectors.split, "images": vectors.paths,
            "labels": [int(v) for v in vectors.labels], "top1": [int(v) for v in vectors.top1],
            "outputs": "codes of the output's int8 quantization, TFLite Micro reference kernels",
            "output_quantization": {"dtype": vectors.output.dtype, "scale": vectors.output.scale,
                                    "zero_point": vectors.output.zero_point},
            "tolerance_steps": 0, "tolerance_other_runtime_steps": golden_c.tolerance_other(vectors),
            "litert_diff_steps": vectors.litert_diff_steps, "prepare_reference": prepare}


def run(model_config: ModelConfig, quantize: QuantizeConfig, seed: int, *, keras_path: Path, tflite_path: Path,
        onnx_path: Path, qdq_path: Path, w4w8_dir: Path, train_metrics: Path, source_record: Path,
        manifest_path: Path, raw: Path, out: Path, golden_images: int = 8, golden_split: str = "test") -> list[str]:
    """Write `out` (artifacts/): the files listed in the module docstring; returns their paths relative to
    `out`. `golden_images` images of `golden_split` (val without a test split) become golden/."""
    require_inputs(keras_path, tflite_path, onnx_path, qdq_path, w4w8_dir / W4W8_SEARCH_FILE, train_metrics,
                   source_record, manifest_path, raw)
    res = model_config.res
    search = json.loads((w4w8_dir / W4W8_SEARCH_FILE).read_text(encoding="utf-8"))
    names = artifact_names(res, search if search.get("enabled") else None)
    models = {"tflite": tflite_path, "qdq": qdq_path, "keras": keras_path, "onnx": onnx_path}
    if "w4w8" in names:
        models["w4w8"] = w4w8_dir / W4W8_MODEL_FILE
    classes = json.loads(train_metrics.read_text(encoding="utf-8"))["classes"]
    tflite = tflite_path.read_bytes()
    graph = tflite_graph.load(tflite, tflite_path)
    shape = tflite_graph.io_tensors(graph)[0][0].shape
    params = keras_params(keras_path)  # a damaged float model stops the stage before the slower work
    vectors = golden.make(tflite, pd.read_csv(manifest_path), raw, golden_split, golden_images, res,
                          model_config.interpolation)
    with atomic_dir(out) as tmp:
        for key, src in models.items():
            shutil.copyfile(src, tmp / names[key])
        (tmp / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        shutil.copyfile(LAYERS_SOURCE, tmp / LAYERS_FILE)
        c_name = names["c_name"]
        prepare = write_golden(tmp / GOLDEN_DIR, vectors, model_config, c_name)
        firmware = golden_c.firmware_section(c_name, tflite_graph.operator_names(graph), vectors, prepare,
                                             model_config.interpolation)
        (tmp / "README.md").write_text(readme(names, classes, res) + "\n" + firmware, encoding="utf-8")
        source = json.loads(source_record.read_text(encoding="utf-8"))
        info = metadata(names, res, classes, tflite, params, model_config, quantize, source, seed)
        info["golden"] = golden_record(vectors, prepare)
        (tmp / "metadata.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (tmp / f"{c_name}.h").write_text(c_array.header(c_name, shape, classes), encoding="utf-8")
        (tmp / f"{c_name}.c").write_text(c_array.source(c_name, tflite, shape, classes), encoding="utf-8")
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        sums = [f"{hashlib.sha256((tmp / f).read_bytes()).hexdigest()}  {f}" for f in files]
        (tmp / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    return files + ["SHA256SUMS"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Package the models for users and firmware.")
    for name in ("keras", "tflite", "onnx", "qdq", "w4w8", "train_metrics", "source", "manifest", "raw", "out"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, required=True)
    args = parser.parse_args()
    try:
        params = load_params()
        evaluate = EvaluateConfig.from_params(params)
        files = run(ModelConfig.from_params(params), QuantizeConfig.from_params(params), seed_of(params),
                    keras_path=args.keras, tflite_path=args.tflite, onnx_path=args.onnx, qdq_path=args.qdq,
                    w4w8_dir=args.w4w8, train_metrics=args.train_metrics, source_record=args.source,
                    manifest_path=args.manifest, raw=args.raw, out=args.out,
                    golden_images=evaluate.golden_images, golden_split=evaluate.split)
    except PipelineError as error:
        fail("export", error)
    print(f"export: {len(files)} files -> {args.out}/: {', '.join(files)}")


if __name__ == "__main__":
    main()
