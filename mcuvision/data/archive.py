"""Safe extraction of downloaded tar and zip archives.

Every member is inspected before anything is written, so an archive that tries to escape its
destination (path traversal, absolute paths, links pointing outside) is refused as a whole rather
than half-extracted. `tarfile`'s "data" filter is kept as a second line of defense, and the
extraction goes through `atomic_dir`, so a failure never leaves a partial tree at `dest`.
"""
from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from mcuvision.atomic import atomic_dir
from mcuvision.errors import PipelineError

# The format is told from the content, not the name: some hosts serve archives under
# extension-less names (Mendeley's `file_downloaded`). A truncated zip still starts like this.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

# What truncated or corrupted compressed data raises; tarfile.FilterError is handled separately.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, zipfile.BadZipFile)


class UnsafeArchiveError(PipelineError, ValueError):
    """An archive member would be written outside the destination, or is not a plain file/folder."""


class CorruptArchiveError(PipelineError, ValueError):
    """The archive is truncated or damaged."""


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .tar(.gz/.bz2/.xz)/.tgz or .zip `archive` into `dest`, all or nothing."""
    archive, dest = Path(archive), Path(dest)
    with open(archive, "rb") as f:
        is_zip = f.read(4) in _ZIP_MAGIC
    try:
        with atomic_dir(dest) as tmp:
            if is_zip:
                _extract_zip(archive, tmp)
            else:
                _extract_tar(archive, tmp)
    except tarfile.FilterError as exc:
        # Only reached if the checks below missed something the data filter caught.
        raise UnsafeArchiveError(f"{archive}: unsafe member refused by tarfile: {exc}") from exc
    except _CORRUPT as exc:
        raise CorruptArchiveError(f"{archive} is truncated or corrupt: {type(exc).__name__}: {exc}") from exc


def _escapes(path: str) -> bool:
    """True if `path`, taken relative to the destination, is absolute or climbs out of it."""
    if posixpath.isabs(path):
        return True
    normal = posixpath.normpath(path)
    return normal == ".." or normal.startswith("../")


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        # getmembers() reads the whole archive, so a truncated one also fails before any write.
        for member in tf.getmembers():
            _check_tar_member(member)
        tf.extractall(dest, filter="data")


def _check_tar_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if _escapes(name):
        raise UnsafeArchiveError(f"member {name!r} would be written outside the destination")
    if member.issym():
        # A symlink target is relative to the folder holding the link.
        target = posixpath.join(posixpath.dirname(name), member.linkname)
        if _escapes(target):
            raise UnsafeArchiveError(f"symlink {name!r} -> {member.linkname!r} points outside the destination")
    elif member.islnk():
        # A hard link target is relative to the archive root.
        if _escapes(member.linkname):
            raise UnsafeArchiveError(f"hard link {name!r} -> {member.linkname!r} points outside the destination")
    elif member.isdev():  # character/block devices and fifos
        raise UnsafeArchiveError(f"member {name!r} is a device or fifo")


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        links = {info.filename: _check_zip_member(info, zf) for info in zf.infolist()}
        # CRC and truncated-stream errors surface here, inside atomic_dir, so dest stays untouched.
        zf.extractall(dest, members=[name for name, target in links.items() if target is None])
        made = []
        for name, target in links.items():
            if target is not None:  # zipfile would write a link as a file holding its target's path
                link = dest / name.rstrip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(link):
                    raise UnsafeArchiveError(f"member {name!r} is a symlink and also a file or folder")
                link.symlink_to(target)
                made.append((name, link))
    # A chain of links can climb out where each one alone stays in: judge where they lead, once all exist.
    root = os.path.realpath(dest)
    for name, link in made:
        if os.path.commonpath([root, os.path.realpath(link)]) != root:
            raise UnsafeArchiveError(f"symlink {name!r} leads outside the destination through other links")


def _check_zip_member(info: zipfile.ZipInfo, zf: zipfile.ZipFile) -> str | None:
    """The target of a symlink member (checked to stay inside the archive), None for a file or folder."""
    name = info.filename
    if _escapes(name):
        raise UnsafeArchiveError(f"member {name!r} would be written outside the destination")
    # Unix file types are stored in the high 16 bits (zip -y, macOS's Archive Utility keep links).
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        target = zf.read(info).decode("utf-8", "surrogateescape")
        if _escapes(posixpath.join(posixpath.dirname(name.rstrip("/")), target)):
            raise UnsafeArchiveError(f"symlink {name!r} -> {target!r} points outside the destination")
        return target
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UnsafeArchiveError(f"member {name!r} is a device, fifo or socket")
    return None
