"""predict: user images -> top-k labels, for every exported format, as training preprocesses them.

One tiny untrained model (res 32, 4 classes) is converted to each format once per module. Its
BatchNorm statistics are set from one batch, else activations vanish at initialization and
every image scores 0.25 per class, which would make "same labels as the predictor" pass for any
image order; the tests check that the images do get different scores. Tests that are not about
formats use the float ONNX file: it loads in a fraction of a second, a .keras file in seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from mcuvision.config.quantize import QuantizeConfig
from mcuvision.data.input_pipeline import decode_all
from mcuvision.runtime import predict as P
from mcuvision.runtime.runners import load_predictor

ROOT = Path(__file__).resolve().parents[1]
RES, CLASSES = 32, 4
FORMATS = ("keras", "int8_tflite", "float_onnx", "qdq_onnx")


@pytest.fixture(scope="module")
def models(tmp_path_factory, base_params) -> dict[str, Path]:
    import keras

    from mcuvision.convert.quantization import float_onnx, int8_tflite, qdq_onnx
    from mcuvision.model.architecture import build_model
    from mcuvision.model.training import set_bn_momentum

    keras.utils.set_random_seed(0)
    model = build_model(CLASSES, RES, dropout=0.0, drop_connect=0.0, depth=0.1)  # a block a stage: converts faster
    rng = np.random.RandomState(0)
    calibration = rng.randint(0, 256, (16, RES, RES, 3)).astype(np.uint8)
    set_bn_momentum(model, 0.0)  # one training-mode pass makes the moving statistics this batch's
    model(calibration.astype(np.float32), training=True)
    config = QuantizeConfig.from_params(base_params)
    folder = tmp_path_factory.mktemp("models")
    paths = {name: folder / file for name, file in (("keras", "m.keras"), ("int8_tflite", "m_int8.tflite"),
                                                     ("float_onnx", "m.onnx"), ("qdq_onnx", "m_qdq.onnx"))}
    model.save(paths["keras"])
    paths["int8_tflite"].write_bytes(int8_tflite(model, calibration, config))
    proto = float_onnx(model, RES, config.onnx.opset, config.onnx.layout)
    onnx.save(proto, paths["float_onnx"])
    onnx.save(qdq_onnx(proto, calibration, config), paths["qdq_onnx"])
    return paths


def write_image(path: Path, seed: int, size=(53, 41), mode: str = "RGB") -> Path:
    """Random pixels at a size other than RES, so resizing (and its interpolation) matters."""
    rng = np.random.RandomState(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.randint(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_image(root / "b.png", 1)
    write_image(root / "a.jpg", 2, size=(90, 64))
    write_image(root / "nested" / "c.JPG", 3, size=(32, 32))
    write_image(root / "nested" / "deeper" / "d.png", 4, mode="L")
    write_image(root / "nested" / "e.png", 5, mode="RGBA")
    # Not inputs: hidden file and folder, a non-image suffix.
    write_image(root / ".hidden.jpg", 6)
    write_image(root / ".cache" / "f.jpg", 7)
    (root / "notes.md").write_text("not an image\n")
    return root


EXPECTED = ["a.jpg", "b.png", "nested/c.JPG", "nested/deeper/d.png", "nested/e.png"]


def quiet(message: str) -> None:
    pass


def rel(paths, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_predictors_top_k_on_training_pixels(fmt, models, photos):
    report = P.predict(models[fmt], [photos], top_k=3, batch=2, log=quiet)  # batch 2: several batches, one partial
    assert report.failures == []
    assert rel([r.path for r in report.results], photos) == EXPECTED
    # Reference: the project's own decode with the default interpolation, then the predictor.
    probs = load_predictor(models[fmt], batch=2).predict(decode_all([r.path for r in report.results], RES, "nearest"))
    assert len({int(p.argmax()) for p in probs}) > 1 or np.ptp(probs[:, 0]) > 0.01, "images must score differently"
    for result, p in zip(report.results, probs):
        assert len(result.predictions) == 3
        indices = [q.index for q in result.predictions]
        confidences = [q.confidence for q in result.predictions]
        assert indices[0] == int(np.argmax(p))
        np.testing.assert_allclose(confidences, np.sort(p)[::-1][:3], rtol=0, atol=1e-6)
        np.testing.assert_allclose(confidences, p[indices], rtol=0, atol=1e-6)
        assert confidences == sorted(confidences, reverse=True)
        assert all(0.0 <= c <= 1.0 for c in confidences)
        assert [q.label for q in result.predictions] == [str(i) for i in indices]  # no labels: indices


def test_top_k_is_capped_at_the_class_count(models, photos):
    report = P.predict(models["float_onnx"], [photos / "a.jpg"], top_k=10, log=quiet)
    (result,) = report.results
    assert sorted(q.index for q in result.predictions) == list(range(CLASSES))
    assert sum(q.confidence for q in result.predictions) == pytest.approx(1.0, abs=1e-5)


def test_interpolation_from_flag_then_metadata_then_default(models, tmp_path, photos, capsys):
    model = tmp_path / "m.onnx"
    shutil.copyfile(models["float_onnx"], model)
    assert P.resolve_interpolation(model, None)[0] == "nearest"
    (tmp_path / "metadata.json").write_text(json.dumps({"params": {"model": {"interpolation": "area"}}}))
    assert P.resolve_interpolation(model, None)[0] == "area"  # metadata written before the key existed
    (tmp_path / "metadata.json").write_text(json.dumps({"preprocessing": {"interpolation": "bilinear"}}))
    assert P.resolve_interpolation(model, None) == ("bilinear", str(tmp_path / "metadata.json"))
    assert P.resolve_interpolation(model, "bicubic") == ("bicubic", "--interpolation")
    assert "differs" in capsys.readouterr().err  # overriding what the model was trained with is flagged
    with pytest.raises(P.PredictError, match="interpolation"):
        P.resolve_interpolation(model, "lanczos")

    # The method found is the one used: results match bilinear pixels, not nearest ones.
    image = photos / "a.jpg"
    (result,) = P.predict(model, [image], top_k=CLASSES, log=quiet).results
    got = np.array([q.confidence for q in sorted(result.predictions, key=lambda q: q.index)])
    predictor = load_predictor(model)
    bilinear = predictor.predict(decode_all([str(image)], RES, "bilinear"))[0]
    nearest = predictor.predict(decode_all([str(image)], RES, "nearest"))[0]
    assert np.abs(bilinear - nearest).max() > 1e-3  # the test can tell the two apart
    np.testing.assert_allclose(got, bilinear, rtol=0, atol=1e-6)


def test_folder_walk_is_recursive_sorted_and_skips_hidden(photos):
    assert rel(P.find_images([photos]), photos) == EXPECTED
    # A file named explicitly is taken whatever its suffix (the image check decides), and a file
    # reached twice runs once, at its first place.
    found = P.find_images([photos / "notes.md", photos / "nested", photos / "nested" / "e.png"])
    assert rel(found, photos) == ["notes.md", "nested/c.JPG", "nested/deeper/d.png", "nested/e.png"]


def test_missing_path_is_an_error_before_the_model_loads(photos, tmp_path):
    with pytest.raises(P.PredictError, match="no such file or folder: .*typo.jpg"):
        P.predict(tmp_path / "not_loaded.tflite", [photos, photos / "typo.jpg"], log=quiet)
    (tmp_path / "empty" / ".thumbnails").mkdir(parents=True)
    write_image(tmp_path / "empty" / ".thumbnails" / "t.jpg", 8)
    with pytest.raises(P.PredictError, match="no images"):
        P.predict(tmp_path / "not_loaded.tflite", [tmp_path / "empty"], log=quiet)


def test_not_a_model_is_a_clear_error(tmp_path, photos, capsys):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\0" * 16)
    assert P.main(["--model", str(weights), str(photos)]) == 2
    assert "model.pt: not a model this project runs" in capsys.readouterr().err


def test_labels_from_labels_txt_flag_and_metadata(models, tmp_path, photos):
    model = tmp_path / "m.onnx"
    shutil.copyfile(models["float_onnx"], model)
    (tmp_path / "metadata.json").write_text(json.dumps({"classes": ["w", "x", "y", "z"]}))

    def top1(**kwargs) -> tuple[str, int]:
        (result,) = P.predict(model, [photos / "a.jpg"], log=quiet, **kwargs).results
        return result.predictions[0].label, result.predictions[0].index

    label, index = top1()
    assert label == "wxyz"[index]  # metadata.json's classes when there is no labels.txt
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\nfish\n\n")  # trailing blank line is no class
    assert top1() == (["cat", "dog", "bird", "fish"][index], index)
    custom = tmp_path / "mine.txt"
    custom.write_text("A\nB\nC\nD\n")
    assert top1(labels_file=custom) == ("ABCD"[index], index)


@pytest.mark.parametrize("where", ["labels.txt", "--labels"])
def test_label_count_other_than_the_models_outputs_is_an_error(models, tmp_path, photos, where, capsys):
    model = tmp_path / "m.onnx"
    shutil.copyfile(models["float_onnx"], model)
    labels = tmp_path / ("labels.txt" if where == "labels.txt" else "other.txt")
    labels.write_text("cat\ndog\nbird\n")
    argv = ["--model", str(model), str(photos)] + (["--labels", str(labels)] if where == "--labels" else [])
    assert P.main(argv) == 2
    captured = capsys.readouterr()
    assert f"{labels} has 3 labels but the model has 4 outputs" in captured.err
    assert captured.out == ""


def test_unreadable_files_are_named_and_the_rest_still_predicted(models, photos, capfd):
    (photos / "bad.jpg").write_text("meeting notes\n")  # notes.txt renamed bad.jpg
    data = (photos / "a.jpg").read_bytes()
    (photos / "nested" / "cut.jpg").write_bytes(data[:len(data) // 2])  # PIL's header check passes; TF fails
    tiff = photos / "scan.png"
    Image.new("RGB", (40, 40)).save(tiff, format="TIFF")  # an image, but not one training could read

    report = P.predict(models["int8_tflite"], [photos], batch=3, log=quiet)
    assert rel([r.path for r in report.results], photos) == EXPECTED
    assert [(Path(f.path).name, f.reason.split(" (")[0].split(";")[0]) for f in report.failures] == [
        ("bad.jpg", "not an image"), ("cut.jpg", "corrupt image data"), ("scan.png", "TIFF image")]

    # The command: results on stdout, one line per skipped file on stderr, exit status 1.
    capfd.readouterr()
    assert P.main(["--model", str(models["int8_tflite"]), "--json", str(photos)]) == 1
    captured = capfd.readouterr()  # file descriptor 2 too, where TensorFlow's JPEG decoder writes
    assert all(line.startswith("predict: ") for line in captured.err.splitlines()), captured.err
    assert rel([r["path"] for r in json.loads(captured.out)], photos) == EXPECTED
    skipped = [line for line in captured.err.splitlines() if line.startswith("predict: skipped")]
    assert skipped[0] == (f"predict: skipped {photos / 'bad.jpg'}: "
                          "not an image (its contents are no image format PIL knows)")
    assert len(skipped) == 3 and "3 of 8 images could not be read" in captured.err


def test_table_lists_each_image_with_its_top_k(models, photos, capsys):
    args = ["--model", str(models["float_onnx"]), "--top-k", "2", str(photos / "a.jpg"), str(photos / "b.png")]
    assert P.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["image", "top-1", "top-2"]
    report = P.predict(models["float_onnx"], [photos / "a.jpg", photos / "b.png"], top_k=2, log=quiet)
    for line, result in zip(lines[1:], report.results):
        cells = line.split()
        assert cells[0] == result.path
        assert cells[1::2] == [q.label for q in result.predictions]
        assert cells[2::2] == [f"{q.confidence:.1%}" for q in result.predictions]
    assert len(lines) == 3


def test_cli_json_in_a_subprocess(models, photos):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-m", "mcuvision.runtime.predict", "--model", str(models["int8_tflite"]),
                          "--json", "--top-k", "2", str(photos)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert rel([d["path"] for d in document], photos) == EXPECTED
    expected = P.predict(models["int8_tflite"], [photos], top_k=2, log=quiet).results
    for item, result in zip(document, expected):
        assert set(item) == {"path", "predictions"}
        assert [set(q) for q in item["predictions"]] == [{"label", "index", "confidence"}] * 2
        assert [(q["index"], q["confidence"]) for q in item["predictions"]] == \
            [(q.index, pytest.approx(q.confidence)) for q in result.predictions]
    assert "interpolation nearest (project default" in run.stderr


def test_a_file_name_that_is_not_utf8_is_predicted_and_printed_as_on_disk(models, tmp_path):
    name = b"caf\xe9.png"  # Latin-1, as old archives hold it
    write_image(tmp_path / "photos" / os.fsdecode(name), 1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-m", "mcuvision.runtime.predict", "--model", str(models["int8_tflite"]),
                          "--top-k", "1", str(tmp_path / "photos")], cwd=ROOT, env=env, capture_output=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert os.fsencode(tmp_path / "photos") + b"/" + name in run.stdout
