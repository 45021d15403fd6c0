"""Tolerant reading of CSV, JSON lines and Parquet: good rows as batches, bad ones to quarantine.

Text files are cut into blocks of whole lines; each block goes through pyarrow's fast reader
(with the planned column types). A block that fails is bisected by lines until every bad line
is alone, so a clean file pays one UTF-8 check per block and nothing else. A file that cannot
be read at all (corrupt compression, not Parquet) becomes one whole-file quarantine entry.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from engine.load.quarantine import Quarantine
from engine.load.schema import coerce
from engine.sources.base import flatten

SAMPLE_BYTES = 1 << 20  # how much of each text file the schema plan reads
BOM = b"\xef\xbb\xbf"
NEWLINES = re.compile(rb"[\r\n]*")
Bytes = bytes | bytearray  # text is read into bytearrays in place; lines cut from them may be either
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, pa.ArrowException)  # what a bad file raises


class FileUnreadable(Exception):
    """The file as a whole cannot be read (the reason is the message)."""


def text_blocks(fh: Any, size: int) -> Iterator[tuple[int, bytearray]]:
    """(number of the first line, whole lines) for a binary file, BOM removed. Each block is a
    new bytearray filled in place after the previous block's unfinished line (which is the only
    part copied)."""
    head = bytearray(len(BOM))
    carry: Bytes = head[:_fill(fh, head, 0)].removeprefix(BOM)
    line = 1
    while True:
        buf = bytearray(len(carry) + size)
        buf[:len(carry)] = carry
        got = _fill(fh, buf, len(carry))
        del buf[len(carry) + got:]
        if not got:
            if carry:
                yield line, bytearray(carry)
            return
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf  # a line longer than the block: read on (this buffer is never yielded)
            continue
        carry = bytes(buf[cut + 1:])
        del buf[cut + 1:]
        yield line, buf
        line += count_lines(buf)


def _fill(fh: Any, buf: bytearray, start: int) -> int:
    """Bytes read into `buf` from `start` on: until it is full or the file ends (a stream may
    hand back less than asked, as an HTTP stream or a zstd frame does). Every view of `buf` is
    released before returning, so `buf` can be resized after, even while something else holds
    this frame (a sampling profiler, such as a Dask worker's, keeps frames and their locals)."""
    got = 0
    with memoryview(buf) as whole:
        while start + got < len(buf):
            with whole[start + got:] as part:
                n = fh.readinto(part)
            if n is None:
                raise OSError("the file is a non-blocking stream with no data ready")
            if not n:
                break
            got += n
    return got


def count_lines(data: Bytes) -> int:
    """How many newlines `data` holds (numpy: about three times as fast as bytes.count on
    8 MB blocks)."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def _lines(data: Bytes) -> list[Bytes]:
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _check_text(data: Bytes) -> None:
    if b"\x00" in data:
        raise ValueError("NUL byte(s) in the line")
    if not data.isascii():  # ASCII is valid UTF-8; isascii scans without building a str
        data.decode("utf-8")


def tolerant(data: Bytes, first_line: int, parse: Callable[[Bytes], pa.Table],
             reason: Callable[[Bytes, Exception], str],
             bad: Callable[[int, Bytes, str], None]) -> list[tuple[int, Bytes, pa.Table]]:
    """`data` parsed by `parse`; when that fails, bisected by lines until each bad line is
    alone and handed to `bad(line number, raw, reason)`. Returns the good parts in order, each
    as (its first line number, its bytes, its rows)."""
    try:
        _check_text(data)
        return [(first_line, data, parse(data))]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
        lines = _lines(data)
        if len(lines) <= 1:
            bad(first_line, data, reason(data, exc))
            return []
        mid = len(lines) // 2
        return (tolerant(b"".join(lines[:mid]), first_line, parse, reason, bad)
                + tolerant(b"".join(lines[mid:]), first_line + mid, parse, reason, bad))


def _text_reason(data: Bytes, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start} of the line"
    return str(exc).strip()


def json_reason(data: Bytes, exc: Exception) -> str:
    """Why one JSON line was not landed, in words."""
    if isinstance(exc, (UnicodeDecodeError, ValueError)) and not isinstance(exc, pa.ArrowException):
        return _text_reason(data, exc)
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err}"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number")
        return f"the line is JSON {kind}, not an object (JSON lines need one object per line)"
    return str(exc).removeprefix("JSON parse error: ").strip()


def _row_lines(data: Bytes, blank: Callable[[Bytes], bool]) -> list[tuple[int, Bytes]]:
    return [(i, ln) for i, ln in enumerate(_lines(data)) if not blank(ln)]


class TextReader:
    """Reads one CSV or JSON-lines file tolerantly into the planned `types`."""

    def __init__(self, fmt: str, path: str, quarantine: Quarantine, types: dict[str, pa.DataType],
                 extras: str, dropped: set[str], delimiter: str = ",", block_bytes: int = 8 << 20) -> None:
        self.fmt, self.path, self.q, self.types = fmt, path, quarantine, types
        self.extras, self.dropped, self.delimiter, self.block_bytes = extras, dropped, delimiter, block_bytes
        self.names: list[str] = []

    def _bad(self, line: int, raw: Bytes, reason: str) -> None:
        self.q.row(self.path, line, raw, reason)

    def read(self, fh: Any) -> Iterator[pa.Table]:
        """Good rows of the file as tables; bad rows quarantined."""
        for first_line, block in text_blocks(fh, self.block_bytes):
            if self.fmt == "csv" and not self.names:
                header, _, block = block.partition(b"\n")
                first_line += 1
                if not header.strip():
                    if block.strip():
                        raise FileUnreadable("the first line (the CSV header) is empty")
                    continue
                self.names = csv_header(header, self.delimiter)
            if not block or block.isspace():  # (strip would copy the block)
                continue
            parse = self._parse_csv if self.fmt == "csv" else self._parse_json
            reason = _text_reason if self.fmt == "csv" else json_reason
            for part_line, part, table in tolerant(block, first_line, parse, reason, self._bad):
                yield self._coerce(table, part, part_line)

    def _parse_csv(self, data: Bytes) -> pa.Table:
        if NEWLINES.fullmatch(data):
            return pa.table({n: pa.array([], self.types.get(n, pa.string())) for n in self.names})
        types = {n: self.types[n] for n in self.names if n in self.types}
        return _with_block_size(lambda size: pcsv.read_csv(
            pa.BufferReader(data), read_options=pcsv.ReadOptions(column_names=self.names, block_size=size),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter),
            convert_options=pcsv.ConvertOptions(column_types=types)), len(data))

    def _parse_json(self, data: Bytes) -> pa.Table:
        if not data or data.isspace():
            return pa.table({})
        table = _with_block_size(lambda size: pjson.read_json(
            pa.BufferReader(data), read_options=pjson.ReadOptions(block_size=size)), len(data))
        return pa.Table.from_batches([flatten(b) for b in table.to_batches()]) if table.num_rows else table

    def _coerce(self, table: pa.Table, block: Bytes, first_line: int) -> pa.Table:
        good, bad = coerce(table, self.types, extras=self.extras, dropped=self.dropped,
                           origin=self.path)
        if bad:  # map row numbers back to lines (only on this slow path)
            blank = (lambda ln: not ln.strip(b"\r\n")) if self.fmt == "csv" else (lambda ln: not ln.strip())
            rows = _row_lines(block, blank)
            for i, why in sorted(bad.items()):
                offset, raw = rows[i]
                self._bad(first_line + offset, raw, why)
        return good


PARSE_BLOCK = 4 << 20  # pyarrow parses a text block in pieces of this size, in parallel; each
# piece becomes one batch, and 1 MB pieces (thousands of small batches, each conformed and
# counted on its own) landed SF1 lineitem.csv ~10% slower (bench/RESULTS.md)


def _with_block_size(read: Callable[[int], pa.Table], size: int) -> pa.Table:
    try:
        return read(min(size + 1, PARSE_BLOCK))
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc) or size < PARSE_BLOCK:  # ArrowInvalid has no code to tell it by
            raise
        return read(size + 1)


def csv_header(line: Bytes, delimiter: str) -> list[str]:
    """Column names from a CSV header line; a repeated name makes the file unreadable."""
    try:
        text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(f"the CSV header is not valid UTF-8 (byte {exc.start})") from exc
    names = next(csv.reader([text], delimiter=delimiter))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise FileUnreadable(f"the CSV header repeats column {name!r}")
        seen.add(name)
    return names


def sample_schema(fmt: str, fh: Any, delimiter: str = ",") -> pa.Schema:
    """The schema of a file from its first SAMPLE_BYTES (Parquet: its footer); good lines only."""
    if fmt == "parquet":
        return pq.read_schema(fh)
    sink = Quarantine("", "", None)  # type: ignore[arg-type]
    reader = TextReader(fmt, "", sink, {}, "evolve", set(), delimiter, SAMPLE_BYTES)
    reader._coerce = lambda table, block, first_line: table  # type: ignore[method-assign]  # infer only
    blocks = text_blocks(fh, SAMPLE_BYTES)
    first = next(blocks, None)
    if first is None:
        return pa.schema([])
    schemas = [t.schema for t in reader.read(io.BytesIO(first[1])) if t.num_columns]
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for f in schema:
            if f.name not in fields or pa.types.is_null(fields[f.name]):
                fields[f.name] = f.type
    if fmt == "csv":
        for name in reader.names:
            fields.setdefault(name, pa.null())
    return pa.schema(list(fields.items()))


def read_parquet(batches: Iterator[pa.RecordBatch], path: str, quarantine: Quarantine,
                 types: dict[str, pa.DataType], extras: str, dropped: set[str]) -> Iterator[pa.Table]:
    """Parquet batches coerced to `types`; rows that do not fit go to quarantine as JSON."""
    row = 0
    for batch in batches:
        table = pa.Table.from_batches([batch])  # struct columns stay structs, as in the footer
        good, bad = coerce(table, types, extras=extras, dropped=dropped, origin=path)
        if bad:
            values = table.to_pylist()
            for i, why in sorted(bad.items()):
                quarantine.row(path, row + i + 1, json.dumps(values[i], default=str), why)
        row += batch.num_rows
        yield good
