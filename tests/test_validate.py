"""validate: manifest, deterministic splits, and the Great Expectations suite on bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from datasets import dataset_config, image_tree, jpeg_bytes
from stages import ingest, validate


def make_raw(tmp_path, classes: dict[str, int], test_classes: dict[str, int] | None = None, **config_kw):
    src = image_tree(tmp_path / "src", classes)
    source = {"kind": "folder", "path": str(src)}
    if test_classes:
        source["test_path"] = str(image_tree(tmp_path / "src_test", test_classes, seed=7))
    config = dataset_config(source, **config_kw)
    return config, src


def run_validate(tmp_path, config, seed=127, name="run"):
    raw = tmp_path / "raw"
    if not raw.exists():
        ingest.run(config, raw, cache=tmp_path / "cache")
    out = tmp_path / name
    summary = validate.run(config, seed, raw, out / "manifest.csv", out / "validate.json", out / "reports")
    return summary, pd.read_csv(out / "manifest.csv")


def test_clean_data_gives_a_complete_manifest(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 10, "dog": 10})
    summary, manifest = run_validate(tmp_path, config)
    assert list(manifest.columns) == validate.MANIFEST_COLUMNS
    assert len(manifest) == 20 and summary["checks"]["failed_critical"] == 0
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert (manifest[["width", "height"]] == 24).all().all()
    assert (tmp_path / "run" / "reports" / "data_docs" / "index.html").is_file()
    assert json.loads((tmp_path / "run" / "reports" / "expectations.json").read_text())["success"] is True


def test_same_seed_same_manifest_other_seed_other_split(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 15, "dog": 15})
    _, first = run_validate(tmp_path, config, seed=1, name="a")
    _, again = run_validate(tmp_path, config, seed=1, name="b")
    _, other = run_validate(tmp_path, config, seed=2, name="c")
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert not first["split"].equals(other["split"])


def test_without_test_share_the_split_is_exactly_st_rule(tmp_path):
    config, _ = make_raw(tmp_path, {"b": 7, "a": 9, "c": 5}, test=0.0)
    _, manifest = run_validate(tmp_path, config, seed=127)
    # ST: per class sorted, classes concatenated, RandomState(seed).shuffle, first 80% train.
    paths = [f"{c}/{i:03d}.jpg" for c, n in sorted({"b": 7, "a": 9, "c": 5}.items()) for i in range(n)]
    np.random.RandomState(127).shuffle(paths)
    cut = int(len(paths) * 0.8)
    expected = {p: ("train" if i < cut else "val") for i, p in enumerate(paths)}
    assert dict(zip(manifest["path"], manifest["split"])) == expected


def test_dataset_test_folder_becomes_the_test_split(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 10, "dog": 10}, test_classes={"cat": 3, "dog": 2})
    _, manifest = run_validate(tmp_path, config)
    assert sorted(manifest.loc[manifest["split"] == "test", "path"].str.split("/").str[0]) == ["test"] * 5
    assert set(manifest.loc[manifest["path"].str.startswith("train/"), "split"]) == {"train", "val"}


@pytest.mark.parametrize("name, data, finding", [
    ("broken.jpg", jpeg_bytes(1, size=64)[:300], "every file decodes as an image"),
    ("notes.txt", b"not an image at all", "every file decodes as an image"),
])
def test_undecodable_files_stop_the_stage_naming_them(tmp_path, name, data, finding):
    config, src = make_raw(tmp_path, {"cat": 6, "dog": 6})
    (src / "dog" / name).write_bytes(data)
    with pytest.raises(validate.ValidationFailed) as error:
        run_validate(tmp_path, config)
    assert finding in str(error.value) and f"dog/{name}" in str(error.value)
    assert not (tmp_path / "run" / "manifest.csv").exists(), "no manifest may look valid after a failure"
    metrics = json.loads((tmp_path / "run" / "validate.json").read_text())
    assert metrics["checks"]["failed_critical"] >= 1


def test_grayscale_and_rgba_png_are_reported_not_fatal(tmp_path):
    config, src = make_raw(tmp_path, {"cat": 6, "dog": 6})
    (src / "cat" / "gray.png").write_bytes(jpeg_bytes(2, mode="L", fmt="PNG"))
    (src / "dog" / "alpha.png").write_bytes(jpeg_bytes(3, mode="RGBA", fmt="PNG"))
    summary, manifest = run_validate(tmp_path, config)
    modes = dict(zip(manifest["path"], manifest["mode"]))
    assert modes["cat/gray.png"] == "L" and modes["dog/alpha.png"] == "RGBA"
    rgb_issue = next(i for i in summary["issues"] if i["check"].startswith("RGB images"))
    assert rgb_issue["severity"] == "warning" and sorted(rgb_issue["files"]) == ["cat/gray.png", "dog/alpha.png"]


def test_too_few_images_in_a_class_is_critical(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 8, "dog": 1}, checks={"min_images_per_class": 3})
    with pytest.raises(validate.ValidationFailed, match="minimum images per class") as error:
        run_validate(tmp_path, config)
    assert "dog/000.jpg" in str(error.value)


def test_class_without_images_is_critical(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 5, "dog": 5})
    raw = tmp_path / "raw"
    ingest.run(config, raw, cache=tmp_path / "cache")
    record = json.loads((raw / "SOURCE.json").read_text())
    record["classes"].append("bird")  # a class the data no longer has
    (raw / "SOURCE.json").write_text(json.dumps(record))
    with pytest.raises(validate.ValidationFailed, match="no empty class"):
        run_validate(tmp_path, config)


def test_identical_image_in_two_classes_and_splits_is_dropped_and_reported(tmp_path):
    config, src = make_raw(tmp_path, {"cat": 10, "dog": 10})
    original = (src / "cat" / "000.jpg").read_bytes()
    # The same photo filed five more times under another label: a leak and a label conflict.
    for i in range(5):
        (src / "dog" / f"copy{i}.jpg").write_bytes(original)
    summary, manifest = run_validate(tmp_path, config)
    copies = manifest[manifest["sha256"] == manifest.loc[manifest["path"].str.contains("copy|cat/000"), "sha256"].iloc[0]]
    assert copies["split"].nunique() == 1, "an identical image may sit in one split only"
    dropped = pd.read_csv(tmp_path / "run" / "reports" / "dropped_duplicates.csv")
    assert summary["dropped_duplicates"] == len(dropped) >= 1
    assert len(copies) + len(dropped) == 6
    checks = {i["check"]: i for i in summary["issues"]}
    assert checks["no identical image under two labels"]["unexpected_count"] == 6
    assert checks["no identical image in two splits (fixed: dropped)"]["severity"] == "warning"


def test_size_and_balance_out_of_bounds_are_warnings(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 30, "dog": 3}, checks={"min_side": 32, "max_imbalance": 5.0})
    summary, _ = run_validate(tmp_path, config)
    checks = {i["check"]: i for i in summary["issues"]}
    assert checks["image width within bounds"]["severity"] == "warning"
    assert checks["class balance"]["unexpected_count"] == 3
