"""ingest: every source kind lands as class folders + SOURCE.json, or fails leaving nothing."""
from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from datasets import dataset_config, image_tree, jpeg_bytes, tar_gz
from http_server import serve_directory
from mcuvision.data import download
from mcuvision.data.archive import UnsafeArchiveError
from mcuvision.data.download import ChecksumError, DownloadError
from mcuvision.data.sources import SourceError
from stages import ingest


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(download, "_BACKOFF_S", 0)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def classes_in(out):
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def test_embedded_sample_keeps_its_license(tmp_path):
    config = dataset_config({"kind": "sample", "path": "data/sample/flowers_mini"}, num_classes=5)
    record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    out = tmp_path / "raw"
    assert classes_in(out) == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (out / "LICENSE.txt").is_file() and record["license_files"] == ["LICENSE.txt"]
    assert sum(record["counts"].values()) == 300
    assert json.loads((out / "SOURCE.json").read_text())["kind"] == "sample"


def test_folder_with_a_test_folder(tmp_path):
    image_tree(tmp_path / "train", {"cat": 3, "dog": 4})
    image_tree(tmp_path / "test", {"cat": 1, "dog": 2}, seed=1)
    config = dataset_config({"kind": "folder", "path": str(tmp_path / "train"), "test_path": str(tmp_path / "test")})
    record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert record["splits"] == ["train", "test"]
    assert record["counts"] == {"train": {"cat": 3, "dog": 4}, "test": {"cat": 1, "dog": 2}}
    assert len(list((tmp_path / "raw" / "test" / "dog").iterdir())) == 2


def test_empty_class_folder_stops_and_leaves_no_output(tmp_path):
    image_tree(tmp_path / "src", {"cat": 3})
    (tmp_path / "src" / "dog").mkdir()
    config = dataset_config({"kind": "folder", "path": str(tmp_path / "src")})
    with pytest.raises(SourceError, match="dog holds no images"):
        ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert not (tmp_path / "raw").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temp leftovers either


def test_class_count_mismatch_is_named(tmp_path):
    image_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    config = dataset_config({"kind": "folder", "path": str(tmp_path / "src")}, num_classes=3)
    with pytest.raises(SourceError, match="num_classes=3 but the source has 2 classes: cat, dog"):
        ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")


def test_synthetic_is_deterministic(tmp_path):
    config = dataset_config({"kind": "synthetic", "images_per_class": 3, "image_size": 32, "seed": 5}, num_classes=3)
    ingest.run(config, out=tmp_path / "a", cache=tmp_path / "cache")
    ingest.run(config, out=tmp_path / "b", cache=tmp_path / "cache")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert len(files_a) == 9
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


@pytest.fixture
def served_archive(tmp_path):
    tree = image_tree(tmp_path / "tree", {"daisy": 3, "tulips": 2})
    (tree / "LICENSE.txt").write_text("CC-BY")
    site = tmp_path / "site"
    site.mkdir()
    archive = tar_gz(tree, site / "flowers.tgz", "flower_photos")
    return site, archive


def test_url_archive_downloaded_once_checked_and_extracted(tmp_path, served_archive):
    site, archive = served_archive
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/flowers.tgz", "sha256": sha256(archive)})
        record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
        ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
        assert len(server.requests) == 1, "a re-run must reuse the cached archive"
    assert record["sha256"] == sha256(archive) and record["sha256_published"] is True
    assert record["counts"] == {"daisy": 3, "tulips": 2}
    assert (tmp_path / "raw" / "LICENSE.txt").read_text() == "CC-BY"


def test_unpublished_checksum_is_recorded_then_enforced(tmp_path, served_archive):
    site, archive = served_archive
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/flowers.tgz"})
        record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
        assert record["sha256"] == sha256(archive) and record["sha256_published"] is False
        # The host now serves other bytes: the recorded checksum catches it.
        tar_gz(image_tree(tmp_path / "other", {"x": 2, "y": 2}), archive, "flower_photos")
        with pytest.raises(ChecksumError):
            ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "fresh_cache")
    assert classes_in(tmp_path / "raw") == ["daisy", "tulips"], "the previous output stays as it was"


def test_bad_checksum_stops_and_leaves_no_output(tmp_path, served_archive):
    site, _ = served_archive
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/flowers.tgz", "sha256": "0" * 64})
        with pytest.raises(ChecksumError, match="0000"):
            ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert not (tmp_path / "raw").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_truncated_download_stops_and_leaves_no_output(tmp_path, served_archive):
    site, archive = served_archive
    with serve_directory(site, truncate={"flowers.tgz": 100}) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/flowers.tgz", "sha256": sha256(archive)})
        with pytest.raises(DownloadError, match="received"):
            ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert not (tmp_path / "raw").exists()


def test_path_traversal_member_is_rejected(tmp_path, served_archive):
    site, archive = served_archive
    tar_gz(tmp_path / "tree", archive, "flower_photos", extra={"../../evil.txt": b"owned"})
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/flowers.tgz"})
        with pytest.raises(UnsafeArchiveError, match="evil.txt"):
            ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert not (tmp_path / "raw").exists()
    assert not any(tmp_path.rglob("evil.txt"))


def test_food101_layout_keeps_the_official_split(tmp_path):
    root = tmp_path / "tree"
    for cls in ("apple_pie", "ramen"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(3):
            (root / "images" / cls / f"{cls}{i}.jpg").write_bytes(jpeg_bytes(hash(cls) % 1000 + i))
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("apple_pie/apple_pie0\napple_pie/apple_pie1\nramen/ramen0\nramen/ramen1\n")
    (root / "meta" / "test.txt").write_text("apple_pie/apple_pie2\nramen/ramen2\n")
    site = tmp_path / "site"
    site.mkdir()
    tar_gz(root, site / "food-101.tar.gz", "food-101")
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/food-101.tar.gz", "layout": "food101"})
        record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert record["splits"] == ["train", "test"]
    assert record["counts"]["test"] == {"apple_pie": 1, "ramen": 1}
    assert (tmp_path / "raw" / "test" / "ramen" / "ramen2.jpg").is_file()


def test_zip_archive_without_extension(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "file_downloaded", "w") as z:
        for cls in ("leaf_a", "leaf_b"):
            for i in range(2):
                z.writestr(f"Plant_leaves/{cls}/{i}.jpg", jpeg_bytes(i + len(cls)))
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/file_downloaded"}, num_classes=2)
        record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert record["classes"] == ["leaf_a", "leaf_b"]


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def add_litter(src):
    """What Macs, Windows, NAS boxes and Jupyter leave in a dataset folder, at several depths;
    returns how many files were added (one of them a real JPEG thumbnail)."""
    fork = b"\x00\x05\x16\x07" + b"\x00" * 60
    files = {"__MACOSX/cat/._000.jpg": fork, "__MACOSX/dog/._000.jpg": fork, "cat/._001.jpg": fork,
             ".DS_Store": b"Bud1", "cat/.DS_Store": b"Bud1", "dog/Thumbs.db": b"\xd0\xcf", "dog/desktop.ini": b"[x]",
             "dog/@eaDir/000.jpg/SYNOPHOTO_THUMB_XL.jpg": jpeg_bytes(99), "cat/deep/.thumbnails/t.jpg": jpeg_bytes(98),
             "cat/.ipynb_checkpoints/n.png": b"x", ".hidden_class/000.jpg": jpeg_bytes(97),
             "dog/.x/y.jpg": jpeg_bytes(96)}
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    return len(files)


def test_os_litter_is_skipped_at_any_depth_and_counted(tmp_path):
    src = image_tree(tmp_path / "src", {"bird": 3, "cat": 3, "dog": 3})
    litter = add_litter(src)
    record = ingest.run(dataset_config({"kind": "folder", "path": str(src)}), out=tmp_path / "raw",
                        cache=tmp_path / "cache")
    assert record["classes"] == ["bird", "cat", "dog"]
    assert files_under(tmp_path / "raw") == sorted(["SOURCE.json"] + [f"{c}/{i:03d}.jpg" for c in ("bird", "cat", "dog")
                                                                      for i in range(3)])
    skipped = json.loads((tmp_path / "raw" / "SOURCE.json").read_text())["skipped"]
    assert skipped["files"] == litter == sum(skipped["by_reason"].values())
    assert len(skipped["by_reason"]) >= 6  # each kind of litter has its reason


def test_mac_made_zip_finds_its_class_root_past_macosx(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "my_photos.zip", "w") as z:
        for c, cls in enumerate(("bird", "cat", "dog")):
            for i in range(3):
                z.writestr(f"my_photos/{cls}/{i}.jpg", jpeg_bytes(10 * c + i))
                z.writestr(f"__MACOSX/my_photos/{cls}/._{i}.jpg", b"\x00\x05\x16\x07" + b"\x00" * 60)
        z.writestr("my_photos/.DS_Store", b"Bud1")
    with serve_directory(site) as server:
        config = dataset_config({"kind": "url", "url": f"{server.url}/my_photos.zip"})
        record = ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")
    assert record["classes"] == ["bird", "cat", "dog"] and record["counts"] == {"bird": 3, "cat": 3, "dog": 3}
    assert record["skipped"]["files"] == 10


def test_nested_images_are_never_lost_or_replaced(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    (src / "cat" / "a" / "b").mkdir(parents=True)
    (src / "cat" / "a" / "b.jpg").write_bytes(jpeg_bytes(51))
    (src / "cat" / "a__b.jpg").write_bytes(jpeg_bytes(52))  # the name a flattened a/b.jpg would take
    (src / "cat" / "a" / "b" / "c.jpg").write_bytes(jpeg_bytes(53))
    record = ingest.run(dataset_config({"kind": "folder", "path": str(src)}), out=tmp_path / "raw",
                        cache=tmp_path / "cache")
    raw = tmp_path / "raw"
    for cls in ("cat", "dog"):
        assert files_under(raw / cls) == files_under(src / cls)
        assert record["counts"][cls] == len(files_under(raw / cls))  # the record counts what was written
        assert all((raw / cls / f).read_bytes() == (src / cls / f).read_bytes() for f in files_under(src / cls))
    assert record["counts"]["cat"] == 5


def test_one_class_stops_ingest_naming_it(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 4})
    (src / "__MACOSX" / "dog").mkdir(parents=True)  # litter is no second class
    with pytest.raises(SourceError, match="cat") as error:
        ingest.run(dataset_config({"kind": "folder", "path": str(src)}), out=tmp_path / "raw", cache=tmp_path / "cache")
    assert "at least 2" in str(error.value)
    assert not (tmp_path / "raw").exists()


def test_class_holding_only_litter_is_named(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 3})
    (src / "dog" / "@eaDir").mkdir(parents=True)
    (src / "dog" / "@eaDir" / "thumb.jpg").write_bytes(jpeg_bytes(5))
    (src / "dog" / "._000.jpg").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(SourceError, match="dog holds no images"):
        ingest.run(dataset_config({"kind": "folder", "path": str(src)}), out=tmp_path / "raw", cache=tmp_path / "cache")
