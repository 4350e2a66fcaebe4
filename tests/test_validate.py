"""validate: manifest, deterministic splits, and the Great Expectations suite on bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

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
        ingest.run(config, out=raw, cache=tmp_path / "cache")
    out = tmp_path / name
    summary = validate.run(config, seed, raw=raw, manifest=out / "manifest.csv", metrics=out / "validate.json",
                           reports=out / "reports")
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
    config, _ = make_raw(tmp_path, {"b": 7, "a": 9, "c": 5}, test=0.0, rule="st")
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
    ("notes.png", b"not an image at all", "every file decodes as an image"),  # an image suffix: kept, then refused
    ("scan.tif", jpeg_bytes(1, fmt="TIFF"), "One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required"),  # the reason
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
    ingest.run(config, out=raw, cache=tmp_path / "cache")
    record = json.loads((raw / "SOURCE.json").read_text())
    record["classes"].append("bird")  # a class the data no longer has
    (raw / "SOURCE.json").write_text(json.dumps(record))
    with pytest.raises(validate.ValidationFailed, match="bird"):  # the class is named
        run_validate(tmp_path, config)
    assert not (tmp_path / "run" / "manifest.csv").exists()


def test_identical_image_in_two_classes_and_splits_is_dropped_and_reported(tmp_path):
    config, src = make_raw(tmp_path, {"cat": 10, "dog": 10})
    original = (src / "cat" / "000.jpg").read_bytes()
    # The same photo filed five more times under another label: a leak and a label conflict.
    for i in range(5):
        (src / "dog" / f"copy{i}.jpg").write_bytes(original)
    summary, manifest = run_validate(tmp_path, config)
    copied = manifest.loc[manifest["path"].str.contains("copy|cat/000"), "sha256"].iloc[0]
    copies = manifest[manifest["sha256"] == copied]
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
    assert checks["image width within bounds"]["bounds"] == "expected 32 to 4096, found 24"  # jpeg_bytes: 24 px
    assert checks["class balance"]["unexpected_count"] == 3
    assert checks["class balance"]["bounds"] == "expected at least 0.2, found 0.1"  # 3 dog / 30 cat


def blocky_bytes(seed: int, fmt: str, side: int = 128, mode: str = "RGB") -> bytes:
    """A photo-like image (8x8-pixel blocks): Pillow decodes it cut short where noise would fail."""
    import io

    from PIL import Image
    blocks = np.random.RandomState(seed).randint(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((side, side), Image.NEAREST).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("name, data", [
    ("no_end_marker.jpg", blocky_bytes(1, "JPEG")[:-2]),  # Pillow decodes it, TensorFlow does not
    ("half.jpg", blocky_bytes(2, "JPEG")[:1500]),
    ("cut.png", blocky_bytes(3, "PNG")[:-2]),
    ("cut.gif", blocky_bytes(4, "GIF")[:-2]),
    ("cut.bmp", blocky_bytes(5, "BMP")[:-200]),
    ("one_bit.bmp", blocky_bytes(6, "BMP", mode="1")),    # a BMP TensorFlow's decoder does not read
])
def test_files_the_training_decoder_refuses_are_named(tmp_path, name, data):
    config, src = make_raw(tmp_path, {"cat": 6, "dog": 6})
    (src / "cat" / name).write_bytes(data)
    with pytest.raises(validate.ValidationFailed) as error:
        run_validate(tmp_path, config)
    assert f"cat/{name}" in str(error.value)
    assert not (tmp_path / "run" / "manifest.csv").exists()


def test_every_file_that_passes_validate_decodes_in_the_input_pipeline(tmp_path):
    from mcuvision.data.input_pipeline import decode_all
    config, src = make_raw(tmp_path, {"cat": 4, "dog": 4})
    odd = {"cat/gray.png": blocky_bytes(1, "PNG", mode="L"), "cat/alpha.png": blocky_bytes(2, "PNG", mode="RGBA"),
           "dog/palette.bmp": blocky_bytes(3, "BMP", mode="P"), "dog/frame.gif": blocky_bytes(4, "GIF"),
           "dog/cmyk.jpg": blocky_bytes(5, "JPEG", mode="CMYK"), "dog/PNG_AS.JPG": blocky_bytes(6, "PNG")}
    for path, data in odd.items():
        (src / path).write_bytes(data)
    _, manifest = run_validate(tmp_path, config)
    assert set(odd) <= set(manifest["path"])
    images = decode_all([str(tmp_path / "raw" / p) for p in manifest["path"]], 32, "nearest")  # raises if any fails
    assert images.shape == (len(manifest), 32, 32, 3)


def write_raw(raw, classes: dict[str, dict[str, bytes]]):
    """data/raw/ as ingest writes it, by hand (ingest itself refuses some of these)."""
    for cls, files in classes.items():
        (raw / cls).mkdir(parents=True)
        for name, data in files.items():
            (raw / cls / name).write_bytes(data)
    record = {"dataset": "t", "kind": "folder", "classes": sorted(classes), "splits": None,
              "counts": {c: len(f) for c, f in classes.items()}}
    (raw / "SOURCE.json").write_text(json.dumps(record))


def test_fewer_than_two_classes_stops_validate_naming_the_class(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 5, "dog": 5})
    write_raw(tmp_path / "raw", {"cat": {f"{i}.jpg": jpeg_bytes(i) for i in range(5)}})
    with pytest.raises(validate.ValidationFailed, match="cat") as error:
        run_validate(tmp_path, config)
    assert "at least 2" in str(error.value)
    assert not (tmp_path / "run" / "manifest.csv").exists()


def test_class_with_no_decodable_image_stops_validate_naming_it(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 5, "dog": 5})
    write_raw(tmp_path / "raw", {"cat": {f"{i}.jpg": jpeg_bytes(i) for i in range(5)},
                                 "dog": {"a.jpg": b"not an image", "b.png": blocky_bytes(1, "PNG")[:-2]}})
    with pytest.raises(validate.ValidationFailed, match="'dog'") as error:
        run_validate(tmp_path, config)
    assert "'cat'" not in str(error.value)


def test_a_failed_set_expectation_names_the_classes(tmp_path):
    from datasets import CHECKS
    from mcuvision.config.dataset import ChecksConfig
    from mcuvision.data.expectations import run_suite
    rows = pd.DataFrame({"path": ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg", "dog/1.jpg"],
                         "label": ["cat"] * 2 + ["dog"] * 2,
                         "split": ["train", "val"] * 2, "sha256": [f"{i:064x}" for i in range(4)], "width": 24,
                         "height": 24, "mode": "RGB", "format": "JPEG", "decodes": True})
    findings, _ = run_suite(rows, ["bird", "cat", "dog"], ChecksConfig.from_section(CHECKS), tmp_path / "docs")
    failed = [f for f in findings if not f.success]
    assert failed and all(f.names or f.files for f in failed)
    assert any("bird" in f.names for f in failed)


def test_stratified_split_puts_every_class_in_every_split(tmp_path):
    config, _ = make_raw(tmp_path, {"a": 40, "b": 40, "c": 40, "rare": 5, "three": 3})
    summary, manifest = run_validate(tmp_path, config)
    for cls, counts in summary["per_class"].items():
        assert all(counts[s] >= 1 for s in ("train", "val", "test")), cls
    assert not [i for i in summary["issues"] if i["check"] == "every class in every split"]
    assert summary["split_rule"] == "stratified"


def test_a_class_missing_from_a_split_is_a_warning_naming_it(tmp_path):
    config, _ = make_raw(tmp_path, {"cat": 10, "dog": 10, "pair": 2})  # 2 images: train and val, no test
    summary, manifest = run_validate(tmp_path, config)
    issue = next(i for i in summary["issues"] if i["check"] == "every class in every split")
    assert issue["severity"] == "warning" and len(issue["names"]) == 1 and "pair" in issue["names"][0]
    assert set(manifest.loc[manifest["label"] == "pair", "split"]) == {"train", "val"}


def test_class_counts_keep_every_split_it_can():
    from mcuvision.data.splits import class_counts
    for n in range(1, 60):
        for val, test in ((0.2, 0.1), (0.2, 0.0), (0.5, 0.45), (0.05, 0.05)):
            train, v, t = class_counts(n, val, test)
            assert train + v + t == n and train >= 1
            assert v >= (1 if n >= 2 else 0) and t >= (1 if test > 0 and n >= 3 else 0)
            assert t == 0 or test > 0


def test_validate_reports_the_litter_ingest_skipped(tmp_path):
    config, src = make_raw(tmp_path, {"cat": 6, "dog": 6})
    (src / "dog" / "@eaDir" / "000.jpg").mkdir(parents=True)
    (src / "dog" / "@eaDir" / "000.jpg" / "SYNOPHOTO_THUMB_XL.jpg").write_bytes(jpeg_bytes(77, size=64))
    (src / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    summary, manifest = run_validate(tmp_path, config)
    assert summary["skipped_by_ingest"]["files"] == 2 and len(summary["skipped_by_ingest"]["by_reason"]) == 2
    assert len(manifest) == 12 and not manifest["path"].str.contains("eaDir|Thumbs").any()


def smooth_photo(seed: int, size: int = 96) -> Image.Image:
    """A photo-like image: an 8x8 random colour field, smoothly enlarged (pixel noise has no stable
    perceptual hash, and a 4x4 field too flat a spectrum for a stable pHash)."""
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)


def test_near_duplicates_are_reported_and_gathered_in_one_split(tmp_path):
    src = tmp_path / "src"
    for c, name in enumerate(("cat", "dog")):
        (src / name).mkdir(parents=True)
        for i in range(10):
            photo = smooth_photo(100 * c + i)
            photo.save(src / name / f"{i:02d}.jpg", quality=95)
            copy = photo.resize((72, 72)) if i % 3 == 0 else photo  # resized, or re-encoded only
            copy = ImageEnhance.Brightness(copy).enhance(1.1) if i % 3 == 1 else copy  # lightly edited
            copy.save(src / name / f"{i:02d}_copy.jpg", quality=70)
    config = dataset_config({"kind": "folder", "path": str(src)}, val=0.25, test=0.25)
    summary, manifest = run_validate(tmp_path, config)
    assert len(manifest) == 40, "near-duplicates are moved, never dropped"
    split = dict(zip(manifest["path"], manifest["split"]))
    for name in ("cat", "dog"):
        for i in range(10):
            assert split[f"{name}/{i:02d}.jpg"] == split[f"{name}/{i:02d}_copy.jpg"], (name, i)
    pairs = pd.read_csv(tmp_path / "run" / "reports" / validate.NEAR_DUPLICATES_CSV)
    found = {frozenset((a, b)) for a, b in zip(pairs["path_a"], pairs["path_b"])}
    expected = {frozenset((f"{n}/{i:02d}.jpg", f"{n}/{i:02d}_copy.jpg")) for n in ("cat", "dog") for i in range(10)}
    assert found == expected, "every copy is found, and no two different photos are paired"
    near = summary["near_duplicates"]
    assert near["pairs"] == 20 and near["moved"] == len(near["moved_files"]) > 0
    assert near["cross_split_pairs"] == sum(a != b for a, b in zip(pairs["split_a"], pairs["split_b"]))


def test_near_duplicate_search_can_be_switched_off(tmp_path):
    src = tmp_path / "src"
    for c, name in enumerate(("cat", "dog")):
        (src / name).mkdir(parents=True)
        for i in range(6):
            smooth_photo(10 * c + i).save(src / name / f"{i}.jpg", quality=95)
            smooth_photo(10 * c + i).save(src / name / f"{i}_copy.jpg", quality=60)
    config = dataset_config({"kind": "folder", "path": str(src)}, checks={"near_duplicate_distance": None})
    summary, manifest = run_validate(tmp_path, config)
    assert summary["near_duplicates"]["pairs"] == 0 and len(manifest) == 24


def test_exif_orientation_is_recorded_and_applied_by_the_decoder(tmp_path):
    from PIL import ImageOps

    from mcuvision.data.input_pipeline import decode_all, read_split

    config, src = make_raw(tmp_path, {"cat": 6, "dog": 6})
    portrait = smooth_photo(7, size=96).resize((64, 96))  # stored 64 wide, 96 high
    exif = portrait.getexif()
    exif[0x0112] = 6  # shown a quarter turn clockwise: 96 wide, 64 high
    portrait.save(src / "cat" / "phone_portrait.jpg", exif=exif, quality=95)
    summary, manifest = run_validate(tmp_path, config)
    row = manifest.set_index("path").loc["cat/phone_portrait.jpg"]
    assert (row["width"], row["height"], row["orientation"]) == (96, 64, 6)
    assert summary["exif_oriented"] == ["cat/phone_portrait.jpg"]
    assert (manifest.loc[manifest["path"] != "cat/phone_portrait.jpg", "orientation"] == 1).all()

    raw = tmp_path / "raw"
    split = read_split(manifest, raw, row["split"])
    at = split.paths.index(str(raw / "cat/phone_portrait.jpg"))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(raw / "cat/phone_portrait.jpg")).convert("RGB")
                       .resize((32, 32), Image.BILINEAR), dtype=np.float32)
    for decoded in (decode_all(split.paths, 32, "bilinear", split.orientations)[at],
                    decode_all([split.paths[at]], 32, "bilinear")[0]):  # orientation read from the file (predict)
        assert np.abs(decoded.astype(np.float32) - shown).mean() < 8, "the photo as a viewer shows it"
        assert np.abs(decoded.astype(np.float32) - np.rot90(shown, 1)).mean() > 20, "not as stored"


def test_banded_near_duplicate_search_finds_what_comparing_every_pair_finds():
    from mcuvision.data.splits import near_duplicate_pairs

    rng = np.random.RandomState(3)
    originals = rng.randint(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    flips = [sum(1 << int(b) for b in rng.choice(64, k, replace=False)) for k in rng.randint(0, 7, 150)]
    hashes = np.r_[originals, originals[:150] ^ np.array(flips, dtype=np.uint64)]
    text = [f"{int(h):016x}" for h in hashes]
    found = near_duplicate_pairs(pd.DataFrame({"dhash": text, "phash": text}), 4)
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    brute = {(a, b) for a, b in zip(*np.nonzero(np.triu(distance <= 4, 1)))}
    assert set(zip(found["a"], found["b"])) == brute and len(brute) > 50
