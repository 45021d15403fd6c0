"""Tolerant reading of CSV, JSON lines and Parquet: good rows as batches, bad ones to quarantine.

Text files are cut into blocks of whole lines (LF, CRLF or a lone CR ends a line; a CSV row is
a record, whose quoted values may hold line breaks, up to 64 lines: Python's csv module settles
where records end when quotes are not as RFC 4180 writes them); each block goes through
pyarrow's fast reader (with the planned column types). Lines that must not reach it, or
that it parsed into something that cannot land, are named by `guards.py` and quarantined; a
block that fails otherwise is bisected by lines until every bad line is alone, so a clean file
pays one UTF-8 check and a few vectorised passes per block. A file that cannot be read at all
(corrupt compression, not Parquet, a CSV header that names no valid set of columns) becomes one
whole-file quarantine entry.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from engine.load.quarantine import Quarantine
from engine.load.schema import coerce
from engine.sources.guards import (  # (FileUnreadable and the CSV header are read from here too)
    MAX_DEPTH,
    MAX_LINE,
    BadLines,
    FileUnreadable,
    csv_header,
    csv_header_record,
    csv_inexact,
    csv_records,
    csv_rows,
    flatten_rows,
    floating_columns,
    inexact_lines,
    json_inexact,
    json_rows,
    line_spans,
    quotes_unsettled,
    type_depth,
)

SAMPLE_BYTES = 1 << 20  # how much of each text file the schema plan reads
BOM = b"\xef\xbb\xbf"
NEWLINES = re.compile(rb"[\r\n]*")
LONE_CR = re.compile(rb"\r(?!\n)")
CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (.+?): invalid value '(.*)'", re.S)
Bytes = bytes | bytearray  # text is read into bytearrays in place; lines cut from them may be either
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, pa.ArrowException)  # what a bad file raises


def text_blocks(fh: Any, size: int, max_line: int = MAX_LINE,
                cut: Callable[[bytearray], int] | None = None) -> Iterator[tuple[int, bytearray]]:
    """(number of the first line, whole lines) for a binary file, BOM removed. Each block is a
    new bytearray filled in place after the previous block's unfinished line (which is the only
    part copied); `cut(buf)` says where the last whole row ends (the last newline unless given,
    -1 for none). A line longer than `max_line` bytes makes the rest of the file unreadable (it
    would be held in memory whole: a binary file has no line breaks)."""
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
                block = bytearray(carry)
                _lone_cr_to_lf(block, final=True)
                yield line, block
            return
        _lone_cr_to_lf(buf, final=False)
        end = buf.rfind(b"\n") if cut is None else cut(buf)
        if end < 0:
            if len(buf) > max_line:
                raise FileUnreadable(f"line {line} runs past {max_line >> 20} MiB without a line break "
                                     "(is it a text file?)")
            carry = buf  # a line longer than the block: read on (this buffer is never yielded)
            continue
        carry = bytes(buf[end + 1:])
        del buf[end + 1:]
        yield line, buf
        line += count_lines(buf)


def _lone_cr_to_lf(buf: bytearray, final: bool) -> None:
    """A CR not followed by LF ends a line, as LF does (in place, so the length stays). A CR
    that ends `buf` is left for the next read to decide, unless the file ends there."""
    if b"\r" not in buf:  # (a memchr: the usual case costs nothing more)
        return
    end = len(buf) - 1 if not final and buf.endswith(b"\r") else len(buf)
    if buf.count(b"\r", 0, end) == buf.count(b"\r\n"):  # every CR is a CRLF's
        return
    buf[:end] = LONE_CR.sub(b"\n", bytes(buf[:end]))


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


class NulBytes(ValueError):
    """A line holds NUL bytes (no text format has them)."""


def _check_text(data: Bytes) -> None:
    if b"\x00" in data:
        raise NulBytes("NUL byte(s) in the line")
    if not data.isascii():  # ASCII is valid UTF-8; isascii scans without building a str
        data.decode("utf-8")


def tolerant(data: Bytes, first_line: int, parse: Callable[[Bytes], pa.Table],
             reason: Callable[[Bytes, Exception], str], bad: Callable[[int, Bytes, str], None],
             split: Callable[[Bytes], list[Bytes]] | None = None, rows: Callable[[Bytes], int] | None = None,
             pieces: list[Bytes] | None = None) -> list[tuple[int, Bytes, pa.Table]]:
    """`data` parsed by `parse`; when that fails, bisected by rows (`split`: by lines unless
    given) until each bad row is alone and handed to `bad(line number, raw, reason)`. Returns the
    good parts in order, each as (its first line number, its bytes, its rows). When `parse` names
    the bad rows (`BadLines`), they are handed to `bad` and the block is parsed again with them
    left blank.

    The block is split once: the halves are made of its `pieces`, and a half whose parse gives
    other than the rows its pieces hold (`rows(piece)`, when given) is bisected further, so a
    quote that opens no value in the whole block cannot join lines into one row in a half."""
    try:
        _check_text(data)
        table = parse(data)
        if pieces is not None and rows is not None and table.num_rows != sum(map(rows, pieces)):
            raise ValueError(f"{table.num_rows} rows parsed from {len(pieces)} records")
        return [(first_line, data, table)]
    except BadLines as exc:
        lines = _lines(data)
        if not exc.lines or any(not 0 <= i < len(lines) or not lines[i].strip() for i in exc.lines):
            raise AssertionError(f"bad line numbers {sorted(exc.lines)} of {len(lines)}") from exc
        for i, why in sorted(exc.lines.items()):
            end = exc.ends.get(i, i + 1)
            bad(first_line + i, b"".join(lines[i:end]), why)
            lines[i:end] = [b"\n" if ln.endswith(b"\n") else b"" for ln in lines[i:end]]
        return tolerant(b"".join(lines), first_line, parse, reason, bad, split, rows)
    except (pa.ArrowException, ValueError) as exc:
        pieces = pieces if pieces is not None else (split or _lines)(data)
        if len(pieces) <= 1:
            bad(first_line, data, reason(data, exc))
            return []
        mid = len(pieces) // 2
        head = b"".join(pieces[:mid])
        return (tolerant(head, first_line, parse, reason, bad, split, rows, pieces[:mid])
                + tolerant(b"".join(pieces[mid:]), first_line + count_lines(head), parse, reason, bad, split,
                           rows, pieces[mid:]))


def _text_reason(data: Bytes, exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start} of the line"
    return str(exc).strip()


def json_reason(data: Bytes, exc: Exception | None) -> str:
    """Why one JSON line was not landed, in words (`exc`: what the parser said, if anything)."""
    if isinstance(exc, (UnicodeDecodeError, NulBytes)):
        return _text_reason(data, exc)
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err}"
    except RecursionError:
        return f"the line is nested more than {MAX_DEPTH} levels deep"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number")
        return f"the line is JSON {kind}, not an object (JSON lines need one object per line)"
    return str(exc).removeprefix("JSON parse error: ").strip() if exc else "the line could not be read"


class TextReader:
    """Reads one CSV or JSON-lines file tolerantly into the planned `types`."""

    def __init__(self, fmt: str, path: str, quarantine: Quarantine, types: dict[str, pa.DataType],
                 extras: str, dropped: set[str], delimiter: str = ",", block_bytes: int = 8 << 20) -> None:
        self.fmt, self.path, self.q, self.types = fmt, path, quarantine, types
        self.extras, self.dropped, self.delimiter, self.block_bytes = extras, dropped, delimiter, block_bytes
        self.names: list[str] = []
        self.header_read = False
        self._clean: tuple[Bytes, bool] | None = None  # the last CSV block cut, and whether its quotes are RFC 4180's
        # declared decimals are parsed as such, so a number wider than float64 keeps every digit
        self.json_schema = pa.schema([(n, t) for n, t in types.items() if pa.types.is_decimal(t)])

    def _bad(self, line: int, raw: Bytes, reason: str) -> None:
        self.q.row(self.path, line, raw, reason)

    def read(self, fh: Any) -> Iterator[pa.Table]:
        """Good rows of the file as tables; bad rows quarantined."""
        block: Bytes
        for first_line, block in text_blocks(fh, self.block_bytes, cut=self._cut if self.fmt == "csv" else None):
            if self.fmt == "csv" and not self.header_read:
                header, used, block = csv_header_record(block)
                first_line += used
                if not header.strip():
                    if block.strip():
                        raise FileUnreadable("the first line (the CSV header) is empty")
                    continue
                self.names, self.header_read = csv_header(header, self.delimiter), True
            if not block or (NEWLINES.fullmatch(block) if self.fmt == "csv" else block.isspace()):
                continue  # (a CSV line of spaces is a row; strip would copy the block)
            if self.fmt == "csv":
                parts = tolerant(block, first_line, self._parse_csv, self._csv_reason, self._bad, self._records,
                                 lambda record: 0 if NEWLINES.fullmatch(record) else 1)
            else:
                parts = tolerant(block, first_line, self._parse_json, json_reason, self._bad)
            for part_line, part, table in parts:
                yield self._coerce(table, part, part_line)

    def _parse_csv(self, data: Bytes) -> pa.Table:
        if NEWLINES.fullmatch(data):
            return pa.table({n: pa.array([], self.types.get(n, pa.string())) for n in self.names})
        types = {n: self.types[n] for n in self.names if n in self.types}
        table = _with_block_size(lambda size: pcsv.read_csv(
            pa.BufferReader(data), read_options=pcsv.ReadOptions(column_names=self.names, block_size=size),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter),
            convert_options=pcsv.ConvertOptions(column_types=types)), len(data))
        rows, ends = self._csv_rows(data, table.num_rows)
        floats = floating_columns(table)
        bad = inexact_lines(data, rows, table, lambda line: csv_inexact(line, self.names, floats, self.delimiter)) \
            if floats else {}
        if bad:
            raise BadLines(bad, {i: int(ends[np.searchsorted(rows, i)]) for i in bad})
        return table

    def _csv_rows(self, data: Bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(first line, line after the last) of each of the `n` rows pyarrow read from `data`:
        a row is a line, unless a quoted value holds line breaks (then a record, by the csv
        module, on this slow path only)."""
        lines = count_lines(data) + (not data.endswith(b"\n"))
        # quotes not as RFC 4180 writes them: pyarrow and the csv module may cut records apart
        # differently, and the csv module's records are the ones counted
        if self._clean is not None and self._clean[0] is data:  # the block `_cut` already looked at
            odd = not self._clean[1]
        else:
            odd = b'"' in data and quotes_unsettled(data, self.delimiter)
        if n == lines and not odd:  # no empty line, no record over several lines
            return np.arange(n), np.arange(1, n + 1)
        rows = csv_rows(data)
        if n == len(rows) and not odd:
            return rows, rows + 1
        firsts, ends = csv_records(data, self.delimiter) if b'"' in data else (rows, rows + 1)
        if n != len(firsts):  # a quote pyarrow read otherwise than the csv module: bisect
            raise ValueError(f"{len(firsts)} CSV records parsed as {n} rows")
        return firsts, ends

    def _cut(self, buf: bytearray) -> int:
        """Where the last whole CSV record of `buf` ends: its last newline, unless a quoted value
        runs over it (an odd number of quotes before it, or quotes that are not RFC 4180's: then
        the csv module says where the last record starts)."""
        end = buf.rfind(b"\n")
        if end < 0 or b'"' not in buf:
            self._clean = (buf, True)
            return end
        with memoryview(buf) as whole_view, whole_view[:end + 1] as head:  # (released before buf is cut)
            self._clean = (buf, not quotes_unsettled(head, self.delimiter))
        if self._clean[1]:
            return end  # (quotes as RFC 4180 writes them: an even count closes every value)
        whole = bytes(buf[:end + 1])
        firsts, _ = csv_records(whole, self.delimiter)
        if not len(firsts) or len(csv_records(whole + b"\x01\n", self.delimiter)[0]) > len(firsts):
            return end  # a line added after it is a record of its own: the last one is closed
        start = 0 if firsts[-1] == 0 else int(line_spans(whole)[0][firsts[-1]])
        return start - 1  # before the open record (-1: none closed yet, read on)

    def _records(self, data: Bytes) -> list[Bytes]:
        """`data` cut into records (each with the empty lines after it), for bisection."""
        lines = _lines(data)
        if b'"' not in data:
            return lines
        firsts, _ = csv_records(data, self.delimiter)
        cuts = sorted({0, *firsts.tolist()}) + [len(lines)]
        return [b"".join(lines[a:b]) for a, b in zip(cuts, cuts[1:]) if a < b]

    def _csv_reason(self, data: Bytes, exc: Exception) -> str:
        """Why one CSV line was not landed: pyarrow's words, with the column named."""
        found = CONVERSION.search(str(exc))
        if found is None:
            return _text_reason(data, exc)
        index, to, value = int(found[1]), found[2], found[3]
        name = self.names[index] if index < len(self.names) else f"#{index}"
        if to.startswith(("int", "uint")) and INT_TEXT.fullmatch(value):
            return (f"column {name!r}: {value} is beyond {to}; declare the column as decimal128(38, 0) or "
                    "string with schema= to keep it exactly")
        return f"column {name!r}: {value!r} is not a valid {to}"

    def _parse_json(self, data: Bytes) -> pa.Table:
        rows = json_rows(data, json_reason)  # raises BadLines for lines pyarrow must not see
        if not len(rows):
            return pa.table({})
        options = pjson.ParseOptions(explicit_schema=self.json_schema) if len(self.json_schema) else None
        table = _with_block_size(lambda size: pjson.read_json(
            pa.BufferReader(data), read_options=pjson.ReadOptions(block_size=size), parse_options=options),
            len(data))
        if table.num_rows != len(rows):  # a line holds more than one value: find it by bisection
            raise ValueError(f"{len(rows)} lines parsed as {table.num_rows} JSON values")
        if any(type_depth(t) > MAX_DEPTH for t in table.schema.types):
            raise ValueError(f"the line is nested more than {MAX_DEPTH} levels deep")
        table, bad_rows = flatten_rows(table)
        bad = {int(rows[r]): why for r, why in bad_rows.items()}
        floats = floating_columns(table)
        if floats:
            bad = inexact_lines(data, rows, table, lambda line: json_inexact(line, floats)) | bad
        if bad:
            raise BadLines(bad)
        return table

    def _coerce(self, table: pa.Table, block: Bytes, first_line: int) -> pa.Table:
        good, bad = coerce(table, self.types, extras=self.extras, dropped=self.dropped,
                           origin=f"source {self.q.source!r}: {self.path}")
        if bad:  # map row numbers back to lines (only on this slow path)
            if self.fmt == "csv":
                rows, ends = self._csv_rows(block, table.num_rows)
            else:
                rows = json_rows(block, json_reason)
                ends = rows + 1
            lines = _lines(block)
            for i, why in sorted(bad.items()):
                self._bad(first_line + int(rows[i]), b"".join(lines[int(rows[i]):int(ends[i])]), why)
        return good


INT_TEXT = re.compile(r"[-+]?\d+")
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


def read_parquet(batches: Iterator[pa.RecordBatch], path: str, quarantine: Quarantine,
                 types: dict[str, pa.DataType], extras: str, dropped: set[str]) -> Iterator[pa.Table]:
    """Parquet batches coerced to `types`; rows that do not fit go to quarantine as JSON."""
    row = 0
    for batch in batches:
        table = pa.Table.from_batches([batch])  # struct columns stay structs, as in the footer
        good, bad = coerce(table, types, extras=extras, dropped=dropped,
                           origin=f"source {quarantine.source!r}: {path}")
        if bad:
            values = table.to_pylist()
            for i, why in sorted(bad.items()):
                quarantine.row(path, row + i + 1, json.dumps(values[i], default=str), why)
        row += batch.num_rows
        yield good
