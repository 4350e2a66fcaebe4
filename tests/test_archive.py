"""safe_extract(): round trips, refused members, corrupt archives; dest is all or nothing."""
from __future__ import annotations

import io
import random
import stat
import tarfile
import zipfile

import pytest

from mcuvision.data.archive import CorruptArchiveError, UnsafeArchiveError, safe_extract

FILES = {"a.txt": b"alpha", "sub/b.txt": b"beta"}


def _tar(path, mode, members):
    """Write a tar of (TarInfo, bytes | None) pairs; TarInfo keeps names that tarfile.add would clean."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data):
    return tarfile.TarInfo(name), data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def out(tmp_path):
    """Parent of dest: after a failure it must hold no dest and no leftover temporary folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    "suffix, mode",
    [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")],
)
def test_tar_round_trip(tmp_path, out, suffix, mode):
    archive = _tar(tmp_path / f"data{suffix}", mode, [_file(n, d) for n, d in FILES.items()])
    safe_extract(archive, out / "dest")
    assert _tree(out / "dest") == FILES


def test_zip_round_trip(tmp_path, out):
    archive = _zip(tmp_path / "data.zip", FILES.items())
    safe_extract(archive, out / "dest")
    assert _tree(out / "dest") == FILES


def test_format_is_told_from_content(tmp_path, out):
    # Mendeley serves its zip as `file_downloaded`.
    archive = _zip(tmp_path / "file_downloaded", FILES.items())
    safe_extract(archive, out / "dest")
    assert _tree(out / "dest") == FILES


def test_dotdot_inside_dest_is_allowed(tmp_path, out):
    members = [_file("sub/x.txt", b"x"), _file("sub/../ok.txt", b"ok"), _link("sub/l", "../ok.txt")]
    safe_extract(_tar(tmp_path / "data.tar", "w", members), out / "dest")
    assert (out / "dest" / "ok.txt").read_bytes() == b"ok"
    assert (out / "dest" / "sub" / "l").read_bytes() == b"ok"


@pytest.mark.parametrize(
    "member, name",
    [
        (_file("../evil.txt", b"x"), "../evil.txt"),
        (_file("/abs.txt", b"x"), "/abs.txt"),
        (_link("passwd", "/etc/passwd"), "passwd"),
        (_link("a", "../../x"), "a"),
        (_link("sub/a", "../../x"), "sub/a"),
        (_link("hard", "../x", tarfile.LNKTYPE), "hard"),
        (_special("fifo", tarfile.FIFOTYPE), "fifo"),
        (_special("null", tarfile.CHRTYPE), "null"),
    ],
)
def test_unsafe_tar_member_is_refused(tmp_path, out, member, name):
    # The unsafe member comes last: nothing before it may have been written either.
    archive = _tar(tmp_path / "bad.tar.gz", "w:gz", [_file("fine.txt", b"ok"), member])
    with pytest.raises(UnsafeArchiveError, match=name.replace(".", r"\.")):
        safe_extract(archive, out / "dest")
    assert list(out.iterdir()) == []


def _zip_member(name, mode=stat.S_IFREG | 0o644):
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    "info, data",
    [
        (_zip_member("../evil.txt"), b"x"),
        (_zip_member("/abs.txt"), b"x"),
        (_zip_member("inside", stat.S_IFLNK | 0o777), b"../outside.txt"),  # a link out (links within are kept)
        (_zip_member("fifo", stat.S_IFIFO | 0o644), b""),
    ],
)
def test_unsafe_zip_member_is_refused(tmp_path, out, info, data):
    archive = _zip(tmp_path / "bad.zip", [("fine.txt", b"ok"), (info, data)])
    with pytest.raises(UnsafeArchiveError, match=info.filename.replace(".", r"\.")):
        safe_extract(archive, out / "dest")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name, writer", [("data.tar.gz", "tar"), ("data.zip", "zip")])
def test_truncated_archive_is_corrupt(tmp_path, out, name, writer):
    # Random bytes do not compress, so cutting the file in half cuts into member data.
    members = [("big.bin", random.Random(0).randbytes(100_000)), ("after.txt", b"x")]
    path = tmp_path / name
    if writer == "tar":
        _tar(path, "w:gz", [_file(n, d) for n, d in members])
    else:
        _zip(path, members)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArchiveError, match=name):
        safe_extract(path, out / "dest")
    assert list(out.iterdir()) == []


def test_failed_extraction_keeps_previous_dest(tmp_path, out):
    dest = out / "dest"
    safe_extract(_zip(tmp_path / "good.zip", FILES.items()), dest)
    bad = _tar(tmp_path / "bad.tar", "w", [_file("../evil.txt", b"x")])
    with pytest.raises(UnsafeArchiveError):
        safe_extract(bad, dest)
    assert _tree(dest) == FILES
