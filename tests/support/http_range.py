"""A static HTTP server for tests, with Range requests and a tally of the bytes it sends.

Python's SimpleHTTPRequestHandler ignores `Range`, so every read of a remote file would
transfer all of it; fsspec's HTTPFileSystem needs `206 Partial Content` answers to read a file
piecewise. The `http_folder` fixture (tests/sources/conftest.py) serves a temporary folder on
127.0.0.1 with this handler and counts the body bytes sent.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO


@dataclass
class Tally:
    """Body bytes sent and the requests answered, as (method, path, Range header or None, bytes)."""

    bytes_sent: int = 0
    requests: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, range_: str | None, sent: int) -> None:
        with self.lock:
            self.bytes_sent += sent
            self.requests.append((method, path, range_, sent))


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b | a- | -n` support and counts what it sends."""

    tally: Tally

    def __init__(self, *args: Any, tally: Tally, **kwargs: Any) -> None:
        self.tally = tally
        self._length = 0
        super().__init__(*args, **kwargs)

    def send_head(self) -> BinaryIO | None:  # type: ignore[override]
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return super().send_head()  # folders and 404s as usual
        size = os.path.getsize(path)
        start, end = 0, size - 1
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted or "")
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # the last n bytes
                start = max(size - int(match.group(2)), 0)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        fh = open(path, "rb")  # closed by the base class after copyfile
        fh.seek(start)
        self._length = end - start + 1
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self._length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            self.tally.add("HEAD", self.path, wanted, 0)
        return fh

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read(self._length)
        outputfile.write(data)
        self.tally.add(self.command, self.path, self.headers.get("Range"), len(data))

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@dataclass
class HttpFolder:
    """A served folder: write files into `root`, read them at `url(name)`."""

    root: Path
    base: str
    tally: Tally

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"
