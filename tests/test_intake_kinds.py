"""Every kind of entry a real dataset folder holds is kept, or skipped and counted with its reason;
never a traceback, never a half-written data/raw: links, unreadable entries, special
files, any name the OS allows, non-image files, empty splits, `~` and $VARS in paths, bad Hydra
overrides, tiny images. Every input is made here, in a temp folder."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import unicodedata
import zipfile

import pandas as pd
import pytest
import yaml

from conftest import ROOT, stage_command, stage_env
from datasets import dataset_config, image_tree, jpeg_bytes, tar_gz
from http_server import serve_directory
from mcuvision import compose
from mcuvision.config.base import ConfigError
from mcuvision.data.archive import UnsafeArchiveError, safe_extract
from mcuvision.data.input_pipeline import EmptySplitError, decode_all, read_split
from mcuvision.data.sources import BROKEN_LINK, FOLDER_AGAIN, FOLDER_LOOP, LINK_LOOP, UNREADABLE, safe_name
from stages import ingest, validate

# util-linux setpriv: root without the two capabilities that let it read and enter any file or folder.
NO_OVERRIDES = ["setpriv", "--inh-caps", "-dac_override,-dac_read_search",
                "--bounding-set", "-dac_override,-dac_read_search"]
LOOSE = {"min_images_per_class": 1, "min_side": 1}


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def ingest_folder(src, raw, **config_kw):
    config = dataset_config({"kind": "folder", "path": str(src)}, **config_kw)
    return config, ingest.run(config, out=raw, cache=raw.parent / "cache")


def run_validate(config, raw, out):
    return validate.run(config, 1, raw=raw, manifest=out / "manifest.csv", metrics=out / "validate.json",
                        reports=out / "reports")


def test_links_are_followed_once_and_the_unfollowable_counted_by_reason(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    elsewhere = image_tree(tmp_path / "elsewhere", {"moredir": 3}, seed=1) / "moredir"
    cat = src / "cat"
    os.symlink(elsewhere, cat / "more")  # a folder link: its 3 images are cat's
    os.symlink(elsewhere, cat / "more_again")  # the same folder again: read once
    os.symlink(src / "dog" / "000.jpg", cat / "dog_photo.jpg")  # a file link
    os.symlink("self.jpg", cat / "self.jpg")
    os.symlink("b.jpg", cat / "a.jpg")
    os.symlink("a.jpg", cat / "b.jpg")  # a circle of two
    os.symlink("nowhere.jpg", cat / "dangling.jpg")
    os.symlink("..", cat / "up")  # back to the dataset root
    os.symlink(".", cat / "here")
    _, record = ingest_folder(src, tmp_path / "raw")
    raw = tmp_path / "raw"
    assert files_under(raw / "cat") == ["000.jpg", "001.jpg", "dog_photo.jpg", "more/000.jpg", "more/001.jpg",
                                        "more/002.jpg"]
    assert not any(p.is_symlink() for p in raw.rglob("*"))
    assert record["counts"] == {"cat": 6, "dog": 2} == {c: len(files_under(raw / c)) for c in ("cat", "dog")}
    assert record["skipped"]["by_reason"] == {BROKEN_LINK: 1, LINK_LOOP: 3, FOLDER_LOOP: 2, FOLDER_AGAIN: 1}


def test_links_inside_an_archive_keep_their_targets_when_files_are_moved(tmp_path):
    tree = image_tree(tmp_path / "tree", {"cat": 2, "dog": 2})
    image_tree(tree / "cat", {"sub": 2}, seed=1)
    os.symlink("../cat/sub", tree / "dog" / "alias")  # dog/alias -> cat/sub, inside the archive
    os.symlink("../cat/000.jpg", tree / "dog" / "copy.jpg")
    site = tmp_path / "site"
    site.mkdir()
    tar_gz(tree, site / "photos.tgz", "photos")
    raw = tmp_path / "raw"
    with serve_directory(site) as server:
        record = ingest.run(dataset_config({"kind": "url", "url": f"{server.url}/photos.tgz"}), out=raw,
                            cache=tmp_path / "cache")
    assert record["counts"] == {"cat": 4, "dog": 5}
    assert files_under(raw / "dog") == ["000.jpg", "001.jpg", "alias/000.jpg", "alias/001.jpg", "copy.jpg"]
    assert (raw / "dog" / "alias" / "001.jpg").read_bytes() == (raw / "cat" / "sub" / "001.jpg").read_bytes()
    assert not any(p.is_symlink() for p in raw.rglob("*"))


def zip_with_links(path, files: dict[str, bytes], links: dict[str, str]):
    """A zip as `zip -y` writes it: links stored as members holding their target, S_IFLNK in the mode."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def test_links_inside_a_zip_are_links_and_followed(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    files = {f"p/{c}/{i}.jpg": jpeg_bytes(10 * n + i) for n, c in enumerate(("cat", "dog")) for i in range(2)}
    zip_with_links(site / "p.zip", files, {"p/dog/cats": "../cat", "p/dog/self.jpg": "self.jpg"})
    with serve_directory(site) as server:
        record = ingest.run(dataset_config({"kind": "url", "url": f"{server.url}/p.zip"}), out=tmp_path / "raw",
                            cache=tmp_path / "cache")
    assert record["counts"] == {"cat": 2, "dog": 4} and record["skipped"]["by_reason"] == {LINK_LOOP: 1}


@pytest.mark.parametrize("links", [{"p/up": "../.."}, {"p/d/b": "..", "p/d/a": "b/../.."}])  # alone; a chain
def test_zip_links_that_lead_outside_are_refused(tmp_path, links):
    archive = zip_with_links(tmp_path / "p.zip", {"p/cat/0.jpg": jpeg_bytes(1)}, links)
    with pytest.raises(UnsafeArchiveError, match="outside the destination"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fifos_sockets_and_devices_are_skipped_and_counted(tmp_path, monkeypatch):
    src = image_tree(tmp_path / "src", {"cat": 2, "dog": 2})
    os.mkfifo(src / "cat" / "pipe.jpg")  # opening it would block forever
    os.mkfifo(src / "beside_the_classes")
    os.symlink("/dev/null", src / "dog" / "null.jpg")
    monkeypatch.chdir(src / "dog")  # a relative socket path: AF_UNIX paths are limited to 108 bytes
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock.jpg")
        _, record = ingest_folder(src, tmp_path / "raw")
    assert record["skipped"]["by_reason"] == {"named pipe (FIFO)": 2, "socket": 1, "character device": 1}
    assert files_under(tmp_path / "raw") == ["SOURCE.json", "cat/000.jpg", "cat/001.jpg", "dog/000.jpg",
                                             "dog/001.jpg"]


def as_a_user(command: list[str]) -> list[str]:
    """`command` run so that file permissions bind it: unchanged for a user who is not root; for
    root (CI), under setpriv without the capabilities that let root read anything."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without util-linux setpriv: chmod 000 would stop nobody")
    return [*NO_OVERRIDES, *command]


def project_with(tmp_path, source: dict, checks: dict | None = None):
    """A project folder whose params.yaml is the project's own with this dataset source."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["dataset"].update(num_classes=None, source=source)
    params["dataset"]["checks"].update(checks or {})
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return project


def run_stage(name: str, project, user: bool = False) -> subprocess.CompletedProcess:
    command = stage_command(name)
    return subprocess.run(as_a_user(command) if user else command, cwd=project, env=stage_env(),
                          capture_output=True, text=True, timeout=600)


def test_unreadable_entries_are_skipped_and_counted_or_named_in_one_line(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    secret, locked, bird = src / "cat" / "secret.jpg", src / "dog" / "locked", src / "bird"
    secret.write_bytes(jpeg_bytes(50))
    image_tree(src / "dog", {"locked": 1}, seed=2)
    image_tree(src, {"bird": 2}, seed=3)
    project = project_with(tmp_path, {"kind": "folder", "path": str(src)}, LOOSE)
    try:
        for path in (secret, locked):
            path.chmod(0)
        probe = subprocess.run(as_a_user([sys.executable, "-c", f"open({str(secret)!r}, 'rb')"]), capture_output=True)
        if probe.returncode == 0:
            pytest.skip("setpriv could not drop root's override capabilities here")
        done = run_stage("ingest", project, user=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert f"{UNREADABLE}: 2" in done.stdout, done.stdout
        raw = project / "data" / "raw"
        record = json.loads((raw / "SOURCE.json").read_text())
        assert record["counts"] == {"bird": 2, "cat": 3, "dog": 3}
        # validate on a raw/ with a file its user cannot read: skipped, counted, named
        (raw / "cat" / "000.jpg").chmod(0)
        done = run_stage("validate", project, user=True)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert f"validate: skipped 1 entry: {UNREADABLE}: 1" in done.stdout, done.stdout
        # a whole class unreadable: one sentence naming it, exit 2, the previous data/raw untouched
        bird.chmod(0)
        before = (raw / "SOURCE.json").read_bytes()
        done = run_stage("ingest", project, user=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("ingest failed: class folder") and "bird holds no images" in done.stderr
        assert (raw / "SOURCE.json").read_bytes() == before
        assert not [p.name for p in raw.parent.iterdir() if p.name.startswith(".raw")]  # no temporary folder left
    finally:
        for path in (secret, locked, bird, project / "data" / "raw" / "cat" / "000.jpg"):
            if path.exists():
                path.chmod(0o755)


def test_any_name_the_os_allows_survives_ingest_validate_and_the_decoder(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # not UTF-8: an old archive's Latin-1
    odd = [latin1, "new\nline.jpg", 'comma, "quote" and space.jpg', "tab\t.jpg", "émoji 🐱.jpg", "-dash.jpg",
           "percent%E9.jpg"]
    for i, name in enumerate(odd):
        (src / "cat" / name).write_bytes(jpeg_bytes(60 + i))
    image_tree(src, {os.fsdecode(b"\xe9t\xe9"): 3}, seed=4)  # a class folder too
    raw = tmp_path / "raw"
    config, record = ingest_folder(src, raw, checks=LOOSE)
    assert sorted(record["renamed"]) == ["%E9t%E9/000.jpg", "%E9t%E9/001.jpg", "%E9t%E9/002.jpg", "cat/caf%E9.jpg"]
    assert record["classes"] == ["%E9t%E9", "cat", "dog"]
    run_validate(config, raw, tmp_path / "out")  # Great Expectations included
    text = (tmp_path / "out" / "manifest.csv").read_bytes().decode("utf-8")  # readable as UTF-8
    assert "caf%E9.jpg" in text
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert {f"cat/{safe_name(name)}" for name in odd} <= set(manifest["path"])
    # what train, evaluate and quantize read; predict reads a user's file under its name on disk
    split = read_split(manifest, raw, "train")
    assert decode_all(split.paths, 16, "nearest").shape == (len(split), 16, 16, 3)
    assert decode_all([str(src / "cat" / latin1)], 16, "nearest").shape == (1, 16, 16, 3)


def test_validate_names_a_raw_file_name_that_is_not_utf8_in_one_sentence(tmp_path):
    """A data/raw/ made by hand (ingest renames such names): stopped before any decode, named."""
    raw = image_tree(tmp_path / "raw", {"cat": 2, "dog": 2})
    (raw / "cat" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(jpeg_bytes(9))
    (raw / "SOURCE.json").write_text(json.dumps({"classes": ["cat", "dog"], "splits": None}))
    with pytest.raises(validate.ValidationFailed, match=r"1 file name in .* not valid UTF-8: cat/caf%E9\.jpg"):
        run_validate(dataset_config({"kind": "folder", "path": str(raw)}), raw, tmp_path / "out")


def test_a_file_the_decoder_refuses_is_named_by_validate_alone(tmp_path):
    """TensorFlow's JPEG decoder writes "Input file read error" to stderr, naming no file, each time it
    meets a JPEG without its end marker: the stage's own lines name it, and they are all stderr holds."""
    src = image_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    (src / "cat" / "no_end_marker.jpg").write_bytes(jpeg_bytes(60, size=64)[:-2])
    project = project_with(tmp_path, {"kind": "folder", "path": str(src)}, LOOSE)
    assert run_stage("ingest", project).returncode == 0
    done = run_stage("validate", project)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "img/s]" not in line]  # progress bars
    assert done.returncode == 2 and lines[0] == "validate failed: critical data checks failed:", done.stderr
    assert lines[-1].strip().startswith("cat/no_end_marker.jpg: TensorFlow: jpeg::Uncompress failed"), done.stderr
    assert len(lines) == 3, done.stderr


def test_class_names_alike_but_for_case_or_normalisation_are_a_warning_naming_both(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "crème"), unicodedata.normalize("NFD", "crème")
    src = image_tree(tmp_path / "src", {"Cat": 2, "cat": 2, nfc: 2, nfd: 2, "dog": 2})
    config, _ = ingest_folder(src, tmp_path / "raw", checks=LOOSE)
    summary = run_validate(config, tmp_path / "raw", tmp_path / "out")
    issue = next(i for i in summary["issues"] if i["check"].startswith("class names distinct"))
    assert issue["severity"] == "warning"
    assert issue["names"] == ["Cat and cat", "'cre\\u0300me' (NFD) and 'cr\\xe8me' (NFC)"]  # in class order


def test_non_image_files_are_skipped_by_kind_and_images_kept_by_suffix_or_content(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    for name in ("notes.txt", "README.TXT", "labels.csv", "meta.json", "boxes.xml", "run.log"):
        (src / "cat" / name).write_text("not an image\n")
    (src / "cat" / "photo").write_bytes(jpeg_bytes(70))  # no suffix, a JPEG inside: an image
    (src / "dog" / "leaf.webp").write_bytes(jpeg_bytes(71, fmt="WEBP"))
    config, record = ingest_folder(src, tmp_path / "raw", checks=LOOSE)
    assert record["skipped"]["by_reason"] == {"non-image file (.txt)": 2, "non-image file (.csv)": 1,
                                              "non-image file (.json)": 1, "non-image file (.xml)": 1,
                                              "non-image file (.log)": 1}
    assert record["counts"] == {"cat": 4, "dog": 4}
    run_validate(config, tmp_path / "raw", tmp_path / "out")
    formats = pd.read_csv(tmp_path / "out" / "manifest.csv").set_index("path")["format"]
    assert formats["dog/leaf.webp"] == "WEBP" and formats["cat/photo"] == "JPEG"


def test_an_empty_val_split_is_a_warning_and_train_refuses_it_in_one_sentence(tmp_path):
    src = image_tree(tmp_path / "src", {"cat": 1, "dog": 1})
    project = project_with(tmp_path, {"kind": "folder", "path": str(src)}, LOOSE)
    raw = project / "data" / "raw"
    config, _ = ingest_folder(src, raw, checks=LOOSE)
    summary = run_validate(config, raw, project / "data")
    assert summary["splits"] == {"train": 2, "val": 0, "test": 0}
    issue = next(i for i in summary["issues"] if i["check"] == "no empty split")
    assert issue["severity"] == "warning" and issue["names"] == ["val (no image at all)", "test (no image at all)"]
    with pytest.raises(EmptySplitError, match="the val split has no image"):
        read_split(pd.read_csv(project / "data" / "manifest.csv"), raw, "val")
    done = run_stage("validate", project)  # the warning as printed: what is wrong, not only the check's name
    assert done.returncode == 0, done.stderr
    assert "validate: warning: check not met: no empty split: val (no image at all)" in done.stdout, done.stdout
    done = run_stage("train", project)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train failed: the val split has no image"), done.stderr


def test_home_and_environment_variables_in_dataset_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PHOTOS", "my photos")
    image_tree(tmp_path / "my photos", {"cat": 2, "dog": 2})
    config = dataset_config({"kind": "folder", "path": "~/$PHOTOS", "test_path": "${HOME}/my photos"})
    assert config.source.path == config.source.test_path == str(tmp_path / "my photos")
    assert ingest.run(config, out=tmp_path / "raw", cache=tmp_path / "cache")["counts"]["test"] == {"cat": 2, "dog": 2}
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    with pytest.raises(ConfigError, match=r"dataset.source.path=.*NOT_SET_HERE is not set"):
        dataset_config({"kind": "folder", "path": "$NOT_SET_HERE/photos"})


def test_compose_reports_a_bad_override_in_one_line(tmp_path):
    """The unquoted `~` as a user types it, in a process of its own: one line, exit status 2."""
    done = subprocess.run([sys.executable, "-m", "mcuvision.compose", "--output", str(tmp_path / "p.yaml"),
                           "dataset.source.path=~/photos"], cwd=ROOT, env=stage_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("compose failed: the override dataset.source.path=~/photos does not parse "
                                  "(no token can start at '~'); quote"), done.stderr
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("override, says", [
    ("dataset.source.path=/a=b", "mismatched input '='"),
    ("dataset.nope=1", "Could not override 'dataset.nope'. To append to your config use +dataset.nope=1"),
    ("dataset.source.pth=/photos", "compose failed: dataset.source.pth is not a key of the configuration: did "
                                   "you mean dataset.source.path?"),
    ("datset.source.path=/x", "compose failed: datset.source.path is not a key of the configuration: did you "
                              "mean dataset.source.path?"),
    ("dataset=nope", "Could not find 'dataset/nope'; Available options in 'dataset': flowers"),
    ("model.res=${nope}", "Interpolation key 'nope' not found"),
])
def test_compose_names_each_kind_of_bad_override(tmp_path, monkeypatch, capsys, override, says):
    monkeypatch.setattr(sys, "argv", ["compose", "--output", str(tmp_path / "p.yaml"), override])
    with pytest.raises(SystemExit) as exit_:
        compose.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and says in err, err


def test_compose_takes_a_quoted_path_with_spaces_equals_and_tilde(tmp_path):
    params = yaml.safe_load(compose.compose(['dataset.source.path="~/my photos/a=b"']))
    assert params["dataset"]["source"]["path"] == "~/my photos/a=b"


def test_tiny_images_are_left_out_of_the_near_duplicate_search(tmp_path):
    from PIL import Image

    src = image_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    for c, cls in enumerate(("cat", "dog")):
        for i in range(4):  # 1x1 images of different colours: one pixel's hash matches every other's
            Image.new("RGB", (1, 1), (60 * i, 100 * c, 7 * i)).save(src / cls / f"dot{i}.png")
    config, _ = ingest_folder(src, tmp_path / "raw", checks=LOOSE)
    summary = run_validate(config, tmp_path / "raw", tmp_path / "out")
    near = summary["near_duplicates"]
    assert near["pairs"] == 0
    assert sorted(near["too_small"]) == sorted(f"{c}/dot{i}.png" for c in ("cat", "dog") for i in range(4))
