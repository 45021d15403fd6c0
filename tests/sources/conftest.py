"""Fixtures of the source tests: a folder served over HTTP with Range support
(tests/support/http_range.py), for remote files."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.http_range import HttpFolder, RangeHandler, Tally


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[HttpFolder]:
    """A temporary folder served over HTTP on 127.0.0.1, with Range support and a byte tally."""
    root = tmp_path / "served"
    root.mkdir()
    tally = Tally()
    handler = partial(RangeHandler, tally=tally, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HttpFolder(root, f"http://127.0.0.1:{server.server_address[1]}", tally)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
