"""Writing a lake table's data files in parallel, then committing them as one Delta commit.

delta-rs encodes an unpartitioned write through a single Parquet writer, so a big load keeps
one core busy while the others wait (ELT-H, bench/RESULTS.md). Here the caller's thread reads
and conforms batches and hands chunks of about `CHUNK_BYTES` to a few writer threads; each
writer encodes its chunks into files of its own with pyarrow (which releases the GIL while it
encodes), rolls to a new file at the table's `delta.targetFileSize`, and reports each file with
the statistics Delta readers prune on. The files are then committed through delta-rs
(`create_write_transaction`), with the commit's metadata, so a load is still exactly one commit.

`Lake` uses this for appends and overwrites of a local table that keep its schema (or create
it); a lake on an object store, a schema change, a partitioned table or one with constraints,
generated columns and the like go through `write_deltalake` instead (see `fast_path`).
Merges into a `plain` table use it on every lake, S3 included (engine/lake/merge.py).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from engine.lake.storage import protocol, table_filesystem
from engine.lake.types import WriteMode, delta_mode

CHUNK_BYTES = 64 << 20  # Arrow bytes handed to a writer at a time: one Parquet row group
DICTIONARY_PAGE_LIMIT = 256 << 10  # a column with a bigger dictionary falls back to plain sooner
DEFAULT_TARGET_FILE_SIZE = 100 << 20  # delta-rs' default when the table sets none
MAX_WRITERS = 4
# writer features that ask nothing of an append or overwrite beyond what the checks in
# `fast_path` cover (delta-rs lists them all once a table's properties are altered)
PLAIN_FEATURES = {"timestampNtz", "appendOnly", "invariants", "checkConstraints", "variantType"}
STRING_STATS_MAX = 32  # characters of a string bound (Delta's convention)
# pyarrow keeps no Parquet min/max for a column chunk whose min or max is over 4 KiB (Arrow's
# max_statistics_size, not settable from Python): a string column with a value longer than this
# gets its bounds measured from the data as it is written (see `_long_string_bounds`)
LONG_STRING = 1024
# Parquet layout choices where pyarrow's defaults differ from delta-rs' (decimals of precision
# up to 18 as INT32/INT64, list elements named "item"): a table holds files from both writers,
# and cuDF reads such files as one only when every column is laid out alike. Still different:
# map entries ("key_value" here, "entries" there) and decimal(1, 0) (INT32 here, INT64 there).
SAME_LAYOUT_AS_DELTA_RS = {"store_decimal_as_integer": True, "use_compliant_nested_type": False}


def writer_count() -> int:
    """Writer threads for one write: one per core, at most `MAX_WRITERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_WRITERS))


def fast_path(uri: str, table: DeltaTable | None, schema: pa.Schema, mode: WriteMode) -> bool:
    """True when an append or replace (`mode`) of `schema` into the table at `uri` (`table`
    None: a new table) may bypass delta-rs' writer: the table is on local disk (against an S3
    server on loopback delta-rs' uploads were faster, bench/RESULTS.md), keeps its schema and is
    `plain`."""
    if protocol(uri) != "file":
        return False
    if table is None:
        return True
    return plain(table, rewrites=mode != "append") and pa.schema(table.schema().to_arrow()) == schema


def plain(table: DeltaTable, rewrites: bool) -> bool:
    """True when files written here may be committed to `table`: it is unpartitioned and asks
    for nothing that they would skip (CHECK constraints, invariants, generated or identity
    columns, column mapping, deletion vectors, change data feed, or, when the commit
    `rewrites` existing rows, being append-only)."""
    versions = table.protocol()
    if versions.min_writer_version == 7:
        if not set(versions.writer_features or []) <= PLAIN_FEATURES:
            return False
    elif versions.min_writer_version > 3:
        return False
    metadata = table.metadata()
    config = metadata.configuration
    return not (metadata.partition_columns or any(k.startswith("delta.constraints.") for k in config)
                or (rewrites and config.get("delta.appendOnly", "").lower() == "true")
                or "delta.invariants" in table.schema().to_json())


def target_file_size(table: DeltaTable | None) -> int:
    """The table's `delta.targetFileSize` in bytes, else delta-rs' default."""
    value = table.metadata().configuration.get("delta.targetFileSize") if table is not None else None
    return int(value) if value else DEFAULT_TARGET_FILE_SIZE


Bounds = dict[str, tuple[Any, Any]]  # column -> (min, max) of its non-null values


@dataclass
class _Written:
    path: str
    size: int
    metadata: pq.FileMetaData
    measured: Bounds  # string columns whose bounds the footer may lack, measured from the data


class _Writer:
    """One thread writing the chunks it takes from a shared queue into files of about `target` bytes."""

    def __init__(self, pool: _Writers, index: int) -> None:
        self.pool, self.index = pool, index
        self.sink: Any = None
        self.writer: pq.ParquetWriter | None = None
        self.path = ""
        self.measured: Bounds = {}
        self.thread = threading.Thread(target=self.run, name=f"lake-writer-{index}", daemon=True)
        self.thread.start()

    def run(self) -> None:
        pool = self.pool
        while (chunk := pool.queue.get()) is not None:
            if pool.errors:  # another thread failed: drain until told to stop
                continue
            try:
                self.write(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                pool.errors.append(exc)
        try:
            self.roll()
        except BaseException as exc:  # noqa: BLE001
            pool.errors.append(exc)

    def write(self, chunk: pa.Table) -> None:
        if self.writer is None:
            self.path = f"part-{self.index:05d}-{uuid.uuid4()}-c000.snappy.parquet"
            self.sink = self.pool.fs.open_output_stream(self.path)
            self.writer = pq.ParquetWriter(self.sink, self.pool.schema, compression="snappy",
                                             dictionary_pagesize_limit=DICTIONARY_PAGE_LIMIT,
                                             **SAME_LAYOUT_AS_DELTA_RS)
            with self.pool.lock:
                self.pool.opened.append(self.path)
        self.writer.write_table(chunk)
        for name, (low, high) in _long_string_bounds(chunk).items():
            was = self.measured.get(name)
            self.measured[name] = (low, high) if was is None else (min(was[0], low), max(was[1], high))
        if self.pool.file_rows is not None or self.sink.tell() >= self.pool.target:
            self.roll()

    def roll(self) -> None:
        """Close the current file (if any) and record it."""
        if self.writer is None:
            return
        self.writer.close()
        size = self.sink.tell()
        self.sink.close()
        with self.pool.lock:
            # the footer pyarrow just wrote (its ParquetWriter keeps it on the inner writer)
            self.pool.written.append(_Written(self.path, size, self.writer.writer.metadata, self.measured))
        self.writer = self.sink = None
        self.measured = {}


class _Writers:
    """A few `_Writer`s fed through one bounded queue; errors come back to the caller's thread."""

    def __init__(self, fs: pafs.FileSystem, schema: pa.Schema, target: int, count: int,
                 file_rows: int | None = None) -> None:
        self.fs, self.schema, self.target, self.file_rows = fs, schema, target, file_rows
        self.queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=count)
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.opened: list[str] = []
        self.written: list[_Written] = []
        self.closed = False
        self.writers = [_Writer(self, i) for i in range(count)]

    def put(self, chunk: pa.Table) -> None:
        while True:
            if self.errors:
                raise self.errors[0]
            try:
                self.queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> list[_Written]:
        """Wait for every chunk to be written; the files written, in the order they closed."""
        if not self.closed:
            self.closed = True
            for _ in self.writers:
                self.queue.put(None)
            for writer in self.writers:
                writer.thread.join()
        if self.errors:
            raise self.errors[0]
        return self.written

    def abort(self) -> None:
        """Stop the writers and delete what they wrote (no commit refers to it)."""
        self.errors.append(RuntimeError("the write was abandoned"))  # writers drop what is queued
        try:
            self.close()
        except BaseException:  # noqa: BLE001 - the caller's own error is the one that counts
            pass
        for path in self.opened:
            try:
                self.fs.delete_file(path)
            except OSError:
                pass


def write_files(uri: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, *, target: int,
                storage_options: dict[str, str] | None = None,
                file_rows: int | None = None) -> tuple[list[AddAction], int]:
    """Write `batches` (already of `schema`) as Parquet files in the table folder `uri`, in
    parallel; the add actions that commit them and the rows written. Nothing written is left
    behind on failure. With `file_rows`, each file holds consecutive rows of the stream, at most
    that many (and at most one chunk's bytes), and an empty batch ends a file: rows that arrive
    sorted keep tight bounds per file."""
    fs = table_filesystem(uri, storage_options)
    if isinstance(fs.base_fs, pafs.LocalFileSystem):  # object stores have no folders to make
        fs.base_fs.create_dir(fs.base_path, recursive=True)
    pool = _Writers(fs, schema, target, writer_count(), file_rows)
    chunk: list[pa.RecordBatch] = []
    size = rows = 0
    try:
        for batch in batches:
            if not batch.num_rows:
                if file_rows is not None and chunk:  # with file_rows, an empty batch ends a file
                    pool.put(pa.Table.from_batches(chunk, schema))
                    chunk, size, rows = [], 0, 0
                continue
            if file_rows is not None and rows + batch.num_rows > file_rows:  # cut the batch at the file's end
                head = file_rows - rows
                chunk.append(batch.slice(0, head))
                pool.put(pa.Table.from_batches(chunk, schema))
                batch, chunk, size, rows = batch.slice(head), [], 0, 0
                while batch.num_rows > file_rows:
                    pool.put(pa.Table.from_batches([batch.slice(0, file_rows)], schema))
                    batch = batch.slice(file_rows)
            chunk.append(batch)
            size += batch.nbytes
            rows += batch.num_rows
            if size >= min(CHUNK_BYTES, target) or rows == file_rows:
                pool.put(pa.Table.from_batches(chunk, schema))
                chunk, size, rows = [], 0, 0
        if chunk:
            pool.put(pa.Table.from_batches(chunk, schema))
        written = pool.close()
    except BaseException:
        pool.abort()
        raise
    now = int(time.time() * 1000)
    actions = [AddAction(w.path, w.size, {}, now, True, file_stats(w.metadata, schema, w.measured))
               for w in written]
    return actions, sum(w.metadata.num_rows for w in written)


def commit(uri: str, table: DeltaTable | None, actions: Sequence[AddAction | RemoveAction], mode: WriteMode,
           schema: pa.Schema,
           properties: CommitProperties, storage_options: dict[str, str] | None = None,
           create: Literal["append", "error"] = "append", description: str | None = None) -> int:
    """Commit `actions` (new files, and files a merge removes) to the table at `uri` (`table`: the
    snapshot to commit on; created when None, with `description`, `create="error"` refusing a
    table made meanwhile); the new version."""
    if table is None:
        create_table_with_add_actions(uri, Schema.from_arrow(schema), [a for a in actions if isinstance(a, AddAction)],
                                      mode=create, description=description or None,
                                      storage_options=storage_options, commit_properties=properties)
    else:
        table.create_write_transaction(list(actions), delta_mode(mode), schema, commit_properties=properties)
    return DeltaTable(uri, storage_options=storage_options).version()


def file_stats(metadata: pq.FileMetaData, schema: pa.Schema, measured: Bounds | None = None) -> str:
    """Delta's per-file statistics JSON from a Parquet footer: numRecords and, per top-level
    column of a type delta-rs gives bounds for, nullCount, minValues and maxValues.

    deltalake's Arrow dataset turns a column missing from the bounds into `col >= null`, which
    skips the file for any filter on that column; so bounds are given wherever the footer has
    them (and only the null count for a column that is entirely null), widened where Delta's
    precision is coarser, never narrowed. `measured` fills in string columns whose footer bounds
    pyarrow dropped (values over 4 KiB). A column that has values but no bound at all (a float
    column of only NaN) leaves out minValues and maxValues for the whole file: readers then
    keep the file for every filter instead of skipping it for one."""
    measured = measured or {}
    columns: dict[str, list[Any]] = {}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            columns.setdefault(column.path_in_schema, []).append((column.statistics, group.num_rows))
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    unbounded = False
    for field in schema:
        parts = columns.get(field.name)
        if not _bounded(field.type) or not parts or any(s is None or not s.has_null_count for s, _ in parts):
            continue
        nulls[field.name] = sum(s.null_count for s, _ in parts)
        filled = [s for s, rows in parts if s.null_count < rows]
        if not filled:
            continue
        found = [(s.min, s.max) for s in filled if s.has_min_max]
        if len(found) < len(filled):
            if field.name not in measured:
                unbounded = True
                continue
            found.append(measured[field.name])
        lows[field.name] = _bound(field.type, min(low for low, _ in found), floor=True)
        highs[field.name] = _bound(field.type, max(high for _, high in found), floor=False)
    if unbounded:
        return json.dumps({"numRecords": metadata.num_rows, "nullCount": nulls})
    return json.dumps({"numRecords": metadata.num_rows, "minValues": lows, "maxValues": highs,
                       "nullCount": nulls})


def _long_string_bounds(chunk: pa.Table) -> Bounds:
    """(min, max) of each string column of `chunk` holding a value over `LONG_STRING` bytes."""
    out: Bounds = {}
    for field, column in zip(chunk.schema, chunk.columns):
        if not pa.types.is_string(field.type) or column.null_count == len(column):
            continue
        longest = pc.max(pc.binary_length(column)).as_py()
        if longest is not None and longest > LONG_STRING:
            low, high = pc.min_max(column).values()
            out[field.name] = (low.as_py(), high.as_py())
    return out


def _bounded(t: pa.DataType) -> bool:
    """Whether Delta keeps bounds for a column of type `t` (delta-rs: not for binary or nested)."""
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            or pa.types.is_string(t) or pa.types.is_date32(t) or pa.types.is_timestamp(t)
            or pa.types.is_boolean(t))


def _bound(t: pa.DataType, value: Any, floor: bool) -> Any:
    """A Parquet bound as Delta writes it, widened (`floor`: downwards) where Delta's form is
    coarser: timestamps to the millisecond, decimals to a float, strings to 32 characters,
    infinities to the largest float (JSON has none)."""
    if pa.types.is_timestamp(t):
        ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if not floor and ms != value:
            ms += dt.timedelta(milliseconds=1)
        if t.tz is None:
            return ms.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return ms.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if pa.types.is_date32(t):
        return value.isoformat()
    if pa.types.is_string(t):
        return _string_bound(value, floor)
    if pa.types.is_decimal(t):
        f = float(value)
        if floor and Decimal(f) > value:
            f = math.nextafter(f, -math.inf)
        elif not floor and Decimal(f) < value:
            f = math.nextafter(f, math.inf)
        return f
    if pa.types.is_floating(t):
        return max(-sys.float_info.max, min(sys.float_info.max, float(value)))
    return value  # integers, booleans


def _string_bound(value: str, floor: bool) -> str:
    """`value` cut to `STRING_STATS_MAX` characters: a prefix is a lower bound; an upper bound
    is the prefix with its last raisable character raised by one and what follows it dropped
    (the whole value when no character can be raised)."""
    if len(value) <= STRING_STATS_MAX:
        return value
    prefix = value[:STRING_STATS_MAX]
    if floor:
        return prefix
    for i in range(len(prefix) - 1, -1, -1):
        raised = ord(prefix[i]) + 1
        if raised == 0xD800:  # surrogates are not characters
            raised = 0xE000
        if raised <= 0x10FFFF:
            return prefix[:i] + chr(raised)
    return value
