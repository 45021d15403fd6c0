"""Text files are read in blocks of whole lines, in place: every byte comes back once, in order,
with the right line numbers, whatever the block size, BOM, line length or last line."""
from __future__ import annotations

import io
import random
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from engine.load.quarantine import Quarantine
from engine.sources.parse import TextReader, count_lines, text_blocks

BOM = b"\xef\xbb\xbf"


def _blocks(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(line, bytes(block)) for line, block in text_blocks(io.BytesIO(data), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("data", [
    b"",
    b"a\n",
    b"a\nbb\nccc\n",
    b"a\nbb\nccc",  # no newline after the last line
    b"\n\n\n",
    b"short\n" + b"x" * 200 + b"\nafter\n",  # a line longer than the block
    BOM + b"h\n1\n2",
    BOM,
])
def test_blocks_are_the_file_in_whole_lines_with_their_numbers(data: bytes, size: int) -> None:
    blocks = _blocks(data, size)
    assert b"".join(b for _, b in blocks) == data.removeprefix(BOM)
    assert all(b.endswith(b"\n") for _, b in blocks[:-1])
    assert all(b for _, b in blocks)  # no empty blocks
    lines = data.removeprefix(BOM).split(b"\n")
    for first, block in blocks:  # each block starts at the line its number says
        start = b"\n".join(lines[first - 1:])
        assert start.startswith(block)


def test_each_block_is_its_own_buffer() -> None:
    """A consumer may keep a block (a quarantined line's raw bytes) while the next one is read."""
    kept, seen = [], []
    for _, block in text_blocks(io.BytesIO(b"".join(b"%d\n" % i for i in range(50))), 8):
        kept.append(block)
        seen.append(bytes(block))  # what it held when it was handed over
    assert len(kept) > 5 and [bytes(b) for b in kept] == seen


def test_count_lines_counts_newlines() -> None:
    rng = random.Random(7)
    data = bytes(rng.choice(b"ab\n\r,") for _ in range(100_000))
    assert count_lines(data) == data.count(b"\n")
    assert count_lines(bytearray(data)) == data.count(b"\n")
    assert count_lines(b"") == 0


def test_bad_lines_in_later_blocks_keep_their_file_line_numbers() -> None:
    """Bad rows spread over many small blocks are quarantined under their own line numbers."""
    rows, bad = [b"id,v\n"], []
    for i in range(1, 400):
        if i % 37 == 0:
            rows.append(f"{i},not-a-number\n".encode())
            bad.append(i + 1)  # the header is line 1
        else:
            rows.append(f"{i},{i * 0.5}\n".encode())
    q = Quarantine("s", "run", datetime(2026, 1, 1, tzinfo=timezone.utc))
    reader = TextReader("csv", "a.csv", q, {"id": pa.int64(), "v": pa.float64()}, "evolve", set(),
                        block_bytes=100)
    tables = list(reader.read(io.BytesIO(b"".join(rows))))
    landed = [i for t in tables for i in t.column("id").to_pylist()]
    assert [e["line"] for e in q.entries] == bad
    assert [e["raw"] for e in q.entries] == [rows[n - 1].decode() for n in bad]
    assert len(landed) + len(q.entries) == len(rows) - 1
    assert landed == [i for i in range(1, 400) if i % 37]


class Trickle(io.RawIOBase):
    """A stream that hands back at most `step` bytes per read, as an HTTP stream may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, view) -> int:  # type: ignore[override]
        n = min(self.step, len(view), len(self.data) - self.pos)
        view[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_short_reads_make_the_same_blocks_as_whole_ones() -> None:
    data = BOM + b"".join(f"{i},{'x' * (i % 13)}\n".encode() for i in range(2_000))
    whole = _blocks(data, 4096)
    trickled = [(line, bytes(block)) for line, block in text_blocks(Trickle(data, 5), 4096)]
    assert trickled == whole
    assert all(len(block) > 4096 - 32 for _, block in trickled[:-1])  # full blocks, not 5-byte ones


def test_a_stream_with_nothing_ready_is_an_error_not_an_empty_file() -> None:
    class Empty(Trickle):
        def readinto(self, view) -> None:  # type: ignore[override]
            return None

    with pytest.raises(OSError, match="non-blocking"):
        list(text_blocks(Empty(b"a\n", 1), 16))


class KeepsViews(io.RawIOBase):
    """A stream whose `readinto` keeps every buffer it was given, as a sampling profiler (a
    Dask worker's) keeps the frames, and so the views, of the code it samples."""

    def __init__(self, data: bytes) -> None:
        self.source, self.kept = io.BytesIO(data), []

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        self.kept.append(b)
        return self.source.readinto(b)


def test_blocks_are_cut_while_something_holds_the_views_they_were_read_through() -> None:
    data = b"".join(f"{i},{'x' * (i % 13)}\n".encode() for i in range(500))
    stream = KeepsViews(data)
    blocks = list(text_blocks(stream, 1000))  # BufferError before the views were released
    assert b"".join(block for _, block in blocks) == data and len(blocks) > 5
    assert len(stream.kept) > 5  # it did hold on to them
