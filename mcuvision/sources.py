"""Bring a dataset source into one shape: class sub-folders, plus a record of where it came from.

Layout written under the destination folder:
  <class>/<image>                  sources without a split of their own
  train/<class>/..., test/<class>/...   sources that come with one (food101, folder + test_path)
  SOURCE.json                      kind, location, archive checksum, classes, counts, splits
  LICENSE.txt etc.                 license and readme files found beside the class folders
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .config.dataset import DatasetConfig, SourceConfig
from .synthetic import make_dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# Files that file managers scatter in folders; never data, never worth a warning.
JUNK_NAMES = {"thumbs.db", "desktop.ini"}
DOC_PREFIXES = ("license", "licence", "readme", "copying", "attribution")
RECORD = "SOURCE.json"


class SourceError(RuntimeError):
    """The source cannot be turned into class folders (missing, empty class, bad layout)."""


def is_junk(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of `root` that are classes, sorted by name; an empty class is an error."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder of class sub-folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_junk(p))
    if not folders:
        raise SourceError(f"{root} holds no class sub-folders (expected <root>/<class>/<image>)")
    for folder in folders:
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.rglob("*") if f.is_file()):
            raise SourceError(f"class folder {folder} holds no images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))}); remove it or add images")
    return folders


def copy_classes(root: Path, dest: Path, transfer=shutil.copyfile) -> dict[str, int]:
    """Copy (or `transfer`) every class folder of `root`, nested files flattened into the class, to `dest`."""
    counts = {}
    for folder in class_folders(root):
        target = dest / folder.name
        target.mkdir(parents=True, exist_ok=True)
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not is_junk(f))
        for f in files:
            name = "__".join(f.relative_to(folder).parts)
            transfer(f, target / name)
        counts[folder.name] = len(files)
    return counts


def copy_docs(root: Path, dest: Path) -> list[str]:
    """License and readme files must travel with the images they cover."""
    docs = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().startswith(DOC_PREFIXES))
    for doc in docs:
        shutil.copyfile(doc, dest / doc.name)
    return [d.name for d in docs]


def find_class_root(extracted: Path, hint: str | None) -> Path:
    """The folder of an extracted archive that holds the class folders."""
    if hint:
        root = extracted / hint
        if not root.is_dir():
            top = ", ".join(sorted(p.name for p in extracted.iterdir())) or "nothing"
            raise SourceError(f"archive has no folder {hint!r} (dataset.source.archive_root); top level: {top}")
        return root
    root = extracted
    # Archives usually wrap everything in one folder: descend while that is all there is.
    while True:
        entries = [p for p in root.iterdir() if not is_junk(p)]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and len(entries) == 1:
            root = dirs[0]
        else:
            return root


def food101_split(root: Path, dest: Path, transfer=shutil.copyfile) -> dict[str, dict[str, int]]:
    """Food-101's official split: meta/{train,test}.txt list `class/id` for images/<class>/<id>.jpg."""
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "test"):
        listing = root / "meta" / f"{split}.txt"
        if not listing.is_file():
            raise SourceError(f"food101 archive lacks {listing.relative_to(root.parent)}")
        split_counts: dict[str, int] = {}
        for line in listing.read_text(encoding="utf-8").split():
            cls, _, image_id = line.partition("/")
            src = root / "images" / cls / f"{image_id}.jpg"
            if not src.is_file():
                raise SourceError(f"meta/{split}.txt lists {line}, but {src} is missing")
            target = dest / split / cls
            target.mkdir(parents=True, exist_ok=True)
            transfer(src, target / src.name)
            split_counts[cls] = split_counts.get(cls, 0) + 1
        counts[split] = dict(sorted(split_counts.items()))
    return counts


def from_folders(train_root: Path, test_root: Path | None, dest: Path, transfer=shutil.copyfile) -> dict:
    """A local folder (optionally with a separate test folder) into the common layout."""
    if test_root is None:
        counts = copy_classes(train_root, dest, transfer)
        return {"classes": sorted(counts), "counts": counts, "splits": None,
                "license_files": copy_docs(train_root, dest)}
    counts = {"train": copy_classes(train_root, dest / "train", transfer),
              "test": copy_classes(test_root, dest / "test", transfer)}
    unknown = sorted(set(counts["test"]) - set(counts["train"]))
    if unknown:
        raise SourceError(f"test folder {test_root} has classes absent from {train_root}: {', '.join(unknown)}")
    return {"classes": sorted(counts["train"]), "counts": counts, "splits": ["train", "test"],
            "license_files": copy_docs(train_root, dest)}


def from_extracted(extracted: Path, source: SourceConfig, dest: Path) -> dict:
    # The extraction is a scratch folder of ours: moving files saves a second copy of the dataset.
    root = find_class_root(extracted, source.archive_root)
    if source.layout == "food101":
        counts = food101_split(root, dest, shutil.move)
        return {"classes": sorted(counts["train"]), "counts": counts, "splits": ["train", "test"],
                "license_files": copy_docs(root, dest)}
    return from_folders(root, None, dest, shutil.move)


def from_synthetic(config: DatasetConfig, dest: Path) -> dict:
    src = config.source
    counts = make_dataset(dest, config.num_classes, src.images_per_class, src.image_size, src.seed)
    return {"classes": sorted(counts), "counts": counts, "splits": None, "license_files": []}
