"""A real HTTP file server on 127.0.0.1 for tests: Range requests, and broken downloads on demand."""
from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, NamedTuple


class Request(NamedTuple):
    path: str
    range: str | None  # the Range header as sent, None when absent


class Served(NamedTuple):
    url: str  # base URL, without a trailing slash
    requests: list[Request]  # every GET received, in order


@contextlib.contextmanager
def serve_directory(
    root: Path,
    *,
    truncate: dict[str, int] | None = None,
    truncate_times: int | None = None,
    ranges: bool = True,
) -> Iterator[Served]:
    """Serve the files under `root` until the block ends.

    For a name (path relative to `root`) in `truncate`, a response announces its full
    Content-Length but the connection is closed after that many body bytes; only the first
    `truncate_times` responses for that name are cut when it is set (all of them when None).
    With `ranges=False` the Range header is ignored and the whole file is sent with 200.
    """
    root = Path(root).resolve()
    truncate = truncate or {}
    log: list[Request] = []
    cut_so_far: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            header = self.headers.get("Range")
            log.append(Request(self.path, header))
            name = self.path.split("?", 1)[0].lstrip("/")
            path = (root / name).resolve()
            if not path.is_file() or not path.is_relative_to(root):
                self.send_error(404)
                return
            data = path.read_bytes()
            span = _parse_range(header, len(data)) if ranges else None
            if span is not None and span[0] >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if span is None:
                body = data
                self.send_response(200)
            else:
                start, end = span
                body = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: self._cut(name, len(body))])
            # HTTP/1.0 closes the connection after the response: a short body reads as truncated.

        def _cut(self, name: str, size: int) -> int:
            if name not in truncate:
                return size
            with lock:
                if truncate_times is not None and cut_so_far[name] >= truncate_times:
                    return size
                cut_so_far[name] += 1
            return min(truncate[name], size)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean; the request log above is what tests assert on

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks a free one
    # A short poll interval: shutdown() waits for the loop's next poll, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_address[1]}", log)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=N-` or `bytes=N-M` range; None for no/other ranges."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    if match is None:
        return None
    last = int(match.group(2)) if match.group(2) else size - 1
    return int(match.group(1)), min(last, size - 1)
