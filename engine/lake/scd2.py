"""SCD2 loads: every version of each key's row, each with the time it was valid, as one commit.

A history table holds the source's columns and load columns plus `_hw_valid_from`,
`_hw_valid_to` (null while the version is current) and `_hw_row_hash`, a hash of the tracked
columns (all but the `_hw_` ones unless `track=` names them) stored so that a load compares
hashes and never re-hashes the table. One load:

* spools its rows to a local Arrow file, keeping in memory each row's key, valid-from time and
  hash; a row with a null key, and every row of a key but its last (by cursor, ties: the last
  read), is handed back to be quarantined (`settle`), before anything is committed;
* reads the current versions of the load's keys: only the files whose key bounds in the Delta
  log overlap the load's keys and whose `_hw_valid_to` null count says they hold a current
  version, and of those only the key, `_hw_valid_to` and `_hw_row_hash` columns; with
  `hard_deletes="invalidate"` also the key and `_hw_valid_to` columns of every file holding a
  current version (the current keys), to find the keys the extract no longer has;
* closes a changed key's current version at the new version's valid-from, and a vanished key's at
  the load time, by rewriting the files that hold them with `_hw_valid_to` set; adds a version for
  every key that is new, changed, or back after it vanished;
* commits the removed and added files in one Delta commit carrying the source's state; a load
  that changes nothing, quarantines nothing and moves no state commits nothing.

So a load costs its own rows, the key columns of the files that may hold its keys, and a rewrite
of the files that hold a version it closes. Files are written key-sorted in chunks of at most
`FILE_ROWS` rows, so a key range lives in few files and a change to some keys rewrites those,
not the table (bench/scd2.py measures it).

`valid_from` is the cursor's value (`cursor=`; a naive time is read as UTC) when the source has
one, else the load's time. With a cursor a load is only what changed, so a deleted row is never
seen: `hard_deletes="invalidate"` needs a full extract. When the extract left rows out (they
were quarantined before this stage), the keys it lacks may still exist, so none is invalidated.
"""
from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable

from engine.errors import ConfigError, SchemaError
from engine.lake import write as lake_write
from engine.lake.history import LOAD_PREFIX, ROW_HASH, TIME, VALID_FROM, VALID_TO, History, row_hash, tracked
from engine.lake.merge import (
    ROW,
    ROWS_ADDED,
    add_columns,
    distinct,
    last_per_key,
    overlapping,
    removals,
    rewritten,
    spooled_rows,
)
from engine.lake.storage import arrow_dataset

FILE_ROWS = 65_536  # rows per data file a history load writes: few files per key range
NEW_HASH, NEW_FROM = "_hw_new_hash", "_hw_new_from"  # the load's side of a join with the table
# a current version's place (the file read, its row there) and end; a load row's place in the load
FILE, UNTIL, AT = "_hw_file", "_hw_until", "_hw_at"
# the rows a load leaves out and why -> entries the load had quarantined before these
Settle = Callable[[pa.Table, list[str]], int]


@dataclass(frozen=True)
class Versioned:
    """What one SCD2 load did: its version (None: nothing committed), the load's rows that landed
    (one per key: new, changed or unchanged), keys new or back, keys changed, vanished keys
    closed, rows left out (null or repeated keys)."""

    version: int | None
    rows: int
    new: int = 0
    changed: int = 0
    closed: int = 0
    rejected: int = 0

    def describe(self) -> str:
        return (f"history: {self.new:,} new, {self.changed:,} changed, "
                f"{self.rows - self.new - self.changed:,} unchanged, {self.closed:,} closed (vanished)")


@dataclass
class _Closing:
    """The current versions one data file holds that a load closes: a mask over its rows and
    each closed row's `_hw_valid_to` (microseconds since the epoch, at the row's place)."""

    fragment: ds.Fragment
    size: int | None  # bytes, for the remove action
    mask: np.ndarray
    until: np.ndarray = field(repr=False)

    def apply(self, path: str, start: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` (rows `start`... of this file) with the closed versions' `_hw_valid_to` set."""
        mask = self.mask[start:start + batch.num_rows]
        if not mask.any():
            return batch
        at = batch.schema.get_field_index(VALID_TO)
        until = pa.array(self.until[start:start + batch.num_rows][mask], pa.int64()).cast(TIME)
        return batch.set_column(at, VALID_TO, pc.replace_with_mask(batch.column(at).cast(TIME), pa.array(mask), until))


@dataclass
class _Found:
    """What a load finds among the table's current versions: the files with versions to close,
    a mask over the load of keys whose current version stays, keys changed (and the versions
    closed for them: one each, unless the table held several), versions of vanished keys closed."""

    closings: list[_Closing]
    same: np.ndarray
    changed: int = 0
    changed_rows: int = 0
    vanished: int = 0


def check(schema: pa.Schema, history: History, origin: str) -> None:
    """Raise unless the load's `schema` has the key, the tracked columns and a time cursor."""
    what = origin or "an SCD2 load"
    missing = [c for c in [*history.key, *(history.track or [])] if c not in schema.names]
    if missing:
        raise SchemaError(f"{what}: primary_key/track column(s) {missing} are not in the data",
                          f"columns are {', '.join(n for n in schema.names if not n.startswith(LOAD_PREFIX))}")
    if history.cursor is not None:
        if history.cursor not in schema.names:
            raise SchemaError(f"{what}: cursor column {history.cursor!r} is not in the data",
                              f"columns are {', '.join(schema.names)}")
        t = schema.field(history.cursor).type
        if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            raise ConfigError(f"{what}: cursor column {history.cursor!r} is {t}, and an SCD2 version's "
                              "_hw_valid_from is a time", "use a timestamp or date cursor, or drop cursor= "
                              "(the load's time then stamps versions)")


def load_history(uri: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, history: History, *,
                 commit_properties: CommitProperties, storage_options: dict[str, str] | None,
                 table: DeltaTable | None, settle: Settle, state_changed: bool, origin: str = "") -> Versioned:
    """Land `batches` (of `schema`, the history columns included) into the history table at
    `uri` (`table`: the snapshot to commit on, None for a new table) as one commit."""
    check(schema, history, origin)
    if table is not None and not lake_write.plain(table, rewrites=True):
        raise ConfigError(f"{origin or uri}: write='scd2' into a table Headwater did not create "
                          "(partitioned, with constraints, deletion vectors, ...)",
                          "land the source under a new name: Headwater creates its history table")
    with tempfile.TemporaryDirectory(prefix="headwater-scd2-") as tmp:
        spool = Path(tmp) / "load.arrow"
        index = _spool(batches, schema, history, spool)
        with pa.OSFile(str(spool)) as source:  # read back a batch at a time, as a merge does
            reader = pa.ipc.open_file(source)
            keep, reasons = _one_per_key(index, history)
            left_out = sorted(reasons)
            earlier = settle(pa.Table.from_batches(list(spooled_rows(reader, _mask(index.num_rows, left_out))), schema),
                             [reasons[i] for i in left_out])
            load = index.filter(pa.array(keep))
            # an extract that lacks rows (quarantined before this stage) may lack keys that still exist
            invalidate = history.hard_deletes == "invalidate" and not earlier
            found = _Found([], np.zeros(load.num_rows, dtype=bool))
            if table is not None:
                add_columns(table, schema, commit_properties)
                found = _current(table, load, history, invalidate, storage_options)
            versions = load.num_rows - int(found.same.sum())
            counts = Versioned(None, load.num_rows, versions - found.changed, found.changed, found.vanished,
                               len(left_out))
            if not (versions or found.closings or left_out or earlier or state_changed):
                return counts
            starts = keep.copy()
            starts[np.flatnonzero(keep)[found.same]] = False
            added = _sorted(_new_versions(spooled_rows(reader, starts), load.filter(pa.array(~found.same))),
                            history.key, schema)
            old = _rewritten(uri, arrow_dataset(table, storage_options), found.closings, schema) \
                if table is not None else iter(())
            actions, _ = lake_write.write_files(uri, itertools.chain(old, added), schema,
                                                target=lake_write.target_file_size(table),
                                                storage_options=storage_options, file_rows=FILE_ROWS)
    closed = found.changed_rows + found.vanished
    commit_properties.custom_metadata = {
        **(commit_properties.custom_metadata or {}),
        ROWS_ADDED: json.dumps(f"{versions:,} versions ({counts.new:,} new, {counts.changed:,} changed), "
                               f"{closed:,} closed")}
    removed = removals([c.fragment.path for c in found.closings], {c.fragment.path: c.size for c in found.closings})
    version = lake_write.commit(uri, table, [*removed, *actions], "append", schema, commit_properties,
                                storage_options, create="error" if commit_properties.app_transactions else "append")
    return replace(counts, version=version)


def _spool(batches: Iterable[pa.RecordBatch], schema: pa.Schema, history: History, path: Path) -> pa.Table:
    """Write `batches` to an Arrow IPC file at `path`; return, for each row in order, its key
    columns, its valid-from time (`NEW_FROM`) and its hash (`NEW_HASH`)."""
    columns = tracked(schema, history)
    parts = []
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            when = pc.cast(batch.column(history.cursor), TIME) if history.cursor else \
                pa.repeat(pa.scalar(history.loaded_at, TIME), batch.num_rows)
            when = pc.fill_null(when, pa.scalar(history.loaded_at, TIME))
            parts.append(pa.Table.from_arrays([*(batch.column(k) for k in history.key), when,
                                               row_hash(batch, columns)], names=[*history.key, NEW_FROM, NEW_HASH]))
    fields = [schema.field(k) for k in history.key] + [pa.field(NEW_FROM, TIME), pa.field(NEW_HASH, pa.string())]
    index = pa.concat_tables(parts) if parts else pa.schema(fields).empty_table()
    return index.append_column(ROW, pa.array(np.arange(index.num_rows, dtype=np.int64))).combine_chunks()


def _one_per_key(index: pa.Table, history: History) -> tuple[np.ndarray, dict[int, str]]:
    """Which rows land (a mask) and why each other row does not (row -> reason): a row with a
    null key never lands; of a key's rows only the last by cursor (ties: the last read) does."""
    key = history.key
    null = np.zeros(index.num_rows, dtype=bool)
    for k in key:
        null |= index.column(k).is_null().to_numpy(zero_copy_only=False)
    reasons = {int(i): f"primary key {'/'.join(key)} is null: an SCD2 history tracks rows by their key, "
                       "so this row cannot be placed; give it a key in the source"
               for i in np.flatnonzero(null)}
    placed = index.filter(pa.array(~null))
    order = placed.sort_by([(NEW_FROM, "ascending"), (ROW, "ascending")]) if history.cursor else placed
    last = last_per_key(order.select(key), key)
    rows = order.column(ROW).to_numpy()
    keep = np.zeros(index.num_rows, dtype=bool)
    keep[rows[last]] = True
    by = f"by {history.cursor} (ties: the last read)" if history.cursor else "read"
    for row in order.filter(pa.array(~last)).select([*key, ROW]).to_pylist():
        named = ", ".join(f"{k}={row[k]!r}" for k in key)
        reasons[row[ROW]] = (f"key {named} appears more than once in this load; an SCD2 load keeps one "
                             f"version per key: the last {by} landed, this row did not")
    return keep, reasons


def _mask(rows: int, at: list[int]) -> np.ndarray:
    """A mask over `rows` rows, True at the places `at`."""
    mask = np.zeros(rows, dtype=bool)
    mask[at] = True
    return mask


def _current(table: DeltaTable, load: pa.Table, history: History, invalidate: bool,
             storage_options: dict[str, str] | None) -> _Found:
    """The current versions this load closes, per data file (a changed key's at its new version's
    valid-from, with `invalidate` a vanished key's at the load's time), and the load's keys whose
    current version stays (same hash). Reads only the files that may hold a current version of a
    load key (with `invalidate`: any current version), and only their key and history columns;
    then joins all of them with the load at once (a join per file would hash the load per file)."""
    key = history.key
    actions = pa.table(table.get_add_actions(flatten=True))
    nulls = f"null_count.{VALID_TO}"
    holds = dict(zip(actions.column("path").to_pylist(), actions.column(nulls).to_pylist()
                     if nulls in actions.column_names else [None] * actions.num_rows))
    near = overlapping(table, key, load.select(key), actions) if load.num_rows else {}
    bytes_of = dict(zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist()))
    dataset = arrow_dataset(table, storage_options)
    fragments: list[ds.Fragment] = []
    sizes: list[int] = []
    versions: list[pa.Table] = []  # current versions: key, hash (null where no load key can be), file, row
    for fragment in dataset.get_fragments():
        if holds.get(fragment.path) == 0:  # every version in it is closed already
            continue
        touched = near.get(fragment.path, (True, None))[0] and load.num_rows > 0
        if not touched and not invalidate:
            continue
        read = fragment.to_table(schema=dataset.schema, columns=[*key, VALID_TO] + ([ROW_HASH] if touched else []))
        if not touched:
            read = read.append_column(ROW_HASH, pa.nulls(read.num_rows, pa.string()))
        numbered = read.append_column(ROW, pa.array(np.arange(read.num_rows, dtype=np.int64)))
        current = numbered.filter(read.column(VALID_TO).is_null()).drop_columns([VALID_TO])
        versions.append(current.append_column(FILE, pa.repeat(pa.scalar(len(fragments), pa.int64()),
                                                               current.num_rows)))
        fragments.append(fragment)
        sizes.append(read.num_rows)
    found = _Found([], np.zeros(load.num_rows, dtype=bool))
    if not versions:
        return found
    current = pa.concat_tables(versions)
    # one join: each current version with its key's row of the load (none: the key vanished)
    offered = load.select([*key, NEW_FROM, NEW_HASH]).append_column(AT, pa.array(np.arange(load.num_rows)))
    joined = current.join(offered, keys=key, join_type="left outer" if invalidate else "inner")
    hits = joined.filter(joined.column(AT).is_valid())
    differs = pc.fill_null(pc.not_equal(hits.column(ROW_HASH), hits.column(NEW_HASH)), True)
    closed = [hits.filter(differs).select([FILE, ROW, NEW_FROM]).rename_columns([FILE, ROW, UNTIL])]
    found.changed_rows = closed[0].num_rows
    found.changed = distinct([hits.filter(differs).select(key)], key)
    found.same[hits.filter(pc.invert(differs)).column(AT).to_numpy()] = True
    if invalidate:
        gone = joined.filter(joined.column(AT).is_null())
        found.vanished = gone.num_rows
        closed.append(gone.select([FILE, ROW]).append_column(UNTIL, pa.repeat(pa.scalar(history.loaded_at, TIME),
                                                                                   gone.num_rows)))
    ends = pa.concat_tables(closed)
    at, rows = ends.column(FILE).to_numpy(), ends.column(ROW).to_numpy()
    until = pc.cast(ends.column(UNTIL), pa.int64()).to_numpy()
    for f in np.unique(at):
        mine = at == f
        path = fragments[f].path
        closing = _Closing(fragments[f], bytes_of.get(path),
                           np.zeros(sizes[f], dtype=bool), np.zeros(sizes[f], dtype=np.int64))
        closing.mask[rows[mine]] = True
        closing.until[rows[mine]] = until[mine]
        found.closings.append(closing)
    return found


def _rewritten(uri: str, dataset: ds.Dataset, closings: list[_Closing], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The rows of the files holding versions to close, those versions' `_hw_valid_to` set, file
    after file, each followed by an empty batch (the writer ends a file there: a rewritten file
    keeps its key bounds)."""
    for closing in closings:
        yield from rewritten(uri, dataset, [closing.fragment], {closing.fragment.path: len(closing.mask)},
                             closing.apply, schema)
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _new_versions(rows: Iterator[pa.RecordBatch], starts: pa.Table) -> Iterator[pa.RecordBatch]:
    """The spooled `rows` that start a version, with their valid-from time and hash (from
    `starts`, row for row) set and no valid-to."""
    done = 0
    for batch in rows:
        n = batch.num_rows
        values = {VALID_FROM: starts.column(NEW_FROM).slice(done, n).combine_chunks(), VALID_TO: pa.nulls(n, TIME),
                  ROW_HASH: starts.column(NEW_HASH).slice(done, n).combine_chunks()}
        done += n
        yield pa.RecordBatch.from_arrays([values.get(f.name, batch.column(i)) for i, f in enumerate(batch.schema)],
                                         schema=batch.schema)


def _sorted(batches: Iterator[pa.RecordBatch], key: list[str], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """`batches` regrouped into chunks of about `FILE_ROWS` rows, each sorted by `key` and followed
    by an empty batch (the writer starts a new file there: each file it makes of a chunk has tight
    key bounds), with memory for one chunk."""
    chunk: list[pa.RecordBatch] = []
    rows = 0
    for batch in itertools.chain(batches, [None]):
        if batch is not None:
            chunk.append(batch)
            rows += batch.num_rows
        if chunk and (batch is None or rows >= FILE_ROWS):
            table = pa.Table.from_batches(chunk, schema)
            yield from table.sort_by([(k, "ascending") for k in key]).to_batches()
            yield pa.RecordBatch.from_pylist([], schema=schema)
            chunk, rows = [], 0


def refuse(rows: pa.Table, reasons: list[str]) -> int:
    """The `settle` of a load with no quarantine: rows left out are an error."""
    if reasons:
        raise SchemaError(f"{rows.num_rows} row(s) cannot land in the history: {reasons[0]}",
                          "land through engine.load.land, which quarantines them")
    return 0
