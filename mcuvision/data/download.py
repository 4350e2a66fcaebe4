"""Resumable, verified downloads into a cache that lives outside the pipeline outputs.

DVC deletes a stage's outputs before running it again, so raw archives are kept in a separate
cache: a re-run finds them there and never touches the network. A file reaches its final cache
name only by an atomic rename after it was received completely, so the presence of that name is
the record of a completed download; anything partial lives under `<name>.part` and is resumed.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from mcuvision.errors import PipelineError

_CHUNK = 1 << 16
_TIMEOUT_S = 30  # per connect / per read, not for the whole transfer
_BACKOFF_S = 0.5  # first retry delay, doubled on each further retry


class DownloadError(PipelineError, RuntimeError):
    """The file could not be downloaded completely."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


class _Incomplete(Exception):
    """One attempt ended early; worth retrying (resuming from what is on disk)."""

    def __init__(self, received: int, expected: int | None, reason: str) -> None:
        super().__init__(reason)
        self.received, self.expected, self.reason = received, expected, reason


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where `url` is cached: its file name, prefixed by a url hash so that equal names never clash."""
    name = os.path.basename(urlsplit(url).path) or "download"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def fetch(
    url: str,
    sha256: str | None,
    cache_dir: Path,
    *,
    retries: int = 3,
    progress: bool = True,
) -> tuple[Path, str]:
    """Return the cached copy of `url` and its sha256 (hex), downloading it first if needed.

    Raises ChecksumError when `sha256` is given and does not match (nothing is left in the cache),
    DownloadError when the transfer still fails after `retries` retries.
    """
    expected_sha = sha256.lower() if sha256 else None
    final = cache_path(url, cache_dir)
    if final.exists():
        # Re-hashing costs seconds even for gigabytes and keeps the returned hash truthful.
        actual = sha256_file(final)
        if expected_sha is None or actual == expected_sha:
            return final, actual
        # A stale copy, e.g. the upstream file and its configured hash were updated: fetch again.
        final.unlink()

    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
            try:
                _attempt(session, url, part, progress)
                break
            except _Incomplete as exc:
                failure = exc
        else:
            expected = "an unknown number of" if failure.expected is None else str(failure.expected)
            raise DownloadError(
                f"download of {url} failed after {retries + 1} attempts: received {failure.received} "
                f"of {expected} bytes ({failure.reason})"
            )

    actual = sha256_file(part)
    if expected_sha is not None and actual != expected_sha:
        part.unlink()
        raise ChecksumError(f"sha256 mismatch for {url}: expected {expected_sha}, got {actual}")
    os.replace(part, final)
    return final, actual


def _attempt(session: requests.Session, url: str, part: Path, progress: bool) -> None:
    """Download into `part`, resuming from its current size; raise _Incomplete if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: Content-Length must count the bytes written to disk, not a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    expected: int | None = None
    try:
        with session.get(url, headers=headers, stream=True, timeout=_TIMEOUT_S) as resp:
            if resp.status_code == 416:
                # The range starts at or past the end: the .part is complete or from another
                # version of the file. Neither can be trusted, so the next attempt starts over.
                part.unlink()
                raise _Incomplete(0, None, "server rejected the resume range")
            if resp.status_code >= 500:
                raise _Incomplete(offset, None, f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise DownloadError(f"download of {url} failed: HTTP {resp.status_code} {resp.reason}")
            if not (resp.status_code == 206 and _range_start(resp) == offset):
                # The server ignored the Range header and sends the whole file: start over.
                offset = 0
            length = resp.headers.get("Content-Length")
            expected = offset + int(length) if length is not None else None
            # urllib3 2 raises on a short body but drops the bytes it had buffered for the current
            # chunk, which would leave nothing to resume from. Reading to EOF and comparing the
            # byte count below keeps every byte that arrived (and matches urllib3 1's behaviour).
            resp.raw.enforce_content_length = False
            with open(part, "ab" if offset else "wb") as f, tqdm(
                total=expected,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                file=sys.stderr,
                disable=not progress,
            ) as bar:
                for chunk in resp.iter_content(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    # requests turns urllib3's ProtocolError (e.g. a connection reset) into
    # ChunkedEncodingError and a read timeout into ConnectionError.
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        received = part.stat().st_size if part.exists() else 0
        raise _Incomplete(received, expected, f"{type(exc).__name__}: {exc}") from exc
    received = part.stat().st_size
    if expected is not None and received < expected:
        raise _Incomplete(received, expected, "connection closed early")


def _range_start(resp: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None
