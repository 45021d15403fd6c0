"""Checks that keep bad lines away from pyarrow's fast text parsers, or out of what they parsed.

pyarrow's JSON reader crashes the process (SIGSEGV) on a block whose first value is `null`, and
on nesting some ten thousand levels deep; it reads `null` after an object as a row of nulls and
two objects on one line as two rows. So every JSON-lines line must start with `{` and no line
may open more than `GUARD_OPENS` brackets unmeasured: `json_rows` checks a block with a few
vectorised passes and names the lines that break the rule, before pyarrow sees it. A parsed
block must then hold one row per line that is not blank.

Rows that parsed but cannot land as they are (an integer rounded to double, a flattened key
colliding with another, a name Delta refuses) are named by line too. Each check raises
`BadLines`: the reader quarantines those lines and parses the rest again. A CSV header that
cannot name the columns of a Delta table makes the file unreadable (`FileUnreadable`).
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.load.schema import name_problem, names_problem, rows_only

MAX_RECORD_LINES = 64  # most lines one CSV record (a quoted value with line breaks) may span
MAX_LINE = 256 << 20  # the longest line read (a longer one is held whole in memory first)
# the csv module refuses a field over 131,072 characters by default; a line may be MAX_LINE.
# Set once for the process (a save and restore around each use would race between loads in
# threads).
csv.field_size_limit(MAX_LINE)
GUARD_OPENS = 1000  # a line with this many `{` or `[` has its depth measured before parsing
MAX_DEPTH = 128  # deepest nesting a JSON line may have
EXACT = 2 ** 53  # integers up to this are exact as float64
INT64 = (-2 ** 63, 2 ** 63 - 1)
STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
INT_LITERAL = re.compile(r"\s*[-+]?\d+\s*")
WHITESPACE = b" \t\r\n"


class FileUnreadable(Exception):
    """The file as a whole cannot be read (the reason is the message)."""


class BadLines(ValueError):
    """Rows of a block that cannot land: the index of their first line among the block's lines
    -> why (and, for a CSV record over several lines, the index after its last in `ends`)."""

    def __init__(self, lines: dict[int, str], ends: dict[int, int] | None = None) -> None:
        super().__init__(f"{len(lines)} bad line(s)")
        self.lines, self.ends = lines, ends or {}


def line_spans(data: bytes | bytearray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of each line of `data` (the end excludes the `\\n`)."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate(([0], ends + 1))
    ends = np.concatenate((ends, [len(data)]))
    if starts[-1] == len(data):  # nothing after the last newline
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def json_rows(data: bytes | bytearray, reason: Callable[[bytes, Exception | None], str]) -> np.ndarray:
    """The indices of the lines of `data` that are not blank (one row each, once parsed).
    Raises `BadLines` for lines that do not start with `{` (`reason(line, None)` says why) and
    for lines nested deeper than MAX_DEPTH."""
    starts, ends = line_spans(data)
    if not len(starts):
        return starts
    view = np.frombuffer(data, np.uint8)
    blank = np.zeros(len(starts), bool)
    bad: dict[int, str] = {}
    for i in np.flatnonzero(view[starts] != ord("{")).tolist():
        body = bytes(data[starts[i]:ends[i]]).strip(WHITESPACE)
        if not body:
            blank[i] = True
        elif not body.startswith(b"{"):
            bad[i] = reason(bytes(data[starts[i]:ends[i]]), None)
    for i in np.flatnonzero(ends - starts >= GUARD_OPENS).tolist():
        if i in bad or data.count(b"{", starts[i], ends[i]) + data.count(b"[", starts[i], ends[i]) < GUARD_OPENS:
            continue
        depth = json_depth(bytes(data[starts[i]:ends[i]]))
        if depth > MAX_DEPTH:
            bad[i] = f"the line is nested {depth} levels deep; at most {MAX_DEPTH} are read"
    if bad:
        raise BadLines(bad)
    return np.flatnonzero(~blank)


def csv_rows(data: bytes | bytearray) -> np.ndarray:
    """The indices of the lines of `data` that pyarrow reads as CSV rows (all but empty ones)."""
    starts, ends = line_spans(data)
    if not len(starts):
        return starts
    view = np.frombuffer(data, np.uint8)
    width = ends - starts
    empty = (width == 0) | ((width == 1) & (view[np.minimum(starts, len(data) - 1)] == 13))
    return np.flatnonzero(~empty)


def csv_records(data: bytes | bytearray, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(first line, line after the last) of each CSV record of `data` that is not empty: a quoted
    value may hold line breaks, up to MAX_RECORD_LINES lines (a quote left open longer is a
    stray one, and its lines are records of their own)."""
    reader = csv.reader(io.StringIO(bytes(data).decode("latin-1"), newline=""), delimiter=delimiter)
    firsts: list[int] = []
    ends: list[int] = []
    start = 0
    lines: list[bytes] | None = None  # split once, when a stray quote is first met
    try:
        for fields in reader:
            end = reader.line_num
            if end - start > MAX_RECORD_LINES:
                lines = lines if lines is not None else bytes(data).split(b"\n")
                keep = [i for i in range(start, end) if lines[i].strip(b"\r")]
                firsts += keep
                ends += [i + 1 for i in keep]
            elif fields:
                firsts.append(start)
                ends.append(end)
            start = end
    except csv.Error:  # not a CSV the csv module reads: one row per line
        rows = csv_rows(data)
        return rows, rows + 1
    return np.array(firsts, np.int64), np.array(ends, np.int64)


def quotes_unsettled(data: bytes | bytearray | memoryview, delimiter: str) -> bool:
    """Whether counting the quotes of `data` (from the start of a record) cannot tell which line
    breaks are inside a value: a value is left open (an odd count), or a quote is not where
    RFC 4180 puts one. Under RFC 4180 an even number of quotes before a quote makes it open a
    value, so it starts a field (or doubles the quote before it); an odd number makes it close
    one, so a field ends after it (or the quote after it doubles it)."""
    view = np.frombuffer(data, np.uint8)
    size, at = len(view), np.flatnonzero(view == ord('"'))
    opens, closes = at[0::2], at[1::2]
    before, after = view[np.maximum(opens - 1, 0)], view[np.minimum(closes + 1, size - 1)]
    del view  # no view of `data` may outlive this call: the caller may resize it
    if len(at) % 2:
        return True
    starts = (opens == 0) | _edge(before, delimiter)
    ends = (closes == size - 1) | _edge(after, delimiter)
    return not (starts.all() and ends.all())


def _edge(chars: np.ndarray, delimiter: str) -> np.ndarray:
    """Which of `chars` may stand beside a quote that opens or closes a value."""
    return (chars == ord(delimiter)) | (chars == 10) | (chars == 13) | (chars == ord('"'))


def json_depth(line: bytes) -> int:
    """How deep brackets nest in one JSON line (brackets inside strings do not count)."""
    text = np.frombuffer(STRINGS.sub(b'""', line), np.uint8)
    steps = (np.isin(text, (ord("{"), ord("["))).astype(np.int32)
             - np.isin(text, (ord("}"), ord("]"))).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def type_depth(t: pa.DataType) -> int:
    """How deep a type nests (a struct or list adds a level)."""
    if pa.types.is_struct(t):
        return 1 + max((type_depth(f.type) for f in t), default=0)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return 1 + type_depth(t.value_type)
    return 0


def flatten_rows(table: pa.Table, sep: str = "__") -> tuple[pa.Table, dict[int, str]]:
    """Struct columns as flat `parent__child` columns (lists stay lists), and the rows that
    cannot be flattened: a key colliding with a flattened one (`device__os` beside `device.os`)
    in the same row, or any name a column cannot have (empty, `_hw_`, differing only in case)."""
    columns: dict[str, pa.ChunkedArray] = {}
    bad: dict[int, str] = {}
    for name, col in _flat(table.column_names, table.columns, sep):
        if name not in columns:
            columns[name] = col
            continue
        first = columns[name]
        both = pc.and_(pc.is_valid(first), pc.is_valid(col))
        for i in pc.indices_nonzero(both).to_pylist():
            bad.setdefault(i, f"key {name!r} collides with a nested key flattened to the same name")
        if first.type == col.type:
            columns[name] = pc.coalesce(first, col)
        else:
            for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
                bad.setdefault(i, f"key {name!r} ({col.type}) collides with a nested key flattened to "
                                  f"the same name ({first.type})")
    known: dict[str, str] = {}
    keep: dict[str, pa.ChunkedArray] = {}
    for name, col in columns.items():
        why = name_problem(name, known)
        if why is None:
            known[name.lower()] = name
            keep[name] = col
            continue
        for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
            bad.setdefault(i, f"key {name!r}: {why}")
    if not keep:  # no columns, but still one row per line
        return rows_only(table.num_rows), bad
    return pa.table(keep), bad


def _flat(names: Sequence[str], cols: Sequence[pa.ChunkedArray], sep: str) -> Iterator[tuple[str, pa.ChunkedArray]]:
    for name, col in zip(names, cols):
        if not pa.types.is_struct(col.type):
            yield name, col
            continue
        children = [chunk.flatten() for chunk in col.chunks]  # respects the parent's nulls
        parts = [pa.chunked_array([c[k] for c in children], f.type) for k, f in enumerate(col.type)]
        yield from ((f"{name}{sep}{child}", c) for child, c in _flat([f.name for f in col.type], parts, sep))


def float_suspects(table: pa.Table) -> np.ndarray:
    """Rows holding a float of magnitude 2**53 or more: the only ones whose text may have been an
    integer that float64 rounds (or one beyond int64)."""
    rows = np.zeros(table.num_rows, bool)
    for col in table.columns:
        if not _floating(col.type):
            continue
        values: pa.Array = col.combine_chunks()
        owner: np.ndarray | None = None  # the row of each value, once lists are unnested
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            parents = pc.list_parent_indices(values).to_numpy()
            owner = parents if owner is None else owner[parents]
            values = pc.list_flatten(values)
        big = pc.fill_null(pc.greater_equal(pc.abs(values), EXACT), False).to_numpy(zero_copy_only=False)
        rows[big if owner is None else owner[big]] = True
    return np.flatnonzero(rows)


def long_int_lines(data: bytes | bytearray, starts: np.ndarray) -> np.ndarray:
    """The lines (indices, given their `starts`) with a run of 16 or more digits that is not a
    fraction nor followed by an exponent: the only text that can be an integer float64 rounds."""
    view = np.frombuffer(data, np.uint8)
    digit = (view - ord("0")) < 10  # (uint8 wraps below '0')
    edges = np.diff(np.concatenate(([False], digit, [False])).astype(np.int8))
    begin, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = end - begin >= 16
    begin, end = begin[long], end[long]
    if not len(begin):
        return begin
    before = view[np.maximum(begin - 1, 0)]
    after = view[np.minimum(end, len(view) - 1)]
    literal = ((begin == 0) | (before != ord("."))) & \
        ((end == len(view)) | ~np.isin(after, (ord("."), ord("e"), ord("E"))))
    return np.unique(np.searchsorted(starts, begin[literal], side="right") - 1)


def _floating(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


def inexact_int(value: int, column: str) -> str | None:
    """Why integer `value` of a float column cannot land as it was written, or None."""
    if not INT64[0] <= value <= INT64[1]:
        return (f"column {column!r}: {value} is beyond int64 and would be rounded as a float; declare the "
                "column as decimal128(38, 0) (or string, for CSV) with schema= to keep it exactly")
    if float(value) != value:
        return (f"column {column!r}: {value} cannot be stored exactly as a float; declare the column as "
                "int64 or decimal128(38, 0) with schema= to keep it exactly")
    return None


def json_inexact(line: bytes, floats: set[str], sep: str = "__") -> str | None:
    """Why a JSON line holds an integer that its float column would round, or None."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return _walk(value, "", floats, sep) if isinstance(value, dict) else None


def _walk(value: Any, column: str, floats: set[str], sep: str) -> str | None:
    if isinstance(value, dict):
        for key, inner in value.items():
            why = _walk(inner, f"{column}{sep}{key}" if column else key, floats, sep)
            if why:
                return why
    elif isinstance(value, list):
        return next((why for v in value if (why := _walk(v, column, floats, sep))), None)
    elif isinstance(value, int) and not isinstance(value, bool) and column in floats:
        return inexact_int(value, column)
    return None


def inexact_lines(data: bytes | bytearray, rows: np.ndarray, table: pa.Table,
                   why: Callable[[bytes], str | None]) -> dict[int, str]:
    """The lines whose text holds an integer that their float column rounds: `why(line)` says,
    for the few rows whose floats are large enough for that to be possible."""
    suspects = float_suspects(table)
    if not len(suspects):
        return {}
    starts, ends = line_spans(data)
    lines = np.intersect1d(rows[suspects], long_int_lines(data, starts))
    found = {}
    for line in lines.tolist():
        reason = why(bytes(data[starts[line]:ends[line]]))
        if reason:
            found[line] = reason
    return found


def csv_inexact(line: bytes, names: Sequence[str], floats: set[str], delimiter: str) -> str | None:
    """Why a CSV line holds an integer that its float column would round, or None."""
    fields = next(csv.reader([line.decode("utf-8", "replace").rstrip("\r\n")], delimiter=delimiter), [])
    for name, text in zip(names, fields):
        if name in floats and INT_LITERAL.fullmatch(text):
            why = inexact_int(int(text), name)
            if why:
                return why
    return None


def floating_columns(table: pa.Table) -> set[str]:
    """Names of the columns of float type (or lists of floats)."""
    return {f.name for f in table.schema if _floating(f.type)}


def csv_header_record(block: bytes | bytearray) -> tuple[bytes | bytearray, int, bytes | bytearray]:
    """(the header record, how many lines it spans, the rest of the block): a quoted name may
    hold a line break, so the record runs until its quotes are closed."""
    end, used, quotes = -1, 0, 0
    while True:
        start, end = end + 1, block.find(b"\n", end + 1)
        used += 1
        quotes += block.count(b'"', start, len(block) if end < 0 else end)
        closed = quotes % 2 == 0
        if not closed and (end < 0 or used >= MAX_RECORD_LINES):
            raise FileUnreadable(f"the CSV header opens a quote that is not closed "
                                 f"{'in the file' if end < 0 else f'within {MAX_RECORD_LINES} lines'}")
        if end < 0:
            return block, used, bytearray()
        if closed:
            return block[:end], used, block[end + 1:]


def csv_header(line: bytes | bytearray, delimiter: str) -> list[str]:
    """Column names from a CSV header record; a header that cannot name the columns of a
    Delta table (a repeated, empty or reserved name, or not UTF-8) makes the file unreadable."""
    if line.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileUnreadable("the file looks UTF-16 encoded (it starts with a UTF-16 byte order mark); "
                             "save it as UTF-8")
    try:
        text = line.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(f"the CSV header is not valid UTF-8 (byte {exc.start})") from exc
    if "\x00" in text:
        raise FileUnreadable("the CSV header has NUL bytes (is the file UTF-16 or binary?)")
    try:
        names = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise FileUnreadable(f"the CSV header cannot be read: {exc}") from exc
    why = names_problem(names)
    if why:
        raise FileUnreadable(f"the CSV header: {why}")
    return names
