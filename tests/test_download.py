"""fetch() against a real HTTP server on 127.0.0.1: cache, checksum, truncation, resume."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from http_server import Request, serve_directory
from mcuvision.data import download
from mcuvision.data.download import ChecksumError, DownloadError, cache_path, fetch

# Deterministic, so that parallel (xdist) workers collect identical test ids.
PAYLOAD = random.Random(0).randbytes(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def root(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "data.bin").write_bytes(PAYLOAD)
    return served


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(download, "_BACKOFF_S", 0.0)


def test_download_with_correct_sha(root, cache):
    with serve_directory(root) as server:
        path, sha = fetch(f"{server.url}/data.bin", SHA, cache, progress=False)
    assert sha == SHA
    assert path.read_bytes() == PAYLOAD
    assert list(cache.iterdir()) == [path]  # no .part left behind


@pytest.mark.parametrize("expected", [SHA, None], ids=["sha", "no-sha"])
def test_second_fetch_is_a_cache_hit(root, cache, expected):
    with serve_directory(root) as server:
        first = fetch(f"{server.url}/data.bin", expected, cache, progress=False)
        second = fetch(f"{server.url}/data.bin", expected, cache, progress=False)
    assert first == second == (first[0], SHA)
    assert len(server.requests) == 1


def test_no_expected_sha_returns_actual(root, cache):
    with serve_directory(root) as server:
        _, sha = fetch(f"{server.url}/data.bin", None, cache, progress=False)
    assert sha == SHA


def test_wrong_sha_raises_and_leaves_nothing(root, cache):
    wrong = "0" * 64
    with serve_directory(root) as server:
        url = f"{server.url}/data.bin"
        with pytest.raises(ChecksumError) as info:
            fetch(url, wrong, cache, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and SHA in message
    assert list(cache.iterdir()) == []


def test_truncated_every_time_raises(root, cache):
    with serve_directory(root, truncate={"data.bin": 1000}) as server:
        url = f"{server.url}/data.bin"
        with pytest.raises(DownloadError) as info:
            fetch(url, SHA, cache, retries=2, progress=False)
    assert not isinstance(info.value, ChecksumError)
    # Each retry resumed from what it had, so three attempts received 3 x 1000 bytes.
    message = str(info.value)
    assert url in message and "received 3000 of 200000 bytes" in message
    assert [r.range for r in server.requests] == [None, "bytes=1000-", "bytes=2000-"]


def test_truncated_once_resumes_with_range(root, cache):
    with serve_directory(root, truncate={"data.bin": 1000}, truncate_times=1) as server:
        path, sha = fetch(f"{server.url}/data.bin", SHA, cache, progress=False)
    assert sha == SHA and path.read_bytes() == PAYLOAD
    assert server.requests == [Request("/data.bin", None), Request("/data.bin", "bytes=1000-")]


def test_part_is_resumed_by_a_later_call(root, cache):
    with serve_directory(root, truncate={"data.bin": 5000}, truncate_times=1) as server:
        url = f"{server.url}/data.bin"
        with pytest.raises(DownloadError):
            fetch(url, SHA, cache, retries=0, progress=False)
        _, sha = fetch(url, SHA, cache, progress=False)
    assert sha == SHA
    assert server.requests[-1].range == "bytes=5000-"


def test_server_ignoring_range_restarts_from_zero(root, cache):
    # A server without Range support answers 200 with the whole file: appending it would corrupt.
    with serve_directory(root, ranges=False) as server:
        url = f"{server.url}/data.bin"
        part = Path(f"{cache_path(url, cache)}.part")
        cache.mkdir()
        part.write_bytes(b"junk" * 1000)
        path, sha = fetch(url, SHA, cache, progress=False)
    assert server.requests == [Request("/data.bin", "bytes=4000-")]
    assert sha == SHA and path.read_bytes() == PAYLOAD


def test_http_error_is_not_retried(root, cache):
    with serve_directory(root) as server:
        with pytest.raises(DownloadError, match="404"):
            fetch(f"{server.url}/missing.bin", None, cache, retries=3, progress=False)
    assert len(server.requests) == 1


def test_progress_bar_goes_to_stderr(root, cache, capsys):
    with serve_directory(root) as server:
        fetch(f"{server.url}/data.bin", SHA, cache, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "data.bin" in captured.err
