"""Bring a dataset source into one shape: class sub-folders, plus a record of where it came from.

Layout written under the destination folder:
  <class>/<image>                  sources without a split of their own
  train/<class>/..., test/<class>/...   sources that come with one (food101, folder + test_path)
  SOURCE.json                      kind, location, archive checksum, classes, counts, splits,
                                   entries skipped by reason (walk_files), files renamed (safe_name)
  LICENSE.txt etc.                 license and readme files found beside the class folders

Images in sub-folders of a class keep their path relative to the class folder
(`cat/a/b.jpg` stays `cat/a/b.jpg`): flattening names can map two images to one file.

What a class folder holds besides images is never fatal and never silent (walk_files): links are
followed, a folder at most once (a link back up is a loop); a link that cannot be followed, an
entry the user may not read, a FIFO, socket or device, and a file that is no image (by suffix
and content: `notes.txt`, `labels.csv`) are skipped and counted by reason, like OS litter.
A file name that is not valid UTF-8 (`caf\xe9.jpg` from an old archive) is written with each
such byte as %XX (`caf%E9.jpg`, safe_name): the manifest, Great Expectations and every stage then
read UTF-8 only; SOURCE.json lists the renamed files.
"""
from __future__ import annotations

import errno
import mimetypes
import os
import re
import shutil
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mcuvision.config.dataset import DatasetConfig, SourceConfig
from mcuvision.data.synthetic import make_dataset
from mcuvision.errors import PipelineError

# What TensorFlow's decoder reads (tf.io.decode_image: JPEG, PNG, GIF, BMP, WebP), by suffix.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
# Files kept as images: these and every image/* suffix of Python's built-in table (a .tif or .heic
# is an image the user meant: validate stops naming it, with TensorFlow's reason). The table
# alone: system mime.types files differ between machines.
_TYPES = mimetypes.MimeTypes()
# A file with another suffix is still an image when Pillow reads one of these from its content.
SNIFFED_FORMATS = ["JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"]
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
BROKEN_LINK = "broken link (its target does not exist)"
LINK_LOOP = "link loop (a link to itself or links in a circle)"
FOLDER_LOOP = "link to a folder above it (a loop)"
FOLDER_AGAIN = "link to a folder already read (its images are kept once)"
UNREADABLE = "unreadable (permission denied)"
SPECIAL_FILES = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
                 stat.S_IFBLK: "block device"}
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
        # Links inside are not followed here: litter is counted, never read.
        files = sorted(p for p in path.rglob("*") if not p.is_dir()) if path.is_dir() else [path]
        self.add(reason, [_relative(p, base) for p in files])

    def merge(self, other: "Skipped") -> None:
        """Add `other`'s counts and examples to these."""
        self.by_reason.update(other.by_reason)
        self.examples += other.examples[:max(0, MAX_EXAMPLES - len(self.examples))]

    def as_dict(self) -> dict:
        """{"files": total, "by_reason": {reason: count}, "examples": [path, ...]} for SOURCE.json."""
        return {"files": sum(self.by_reason.values()), "by_reason": dict(sorted(self.by_reason.items())),
                "examples": self.examples}


def skipped_line(stage: str, skipped: dict | None) -> str:
    """One line for a stage's output: how many files were skipped and why (Skipped.as_dict())."""
    if not skipped or not skipped.get("files"):
        return f"{stage}: nothing skipped (no OS litter, unusable link, unreadable, special or non-image file)"
    reasons = "; ".join(f"{reason}: {n}" for reason, n in skipped["by_reason"].items())
    return f"{stage}: skipped {skipped['files']} {'entry' if skipped['files'] == 1 else 'entries'}: {reasons}"


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # os.fsdecode's stand-ins for bytes that are not UTF-8


def safe_name(name: str) -> str:
    """`name` (a file name or relative path, as os.fsdecode gives it) with each byte that is not
    valid UTF-8 written as %XX (b'caf\\xe9.jpg' -> 'caf%E9.jpg'); any other name is returned as it is."""
    return _UNDECODABLE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", name)


def _relative(path: Path, base: Path) -> str:
    try:
        return safe_name(path.relative_to(base).as_posix())
    except ValueError:
        return safe_name(path.as_posix())


def _reason_of(error: OSError, path: Path) -> str:
    """Why `path` cannot be used, from the OSError that stat, open or listdir raised on it."""
    if error.errno == errno.ELOOP:
        return LINK_LOOP
    if error.errno == errno.ENOENT and os.path.islink(path):
        return BROKEN_LINK
    if error.errno in (errno.EACCES, errno.EPERM):
        return UNREADABLE
    return f"unreadable ({error.strerror or type(error).__name__})"


def entry_kind(path: Path) -> tuple[str | None, os.stat_result | str]:
    """("folder", stat) or ("file", stat) for what `path` is once links are followed, or (None,
    reason) for an entry no dataset can use: a broken or looping link, one the user may not
    reach, a FIFO, socket or device. Reads no content (opening a FIFO would block)."""
    try:
        info = os.stat(path)
    except OSError as error:
        return None, _reason_of(error, path)
    if stat.S_ISDIR(info.st_mode):
        return "folder", info
    if stat.S_ISREG(info.st_mode):
        return "file", info
    return None, SPECIAL_FILES.get(stat.S_IFMT(info.st_mode), "special file")


def _sniffs_as_image(handle) -> bool:
    from PIL import Image  # here: nearly every file is told by its suffix

    try:
        with Image.open(handle, formats=SNIFFED_FORMATS):
            return True
    except Exception:  # Pillow raises many types for what is not an image of these formats
        return False


def file_problem(path: Path) -> str | None:
    """Why the regular file `path` is left out of a class, or None to keep it: unreadable, or
    no image (neither an image suffix, IMAGE_SUFFIXES or an image/* type, nor image content)."""
    suffix = path.suffix.lower()
    image_suffix = suffix in IMAGE_SUFFIXES or (_TYPES.guess_type("x" + suffix)[0] or "").startswith("image/")
    try:
        with open(path, "rb") as handle:  # the one test of readability that holds for root too
            if image_suffix or _sniffs_as_image(handle):
                return None
    except OSError as error:
        return _reason_of(error, path)
    return f"non-image file ({safe_name(suffix) or 'no suffix'})"


def walk_files(folder: Path, skipped: Skipped, base: Path | None = None) -> list[Path]:
    """Every image file under `folder`, at any depth, links followed, sorted. Left out and
    counted in `skipped` by reason (paths relative to `base`, default `folder`): litter folders
    and files, links that cannot be followed, a folder met a second time (a link to a folder
    above it, or to one already read: each folder is read once), unreadable entries, FIFOs,
    sockets, devices, and files that are no image (file_problem)."""
    base = base or folder
    found: list[Path] = []
    key = lambda info: (info.st_dev, info.st_ino)  # noqa: E731
    read = {key(os.stat(base)), key(os.stat(folder))}  # a link back to the dataset's root is a loop too

    def visit(here: Path, above: frozenset) -> None:
        try:
            names = sorted(os.listdir(here))
        except OSError as error:
            skipped.add(_reason_of(error, here), [_relative(here, base) + "/"])
            return
        for name in names:
            path = here / name
            kind, info = entry_kind(path)
            litter = litter_reason(name, kind == "folder")
            if litter:
                skipped.add_tree(litter, path, base)
            elif kind is None:
                skipped.add(info, [_relative(path, base)])
            elif kind == "folder" and key(info) in read:
                skipped.add(FOLDER_LOOP if key(info) in above else FOLDER_AGAIN, [_relative(path, base) + "/"])
            elif kind == "folder":
                read.add(key(info))
                visit(path, above | {key(info)})
            else:
                problem = file_problem(path)
                if problem:
                    skipped.add(problem, [_relative(path, base)])
                else:
                    found.append(path)

    visit(folder, frozenset(read))
    return sorted(found)


def class_files(root: Path, skipped: Skipped) -> dict[str, list[Path]]:
    """{class: its image files at any depth, sorted}, classes being the non-litter sub-folders
    of `root` (links followed; what is left out is counted in `skipped`, see walk_files).

    Raises SourceError when `root` is no folder or cannot be read, holds no class folder, or a
    class folder holds no image once what is left out is left out (the class is named)."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder of class sub-folders")
    try:
        entries = sorted(root.iterdir())
    except OSError as error:
        raise SourceError(f"{root} cannot be read: {error.strerror}") from error
    classes: dict[str, list[Path]] = {}
    for entry in entries:
        kind, info = entry_kind(entry)
        reason = litter_reason(entry.name, kind == "folder")
        if reason:
            skipped.add_tree(reason, entry, root)
        elif kind is None:
            skipped.add(info, [_relative(entry, root)])
        elif kind == "folder":
            own = Skipped()
            classes[entry.name] = walk_files(entry, own, root)
            skipped.merge(own)
            if not classes[entry.name]:
                why = "; ".join(f"{why}: {n}" for why, n in sorted(own.by_reason.items()))
                raise SourceError(f"class folder {root / safe_name(entry.name)} holds no images "
                                  f"({'left out: ' + why if why else 'it is empty'}); remove it or add images")
        elif not entry.name.lower().startswith(DOC_PREFIXES):
            skipped.add(OUTSIDE_CLASSES, [_relative(entry, root)])
    if not classes:
        raise SourceError(f"{root} holds no class sub-folders (expected <root>/<class>/<image>)")
    return classes


def _transfer(source: Path, out: Path, transfer, done: dict[str, Path]) -> None:
    """`transfer` `source` to `out`, except that a file reached through a link is copied (a move
    would take the link itself, or take the target from under another path to it), and a file
    already written is copied from where it went (`done`: real path -> written path)."""
    real = os.path.realpath(source)
    if real in done:
        shutil.copyfile(done[real], out)
    elif real != os.path.abspath(source):
        shutil.copyfile(real, out)
    else:
        transfer(source, out)
    done[real] = out


def copy_classes(root: Path, dest: Path, skipped: Skipped, transfer=shutil.copyfile,
                 renamed: list[str] | None = None) -> dict[str, int]:
    """Copy (or `transfer`) every image of every class folder of `root` to `dest/<class>/`, keeping
    its path relative to the class folder; names that are not valid UTF-8 are written by
    safe_name and listed in `renamed`. Returns {class: files written}. Raises SourceError when
    two files would be written to one name, a file cannot be written, or a class folder under
    `dest` then holds another number of files than was copied into it."""
    counts, done = {}, {}
    renamed = renamed if renamed is not None else []
    for name, files in class_files(root, skipped).items():
        folder, target = root / name, dest / safe_name(name)
        for f in files:
            relative = f.relative_to(folder).as_posix()
            out = target / safe_name(relative)
            if safe_name(f"{name}/{relative}") != f"{name}/{relative}":
                renamed.append(_relative(out, dest))
            if os.path.lexists(out):  # e.g. caf%E9.jpg beside b'caf\xe9.jpg'; names differing in case only
                raise SourceError(f"two files of class {safe_name(name)} would both be written to "
                                  f"{_relative(out, dest)}; rename one")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                _transfer(f, out, transfer, done)
            except OSError as error:
                raise SourceError(f"cannot write {_relative(f, root)} to {out}: {error.strerror or error}") from error
        written = sum(1 for p in target.rglob("*") if p.is_file())
        if written != len(files):
            raise SourceError(f"class {safe_name(name)}: {len(files)} files copied but {written} in {target}")
        counts[safe_name(name)] = written
    return counts


def copy_docs(root: Path, dest: Path, skipped: Skipped | None = None) -> list[str]:
    """License and readme files must travel with the images they cover; one that cannot be read
    is counted in `skipped`. Returns the names copied."""
    skipped = skipped if skipped is not None else Skipped()
    copied = []
    for doc in sorted(p for p in root.iterdir() if p.name.lower().startswith(DOC_PREFIXES)):
        kind, info = entry_kind(doc)
        if kind is None:
            skipped.add(info, [_relative(doc, root)])
        elif kind == "file":
            try:
                shutil.copyfile(doc, dest / safe_name(doc.name))
                copied.append(safe_name(doc.name))
            except OSError as error:
                skipped.add(_reason_of(error, doc), [_relative(doc, root)])
    return copied


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
    Returns the source record's classes, counts (files written), splits, license files, skipped,
    renamed (files written under safe_name, as written)."""
    skipped = skipped if skipped is not None else Skipped()
    renamed: list[str] = []
    if test_root is None:
        counts = copy_classes(train_root, dest, skipped, transfer, renamed)
        return {"classes": sorted(counts), "counts": counts, "splits": None,
                "license_files": copy_docs(train_root, dest, skipped), "skipped": skipped.as_dict(),
                "renamed": renamed}
    counts = {"train": copy_classes(train_root, dest / "train", skipped, transfer, renamed),
              "test": copy_classes(test_root, dest / "test", skipped, transfer, renamed)}
    unknown = sorted(set(counts["test"]) - set(counts["train"]))
    if unknown:
        raise SourceError(f"test folder {test_root} has classes absent from {train_root}: {', '.join(unknown)}")
    return {"classes": sorted(counts["train"]), "counts": counts, "splits": ["train", "test"],
            "license_files": copy_docs(train_root, dest, skipped), "skipped": skipped.as_dict(),
            "renamed": renamed}


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
