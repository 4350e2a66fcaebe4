"""Bring a dataset source into one shape: class sub-folders, plus a record of where it came from.

Layout written under the destination folder:
  <class>/<image>                  sources without a split of their own
  train/<class>/..., test/<class>/...   sources that come with one (food101, folder + test_path)
  SOURCE.json                      kind, location, archive checksum, classes, counts, splits,
                                   files skipped (OS and tool litter) by reason
  LICENSE.txt etc.                 license and readme files found beside the class folders

Images in sub-folders of a class keep their path relative to the class folder
(`cat/a/b.jpg` stays `cat/a/b.jpg`): flattening names can map two images to one file.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mcuvision.config.dataset import DatasetConfig, SourceConfig
from mcuvision.data.synthetic import make_dataset
from mcuvision.errors import PipelineError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# What operating systems, NAS boxes and tools write beside data: never classes, never images,
# at any depth (a Mac's __MACOSX would otherwise become a class, a NAS's thumbnails images).
LITTER_FOLDERS = {"__macosx": "__MACOSX folder (macOS archive metadata)",
                  "@eadir": "@eaDir folder (Synology NAS thumbnails)",
                  ".thumbnails": ".thumbnails folder (thumbnail cache)",
                  ".ipynb_checkpoints": ".ipynb_checkpoints folder (Jupyter)"}
LITTER_FILES = {".ds_store": ".DS_Store file (macOS folder settings)",
                "thumbs.db": "Thumbs.db file (Windows thumbnails)",
                "desktop.ini": "desktop.ini file (Windows folder settings)"}
HIDDEN_FOLDER, HIDDEN_FILE = "hidden folder", "hidden file"
APPLEDOUBLE = "._* AppleDouble file (macOS resource fork)"
OUTSIDE_CLASSES = "file beside the class folders (in no class)"
DOC_PREFIXES = ("license", "licence", "readme", "copying", "attribution")
RECORD = "SOURCE.json"
MAX_EXAMPLES = 20  # skipped paths listed in SOURCE.json; the counts cover all of them


class SourceError(PipelineError, RuntimeError):
    """The source cannot be turned into class folders (missing, empty class, bad layout)."""


def litter_reason(name: str, is_dir: bool) -> str | None:
    """Why a folder or file called `name` is OS/tool litter, or None when it may be data."""
    lower = name.lower()
    if is_dir:
        return LITTER_FOLDERS.get(lower) or (HIDDEN_FOLDER if name.startswith(".") else None)
    if lower in LITTER_FILES:
        return LITTER_FILES[lower]
    if name.startswith("._"):
        return APPLEDOUBLE
    return HIDDEN_FILE if name.startswith(".") else None


def is_junk(path: Path) -> bool:
    """True when `path`'s name is litter as a folder or as a file (a name-only test: no disk access)."""
    return bool(litter_reason(path.name, True) or litter_reason(path.name, False))


@dataclass
class Skipped:
    """Files left out of a dataset, counted by reason; the first MAX_EXAMPLES paths kept as examples."""
    by_reason: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, paths: list[str]) -> None:
        self.by_reason[reason] += len(paths)
        self.examples += paths[:max(0, MAX_EXAMPLES - len(self.examples))]

    def add_tree(self, reason: str, path: Path, base: Path) -> None:
        """Count `path` (a file, or every file under a folder) as skipped for `reason`."""
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        self.add(reason, [_relative(p, base) for p in files])

    def as_dict(self) -> dict:
        """{"files": total, "by_reason": {reason: count}, "examples": [path, ...]} for SOURCE.json."""
        return {"files": sum(self.by_reason.values()), "by_reason": dict(sorted(self.by_reason.items())),
                "examples": self.examples}


def skipped_line(stage: str, skipped: dict | None) -> str:
    """One line for a stage's output: how many files were skipped and why (Skipped.as_dict())."""
    if not skipped or not skipped.get("files"):
        return f"{stage}: no OS or tool litter skipped"
    reasons = "; ".join(f"{reason}: {n}" for reason, n in skipped["by_reason"].items())
    return f"{stage}: skipped {skipped['files']} files: {reasons}"


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def walk_files(folder: Path, skipped: Skipped, base: Path | None = None) -> list[Path]:
    """Every file under `folder`, at any depth, sorted; litter folders are not entered and litter
    files not returned, both counted in `skipped` (paths relative to `base`, default `folder`)."""
    base = base or folder
    found = []
    for here, dirs, files in os.walk(folder):
        here = Path(here)
        kept = []
        for name in sorted(dirs):
            reason = litter_reason(name, True)
            if reason:
                skipped.add_tree(reason, here / name, base)
            else:
                kept.append(name)
        dirs[:] = kept  # os.walk descends only into what is left here
        for name in files:
            reason = litter_reason(name, False)
            if reason:
                skipped.add(reason, [_relative(here / name, base)])
            else:
                found.append(here / name)
    return sorted(found)


def class_files(root: Path, skipped: Skipped) -> dict[str, list[Path]]:
    """{class: its files at any depth, sorted}, classes being the non-litter sub-folders of `root`.

    Raises SourceError when `root` is no folder, holds no class folder, or a class folder holds
    no image once litter is left out (the class is named)."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder of class sub-folders")
    classes: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        reason = litter_reason(entry.name, entry.is_dir())
        if reason:
            skipped.add_tree(reason, entry, root)
        elif entry.is_dir():
            classes[entry.name] = walk_files(entry, skipped, root)
        elif not entry.name.lower().startswith(DOC_PREFIXES):
            skipped.add(OUTSIDE_CLASSES, [entry.name])
    if not classes:
        raise SourceError(f"{root} holds no class sub-folders (expected <root>/<class>/<image>)")
    for name, files in classes.items():
        if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            raise SourceError(f"class folder {root / name} holds no images "
                              f"({', '.join(sorted(IMAGE_SUFFIXES))}) once OS litter is left out; "
                              "remove it or add images")
    return classes


def copy_classes(root: Path, dest: Path, skipped: Skipped, transfer=shutil.copyfile) -> dict[str, int]:
    """Copy (or `transfer`) every file of every class folder of `root` to `dest/<class>/`, keeping
    its path relative to the class folder. Returns {class: files written}; raises SourceError if a
    class folder under `dest` then holds another number of files than was copied into it."""
    counts = {}
    for name, files in class_files(root, skipped).items():
        folder, target = root / name, dest / name
        for f in files:
            out = target / f.relative_to(folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            transfer(f, out)
        written = sum(1 for p in target.rglob("*") if p.is_file())
        if written != len(files):  # e.g. names that differ in case only, on a case-insensitive disk
            raise SourceError(f"class {name}: {len(files)} files copied but {written} in {target}")
        counts[name] = written
    return counts


def copy_docs(root: Path, dest: Path) -> list[str]:
    """License and readme files must travel with the images they cover."""
    docs = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().startswith(DOC_PREFIXES))
    for doc in docs:
        shutil.copyfile(doc, dest / doc.name)
    return [d.name for d in docs]


def find_class_root(extracted: Path, hint: str | None, skipped: Skipped | None = None) -> Path:
    """The folder of an extracted archive that holds the class folders; litter beside the wrapping
    folders (a Mac's `__MACOSX/`, `.DS_Store`) is counted in `skipped` and ignored, so it never
    stops the descent nor becomes a class."""
    skipped = skipped if skipped is not None else Skipped()
    if hint:
        root = extracted / hint
        if not root.is_dir():
            top = ", ".join(sorted(p.name for p in extracted.iterdir())) or "nothing"
            raise SourceError(f"archive has no folder {hint!r} (dataset.source.archive_root); top level: {top}")
        return root
    root = extracted
    # Archives usually wrap everything in one folder: descend while that is all there is.
    while True:
        entries = sorted(root.iterdir())
        litter = [(p, litter_reason(p.name, p.is_dir())) for p in entries]
        data = [p for p, reason in litter if reason is None]
        dirs = [p for p in data if p.is_dir()]
        if not (len(dirs) == 1 and len(data) == 1):
            return root  # the class folders' own level: its litter is counted by class_files
        for path, reason in litter:
            if reason:
                skipped.add_tree(reason, path, extracted)
        root = dirs[0]


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


def from_folders(train_root: Path, test_root: Path | None, dest: Path, transfer=shutil.copyfile,
                 skipped: Skipped | None = None) -> dict:
    """A local folder (optionally with a separate test folder) into the common layout.
    Returns the source record's classes, counts (files written), splits, license files, skipped."""
    skipped = skipped if skipped is not None else Skipped()
    if test_root is None:
        counts = copy_classes(train_root, dest, skipped, transfer)
        return {"classes": sorted(counts), "counts": counts, "splits": None,
                "license_files": copy_docs(train_root, dest), "skipped": skipped.as_dict()}
    counts = {"train": copy_classes(train_root, dest / "train", skipped, transfer),
              "test": copy_classes(test_root, dest / "test", skipped, transfer)}
    unknown = sorted(set(counts["test"]) - set(counts["train"]))
    if unknown:
        raise SourceError(f"test folder {test_root} has classes absent from {train_root}: {', '.join(unknown)}")
    return {"classes": sorted(counts["train"]), "counts": counts, "splits": ["train", "test"],
            "license_files": copy_docs(train_root, dest), "skipped": skipped.as_dict()}


def from_extracted(extracted: Path, source: SourceConfig, dest: Path) -> dict:
    """An extracted archive into the common layout (see from_folders for the record)."""
    skipped = Skipped()
    # The extraction is a scratch folder of ours: moving files saves a second copy of the dataset.
    root = find_class_root(extracted, source.archive_root, skipped)
    if source.layout == "food101":
        counts = food101_split(root, dest, shutil.move)
        return {"classes": sorted(counts["train"]), "counts": counts, "splits": ["train", "test"],
                "license_files": copy_docs(root, dest), "skipped": skipped.as_dict()}
    return from_folders(root, None, dest, shutil.move, skipped)


def from_synthetic(config: DatasetConfig, dest: Path) -> dict:
    src = config.source
    counts = make_dataset(dest, config.num_classes, src.images_per_class, src.image_size, src.seed)
    return {"classes": sorted(counts), "counts": counts, "splits": None, "license_files": [],
            "skipped": Skipped().as_dict()}
