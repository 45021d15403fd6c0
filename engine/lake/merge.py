"""Merge landing: upsert one load into a Delta table by primary key, as one commit.

Within a load the last row of each key wins (rows count in arrival order: cursor order for
SQL sources, file then row order for files); the winners replace the table's rows with the
same key and the rest are inserted. The commit carries the load's state in its
`custom_metadata`, like an append.

How: the rows are spooled, batch by batch, to a local Arrow IPC file as they arrive, keeping
only the key columns in memory (plus 9 bytes a row while the last row of each key is found).
The data files that may hold a key of the load (by their key columns' bounds in the Delta log)
have their key columns read; each file holding one is rewritten without those rows, and the
load's rows are added, all by the lake's parallel writer (engine/lake/write.py), with the same
types and statistics as an append, and committed in one Delta commit that removes the rewritten
files (operation WRITE; its `rows_added` says "N new, M updated"). A table keeps one row per
key: rows of the table sharing a key of the load are all replaced by the load's one row.

Not through delta-rs' MERGE: it writes strings as Arrow `string_view` (and says so in the
files' Arrow schema), whose Parquet statistics pyarrow 26 cannot compare with a string, so any
filtered pyarrow read of a merged file failed (`Function 'equal' has no kernel matching input
types (string, string_view)`), deltalake's own dataset and `headwater query` included. delta-rs'
MERGE is still used for a table whose files this writer must not write (see
`engine.lake.write.plain`: partitioned, constraints, deletion vectors, ...), which Headwater never
creates itself. A load that adds columns first adds them to the table in a commit of its own
(without Headwater metadata, so the source's state is still the previous one's until the merge
commits).

Memory: the key columns of the load, one boolean a row of each file being rewritten, and the
writer's chunks; the spool takes the load's size on local disk (the system temp folder) until
the merge commits.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Schema, write_deltalake
from deltalake.transaction import RemoveAction

from engine.errors import ConfigError, SchemaError, StorageError
from engine.lake import write as lake_write
from engine.lake.guard import META_PREFIX
from engine.lake.storage import arrow_dataset
from engine.lake.types import conform

ROW = "_hw_row"
ROWS_ADDED = META_PREFIX + "rows_added"  # what `headwater history` shows as a merge's rows


@dataclass(frozen=True)
class Merged:
    """What one merge did: the new version, rows merged (one per key), inserted and updated."""

    version: int | None
    rows: int
    inserted: int
    updated: int


def merge_load(uri: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, primary_key: list[str], *,
               commit_properties: CommitProperties, storage_options: dict[str, str] | None,
               origin: str = "", table: DeltaTable | None = None) -> Merged:
    """Merge `batches` (all of `schema`) into the Delta table at `uri` on `primary_key`, in one commit
    (on the snapshot `table` when given, else on the latest version).

    A table that does not exist yet is created with the load's rows (one per key).
    """
    key = primary_key
    if not key:
        raise ConfigError(f"{origin or 'a merge'}: write='merge' needs primary_key=",
                          "name the column(s) that identify a row")
    missing = [k for k in key if k not in schema.names]
    if missing:
        raise SchemaError(f"{origin or 'a merge'}: primary key column(s) {missing} are not in the data",
                          f"columns are {', '.join(schema.names)}")
    with tempfile.TemporaryDirectory(prefix="headwater-merge-") as tmp:
        spool = Path(tmp) / "load.arrow"
        keys = _spool(batches, schema, key, spool, origin)
        if keys.num_rows == 0:
            return Merged(None, 0, 0, 0)
        keep = last_per_key(keys, key)
        load_keys = keys.filter(pa.array(keep)).combine_chunks()
        del keys
        rows = load_keys.num_rows
        with pa.OSFile(str(spool)) as source:  # read back a batch at a time (an mmap would count in RSS)
            reader = pa.ipc.open_file(source)
            kept = spooled_rows(reader, keep)
            if table is None and not DeltaTable.is_deltatable(uri, storage_options):
                write_deltalake(uri, pa.RecordBatchReader.from_batches(schema, kept),
                                mode="error" if commit_properties.app_transactions else "append",
                                schema_mode="merge", storage_options=storage_options,
                                commit_properties=commit_properties)
                inserted, updated = rows, 0
            else:
                if table is None:
                    table = DeltaTable(uri, storage_options=storage_options)
                if lake_write.plain(table, rewrites=True):
                    updated = _upsert(uri, table, kept, schema, key, load_keys, commit_properties,
                                      storage_options)
                    inserted = rows - updated
                else:
                    inserted, updated = _delta_rs_merge(table, kept, schema, key, commit_properties)
            del reader, kept
    version = DeltaTable(uri, storage_options=storage_options).version()
    return Merged(version, rows, inserted, updated)


def predicate(key: list[str]) -> str:
    """The merge condition: every key column of the target equals the source's."""
    return " AND ".join(f't."{k}" = s."{k}"' for k in key)


def last_per_key(keys: pa.Table, key: list[str]) -> np.ndarray:
    """A boolean mask over the rows of `keys`: True for the last row of each key."""
    numbered = keys.append_column(ROW, pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    last = numbered.group_by(key, use_threads=False).aggregate([(ROW, "max")])
    keep = np.zeros(keys.num_rows, dtype=bool)
    keep[last.column(f"{ROW}_max").to_numpy()] = True
    return keep


def _upsert(uri: str, table: DeltaTable, kept: Iterator[pa.RecordBatch], schema: pa.Schema, key: list[str],
            load_keys: pa.Table, properties: CommitProperties, storage_options: dict[str, str] | None) -> int:
    """Replace the rows of `table` whose key is in `load_keys` with the `kept` rows (the load,
    one row per key) and insert the rest, in one commit; the number of load keys the table held."""
    add_columns(table, schema, properties)
    dataset = arrow_dataset(table, storage_options)
    candidates = overlapping(table, key, load_keys)
    touched: list[tuple[ds.Fragment, np.ndarray]] = []
    matched: list[pa.Table] = []
    for fragment in dataset.get_fragments():
        if not candidates.get(fragment.path, (True, None))[0]:
            continue
        keys = fragment.to_table(schema=dataset.schema, columns=key)
        hits = _members(keys, load_keys, key)
        if hits.any():
            touched.append((fragment, hits))
            matched.append(keys.filter(pa.array(hits)))
    updated = distinct(matched, key)

    masks = {fragment.path: hits for fragment, hits in touched}

    def without_load_keys(path: str, start: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.filter(pa.array(~masks[path][start:start + batch.num_rows]))

    rows = itertools.chain(rewritten(uri, dataset, [f for f, _ in touched], {p: len(m) for p, m in masks.items()},
                                     without_load_keys, schema), kept)
    actions, _ = lake_write.write_files(uri, rows, schema, target=lake_write.target_file_size(table),
                                        storage_options=storage_options)
    removes = removals([f.path for f, _ in touched], {p: size for p, (_, size) in candidates.items()})
    properties.custom_metadata = {**(properties.custom_metadata or {}),
                                  ROWS_ADDED: json.dumps(f"{load_keys.num_rows - updated} new, {updated} updated")}
    lake_write.commit(uri, table, [*removes, *actions], "append", schema, properties, storage_options)
    return updated


def add_columns(table: DeltaTable, schema: pa.Schema, properties: CommitProperties) -> None:
    """Add the columns of `schema` that `table` lacks, in a commit of their own before the load's.

    Delta's schema changes with a metaData action, which a write transaction cannot carry; it is
    committed on the same snapshot and with the same transaction identifier as the load itself, so
    a commit another run made since the snapshot makes this one fail too (the object moves on to
    the version this commit made)."""
    current = pa.schema(table.schema().to_arrow())
    added = [f for f in schema if f.name not in current.names]
    if added:
        table.alter.add_columns(Schema.from_arrow(pa.schema(added)).fields,
                                commit_properties=CommitProperties(app_transactions=properties.app_transactions))


Edit = Callable[[str, int, pa.RecordBatch], pa.RecordBatch]


def rewritten(uri: str, dataset: ds.Dataset, fragments: list[ds.Fragment], rows: dict[str, int], edit: Edit,
              schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The rows of the data files `fragments` of `dataset`, read in parallel (each file in order),
    each batch passed through `edit(path, offset of its first row in the file, batch)` and cast to
    `schema`. `rows` holds each file's row count when it was examined: a file that has another
    count now fails the load (StorageError, retryable)."""
    read = dict.fromkeys(rows, 0)
    files = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    for tagged in files.scanner().scan_batches():  # files read in parallel, each in order
        path, batch = tagged.fragment.path, tagged.record_batch
        edited = edit(path, read[path], batch)
        read[path] += batch.num_rows
        if edited.num_rows:
            yield conform(edited, schema)
    changed = [p for p in rows if read[p] != rows[p]]
    if changed:
        raise StorageError(f"{changed[0]} of {uri} changed while it was rewritten "
                           f"({read[changed[0]]} rows read, {rows[changed[0]]} before)", "run again",
                           retryable=True)


def removals(paths: list[str], sizes: dict[str, int | None]) -> list[RemoveAction]:
    """The actions that remove the data files `paths` (rewritten by this commit) from the table."""
    now = int(time.time() * 1000)
    return [RemoveAction(p, True, now, sizes.get(p)) for p in paths]


def overlapping(table: DeltaTable, key: list[str], load_keys: pa.Table,
                actions: pa.Table | None = None) -> dict[str, tuple[bool, int]]:
    """Per data file of `table`: (whether its key columns' bounds in the log overlap the load's
    keys, its size). A file whose bound is missing, or of a type not compared here, may overlap.
    `actions`: the table's add actions, flattened, when already read."""
    if actions is None:
        actions = pa.table(table.get_add_actions(flatten=True))
    maybe = np.ones(actions.num_rows, dtype=bool)
    for k in key:
        column = load_keys.column(k)
        if not _comparable(column.type) or f"min.{k}" not in actions.column_names:
            continue
        low, high = pc.min_max(column).values()
        file_low, file_high = actions.column(f"min.{k}"), actions.column(f"max.{k}")
        if pa.types.is_timestamp(file_high.type):  # delta-rs truncates a max to the millisecond
            file_high = pc.add(file_high, pa.scalar(dt.timedelta(milliseconds=1), pa.duration(file_high.type.unit)))
        apart = pc.or_(pc.less(file_high, _like(low, file_high)), pc.greater(file_low, _like(high, file_low)))
        maybe &= ~pc.fill_null(apart, False).to_numpy(zero_copy_only=False)
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    return {p: (bool(m), s) for p, m, s in zip(paths, maybe, sizes)}


def _like(value: pa.Scalar, column: pa.ChunkedArray) -> pa.Scalar:
    """`value` as the type of `column` (the log's bounds may be typed a little differently)."""
    return value if value.type == column.type else value.cast(column.type)


def _comparable(t: pa.DataType) -> bool:
    """Types whose bounds in the log bound every value (floats and decimals are written rounded)."""
    return (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_date32(t)
            or pa.types.is_timestamp(t))


def _members(keys: pa.Table, load_keys: pa.Table, key: list[str]) -> np.ndarray:
    """A boolean mask over the rows of `keys`: True where the row's key is one of `load_keys`
    (a null never matches, as in SQL)."""
    if len(key) == 1:
        hit = pc.is_in(keys.column(key[0]), value_set=load_keys.column(key[0]).combine_chunks())
        return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
    numbered = keys.select(key).append_column(ROW, pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    rows = numbered.join(load_keys.select(key), keys=key, join_type="left semi", use_threads=False)
    mask = np.zeros(keys.num_rows, dtype=bool)
    mask[rows.column(ROW).to_numpy()] = True
    return mask


def distinct(matched: list[pa.Table], key: list[str]) -> int:
    """How many distinct keys the `matched` rows hold."""
    if not matched:
        return 0
    return pa.concat_tables(matched).group_by(key, use_threads=False).aggregate([]).num_rows


def _delta_rs_merge(table: DeltaTable, kept: Iterator[pa.RecordBatch], schema: pa.Schema, key: list[str],
                    properties: CommitProperties) -> tuple[int, int]:
    """delta-rs' MERGE, for a table the lake's writer must not write to; (inserted, updated)."""
    metrics: dict[str, Any] = (
        table.merge(pa.RecordBatchReader.from_batches(schema, kept), predicate(key), source_alias="s",
                    target_alias="t", merge_schema=True, streamed_exec=False, commit_properties=properties)
        .when_matched_update_all().when_not_matched_insert_all().execute())
    return metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]


def _spool(batches: Iterable[pa.RecordBatch], schema: pa.Schema, key: list[str], path: Path,
           origin: str) -> pa.Table:
    """Write `batches` to an Arrow IPC file at `path`; return their key columns, in order."""
    key_batches = []
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            key_batches.append(batch.select(key))
    keys = pa.Table.from_batches(key_batches, schema=pa.schema([schema.field(k) for k in key]))
    nulls = {k: keys.column(k).null_count for k in key if keys.column(k).null_count}
    if nulls:
        raise SchemaError(f"{origin or 'a merge'}: null primary key values {nulls}",
                          "a merge matches rows by key; rows without one cannot be merged")
    return keys


def spooled_rows(reader: pa.ipc.RecordBatchFileReader, keep: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The spooled batches with only the rows `keep` marks (all of a batch when all are kept)."""
    start = 0
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        mask = keep[start:start + batch.num_rows]
        start += batch.num_rows
        if mask.all():
            yield batch
        elif mask.any():
            yield batch.filter(pa.array(mask))
