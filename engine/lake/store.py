"""The lake: Delta tables under one root (local folder or s3://), with state in commit metadata.

Tables are named `raw.<source>` (landed data), `models.<model>` (model outputs),
`quarantine.<source>` (rows that could not be landed, see engine/load/quarantine.py); a bare name
means the model if it exists, else the raw table. Each land or write is one Delta commit,
whose `custom_metadata` carries the run id and the state that belongs with those rows.

A commit may be based on the version its writer read (`based_on=`, see engine/lake/guard.py):
when another run committed to the table since, nothing is committed (ConcurrentRunError).
"""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import Transaction

from engine.errors import ConcurrentRunError, ConfigError
from engine.lake import guard
from engine.lake import write as lake_write
from engine.lake.describe import Description, described_table
from engine.lake.describe import settle as settle_description
from engine.lake.faults import reached
from engine.lake.guard import META_PREFIX, Based
from engine.lake.history import History, history_schema
from engine.lake.merge import merge_load
from engine.lake.scd2 import Settle, load_history, refuse
from engine.lake.storage import (
    arrow_dataset,
    check_bucket,
    delta_options,
    fsspec_options,
    storage_errors,
)
from engine.lake.types import WriteMode, as_delta, conform, delta_mode, delta_schema
from engine.lake.vacuum import check_readable

ZONES = ("raw", "models", "quarantine")
INTERNAL = "_headwater"  # Headwater's own tables (the run manifest), beside the zones
log = logging.getLogger("headwater.lake")


@dataclass(frozen=True)
class Commit:
    """What one land or write produced."""

    table: str
    version: int | None  # None when nothing was committed (no rows)
    rows: int  # for a merge: rows merged, one per key
    inserted: int | None = None  # a merge's new keys (None for appends and overwrites); an SCD2 load's
    updated: int | None = None  # a merge's existing keys whose rows were replaced; an SCD2 load's changed keys
    detail: str = ""  # what the commit did, in words, where rows alone do not say it (an SCD2 load)


class Lake:
    """Delta tables under `root`, read and written with `storage_options` (for s3://: over the
    AWS environment, see `engine.lake.storage.delta_options`)."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        self.root = root.rstrip("/") if "://" in root else str(Path(root).resolve())
        self.storage_options = delta_options(self.root, storage_options)

    # -- naming ---------------------------------------------------------------------------
    def qualify(self, name: str) -> str:
        """`zone.table` for a user-given name (a bare name: the model if it exists, else raw)."""
        zone, _, table = name.partition(".")
        if table and zone in ZONES + (INTERNAL,):
            return name
        if self.exists(f"models.{name}") or not self.exists(f"raw.{name}"):
            return f"models.{name}"
        return f"raw.{name}"

    def uri(self, name: str) -> str:
        """The Delta table URI of a qualified name; ConfigError when the name would reach outside
        its zone's folder (a separator, `.` or `..`, or on a local lake a path that resolves, say
        through a symlink, elsewhere)."""
        zone, _, table = self.qualify(name).partition(".")
        outside = (zone not in ZONES + (INTERNAL,) or table in ("", ".", "..")
                   or any(c in table for c in "/\\\0"))
        if not outside and ("://" not in self.root or self.root.startswith("file://")):
            folder = (Path(self.root.removeprefix("file://")) / zone).resolve()
            resolved = (folder / table).resolve()
            outside = resolved == folder or not resolved.is_relative_to(folder)
        if outside:
            raise ConfigError(f"lake table name {name!r} does not name a table inside the lake's "
                              f"{zone} folder", "write it as zone.<name> (raw, models, quarantine), with a "
                              "name of letters, digits and underscores, as source and model names are")
        return f"{self.root}/{zone}/{table}"

    def exists(self, name: str) -> bool:
        zone, _, table = name.partition(".")
        uri = f"{self.root}/{zone}/{table}"
        with storage_errors(f"cannot read the lake at {uri}"):
            return DeltaTable.is_deltatable(uri, self.storage_options)

    def tables(self, internal: bool = False) -> list[str]:
        """Qualified names of every table in the lake; with `internal`, Headwater's own too
        (`_headwater.runs`, the run manifest) after the others."""
        zones = ZONES + (INTERNAL,) if internal else ZONES
        if "://" in self.root and not self.root.startswith("file://"):
            import fsspec

            with storage_errors(f"cannot list the lake at {self.root}"):
                fs, base = fsspec.core.url_to_fs(self.root, **fsspec_options(self.storage_options or {}))
                fs.invalidate_cache()  # tables written since an earlier listing must show
                check_bucket(fs, base)
                listing = {z: [Path(p).name for p in fs.ls(f"{base}/{z}", detail=False)]
                           for z in zones if fs.exists(f"{base}/{z}")}
        else:
            root = Path(self.root.removeprefix("file://"))
            listing = {z: sorted(p.name for p in (root / z).iterdir() if p.is_dir())
                       for z in zones if (root / z).is_dir()}
        return [f"{z}.{t}" for z, names in listing.items() for t in sorted(names)
                if self.exists(f"{z}.{t}")]

    # -- reading --------------------------------------------------------------------------
    def table(self, name: str, version: int | None = None, *, readable: bool = True) -> DeltaTable:
        """The DeltaTable for `name`, at `version` (latest when None). A version whose data files
        VACUUM deleted is refused with the oldest version that can still be read, unless only its
        log is wanted (`readable=False`: which files it had, its schema)."""
        uri = self.uri(name)
        try:
            with storage_errors(f"cannot read the lake table at {uri}"):
                table = DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError as exc:
            raise ConfigError(f"no lake table {self.qualify(name)!r} at {uri}",
                              "run the pipeline first, or check the name with `headwater show`") from exc
        if version is None or version == table.version():
            return table
        latest = table.version()
        try:
            if not 0 <= version < latest:
                raise ValueError(version)
            with storage_errors(f"cannot read the lake table at {uri}"):
                current = {f.path for f in arrow_dataset(table, self.storage_options).get_fragments()} \
                    if readable else set()
                table.load_as_version(version)
        except (ValueError, DeltaError) as exc:  # DeltaError: its log no longer reaches that far back
            raise ConfigError(f"table {self.qualify(name)!r} has no version {version} "
                              f"(its versions end at {latest})",
                              "see `headwater history` for the versions it has") from exc
        if not readable:
            return table
        check_readable(table, self.qualify(name), uri, current, self.storage_options)
        return table

    def version(self, name: str) -> int | None:
        """The latest version of `name`, or None when it does not exist yet."""
        return self.table(name).version() if self.exists(self.qualify(name)) else None

    def read(self, name: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """The rows of `name` at `version` as an Arrow table."""
        return self.dataset(name, version).to_table(columns=columns)

    def dataset(self, name: str, version: int | None = None) -> ds.Dataset:
        """The rows of `name` at `version` as a pyarrow dataset (filters and projections push down)."""
        return arrow_dataset(self.table(name, version), self.storage_options)

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits of `name`, newest first, with Headwater's metadata decoded."""
        out = []
        for commit in self.table(name).history(limit):
            entry = {k: v for k, v in commit.items() if not k.startswith(META_PREFIX)}
            for key, value in commit.items():
                if key.startswith(META_PREFIX):
                    entry[key.removeprefix(META_PREFIX)] = json.loads(value)
            out.append(entry)
        return out

    def metadata(self, name: str) -> dict[str, Any]:
        """Headwater metadata of the newest commit that has any ({} for a new table)."""
        if not self.exists(self.qualify(name)):
            return {}
        newest = self.history(name, 1)  # the usual case: one commit read, not the whole log
        if newest and "run_id" in newest[0]:
            return newest[0]
        for commit in self.history(name):
            if "run_id" in commit:
                return commit
        return {}

    def state(self, name: str) -> dict[str, Any]:
        """The source state committed with the latest landing of `name` ({} when none)."""
        return self.metadata(name).get("state", {})

    def read_metadata(self, name: str) -> tuple[int | None, dict[str, Any]]:
        """(version, Headwater metadata as of that version) of `name`, read consistently: a
        commit that lands while it is read makes it read again. (None, {}) for a new table.
        A commit based on that version (`based_on=`) fails if another run commits first."""
        for _ in range(10):
            before = self.version(name)
            if before is None:
                return None, {}
            meta = self.metadata(name)
            if self.version(name) == before:
                return before, meta
        raise ConcurrentRunError(f"{self.qualify(name)} changed ten times while this run read its state",
                                 "runs of one pipeline must not overlap; run again once the others are done")

    # -- writing --------------------------------------------------------------------------
    def land(self, name: str, batches: Iterable[pa.RecordBatch], *, run_id: str,
             state: dict[str, Any], mode: WriteMode = "append", origin: str = "",
             primary_key: list[str] | None = None, schema: pa.Schema | None = None,
             meta: dict[str, Any] | None = None, commit_empty: Callable[[], bool] | None = None,
             based_on: Based | None = None, describe: Description | None = None,
             history: History | None = None, settle: Settle | None = None) -> Commit:
        """Stream `batches` into `name` as one commit that also records `state` and `run_id`.

        `mode` is "append", "replace", "merge" (upsert on the columns `primary_key`, the last row
        of each key in the load winning: see `engine.lake.merge`) or "scd2" (every version of each
        key kept as `history` says, the rows it leaves out handed to `settle` before it commits:
        see `engine.lake.scd2`; it commits only what changed). Appending or merging no
        rows commits nothing, so a run with nothing new leaves the table (and its state) as it
        was, unless `commit_empty()` says otherwise once the stream is exhausted (rows were
        quarantined: the state must still be committed); overwriting an existing table with no
        rows empties it. `schema` is the planned schema (engine/load/schema.py); without it the
        first batch's schema is used. `meta` goes into the commit's metadata too. With
        `based_on`, the commit is written on that version of the table and fails with
        ConcurrentRunError, committing nothing, if another run committed to it since. `describe`
        (a model's description and column comments) is set on the table once it is committed.
        """
        it = iter(batches)
        first = next((b for b in it if b.num_rows), None)
        snapshot = self._snapshot(name, based_on)
        current = None if snapshot is None else pa.schema(snapshot.schema().to_arrow())
        if first is None and mode == "scd2" and (schema is not None or current is not None):
            first = pa.RecordBatch.from_pylist([], schema=schema if schema is not None else current)  # keys may vanish
        if first is None:
            if commit_empty is not None and commit_empty():
                mode = "append" if mode in ("merge", "scd2") else mode  # nothing to merge: commit the state
                first = pa.RecordBatch.from_pylist([], schema=schema if schema is not None else
                                                   current if current is not None else pa.schema([]))
            elif mode != "replace" or snapshot is None or not self._has_rows(snapshot):
                return Commit(self.qualify(name), None, 0)
            else:
                first = pa.RecordBatch.from_pylist([], schema=current)
        schema = delta_schema(schema if schema is not None else first.schema)
        if current is not None and mode != "replace":
            schema = pa.schema(list(current) + [f for f in schema if f.name not in current.names])
        if mode == "scd2":
            schema = history_schema(schema)
        counted = [0]
        failure: list[BaseException] = []

        def stream() -> Iterator[pa.RecordBatch]:
            try:
                for batch in itertools.chain([first], it):
                    if batch.num_rows or batch is first:
                        counted[0] += batch.num_rows
                        yield conform(batch, schema, origin or name)
                reached("before_commit")
            except BaseException as exc:  # delta-rs wraps it; keep the original to re-raise
                failure.append(exc)
                raise

        commit_meta = {"run_id": run_id, "state": state, **(meta or {})}
        try:
            with self._guarded(name, based_on):
                if mode == "merge":
                    merged = merge_load(self.uri(name), pa.RecordBatchReader.from_batches(schema, stream()),
                                        schema, primary_key or [], table=snapshot,
                                        commit_properties=_props(commit_meta, self._txn(name, based_on)),
                                        storage_options=self.storage_options, origin=origin or name)
                elif mode == "scd2":
                    if history is None:
                        raise ConfigError(f"{self.qualify(name)}: an SCD2 load needs history=", "pass a History")
                    kept = load_history(self.uri(name), stream(), schema, history, table=snapshot,
                                        commit_properties=_props(commit_meta, self._txn(name, based_on)),
                                        storage_options=self.storage_options, settle=settle or refuse,
                                        state_changed=self.state(name) != json.loads(json.dumps(state, default=str)),
                                        origin=origin or name)
                else:
                    version = self._write(name, stream(), schema, mode, commit_meta, based_on, snapshot)
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        reached("after_commit")
        settle_description(self.uri(name), self.storage_options, describe)
        if mode == "merge":
            return Commit(self.qualify(name), merged.version, merged.rows, merged.inserted, merged.updated)
        if mode == "scd2":
            return Commit(self.qualify(name), kept.version, kept.rows, kept.new, kept.changed, kept.describe())
        return Commit(self.qualify(name), version, counted[0])

    def write(self, name: str, table: pa.Table, *, run_id: str, meta: dict[str, Any],
              based_on: Based | None = None, describe: Description | None = None) -> Commit:
        """Replace the contents of `name` with `table` in one commit carrying `meta` (guarded by
        `based_on` as in `land`) and `describe`'s column comments (its description too, for a new
        table; see engine/lake/describe.py)."""
        table = described_table(as_delta(table), describe)
        version = self._commit(name, table, "replace", {"run_id": run_id, **meta}, based_on,
                               describe.table if describe is not None else None)
        settle_description(self.uri(name), self.storage_options, describe)
        return Commit(self.qualify(name), version, table.num_rows)

    def write_append(self, name: str, table: pa.Table, *, run_id: str, meta: dict[str, Any],
                     based_on: Based | None = None, describe: Description | None = None) -> Commit:
        """Append `table` to `name` in one commit carrying `meta` (guarded by `based_on` as in
        `land`); then `describe` is set as in `land`."""
        version = self._commit(name, table, "append", {"run_id": run_id, **meta}, based_on)
        settle_description(self.uri(name), self.storage_options, describe)
        return Commit(self.qualify(name), version, table.num_rows)

    def _commit(self, name: str, table: pa.Table, mode: WriteMode, meta: dict[str, Any],
                based_on: Based | None, description: str | None = None) -> int:
        with self._guarded(name, based_on):
            snapshot = self._snapshot(name, based_on)
            return self._write(name, table.to_batches(), table.schema, mode, meta, based_on, snapshot, description)

    def _write(self, name: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, mode: WriteMode,
               meta: dict[str, Any], based_on: Based | None, table: DeltaTable | None,
               description: str | None = None) -> int:
        """Append to or replace `name` (`table`: its snapshot to write on, None for a new table)
        with `batches` of `schema` in one commit carrying `meta` (and, for a new table,
        `description`): in parallel (engine/lake/write.py) where `fast_path` allows, else by
        delta-rs' writer."""
        uri = self.uri(name)
        txn = self._txn(name, based_on)
        with storage_errors(f"cannot write the lake table at {uri}"):
            if lake_write.fast_path(uri, table, schema, mode):
                actions, rows = lake_write.write_files(uri, batches, schema, storage_options=self.storage_options,
                                                       target=lake_write.target_file_size(table))
                # delta-rs' operationMetrics count rows only for its own writer: say it here
                props = _props({**meta, "rows_added": rows}, txn)
                version = lake_write.commit(uri, table, actions, mode, schema, props, self.storage_options,
                                            create="error" if based_on is not None else "append",
                                            description=description)
                log.debug("%s: committed version %d (%s, %d files by the parallel writer)", name, version,
                          mode, len(actions))
                return version
            creating = table is None and based_on is not None  # mode "error": a run that created it meanwhile wins
            data = pa.RecordBatchReader.from_batches(schema, iter(batches))
            write_deltalake(table if table is not None else uri, data,
                            mode="error" if creating else delta_mode(mode),
                            schema_mode=None if creating else "overwrite" if mode == "replace" else "merge",
                            description=description if table is None else None,
                            storage_options=self.storage_options, commit_properties=_props(meta, txn))
            version = DeltaTable(uri, storage_options=self.storage_options).version()
            log.debug("%s: committed version %d (%s, by delta-rs' writer)", name, version, mode)
            return version

    # -- guarded commits ------------------------------------------------------------------
    def based(self, name: str) -> Based:
        """The table's version now, for a commit based on it (None: the table does not exist)."""
        return Based(self.version(name))

    def _has_rows(self, table: DeltaTable) -> bool:
        return bool(arrow_dataset(table, self.storage_options).count_rows())

    def check_unchanged(self, name: str, based_on: Based) -> None:
        """Raise ConcurrentRunError if `name` is no longer at `based_on`'s version (a check before
        committing to another table; the commit to `name` itself is guarded)."""
        if self.version(name) != based_on.version:
            raise self._conflict(name, based_on)

    def _snapshot(self, name: str, based_on: Based | None) -> DeltaTable | None:
        """The table a commit is written on: at `based_on`'s version when given, else the
        latest; None for a table that does not exist (yet)."""
        if based_on is None:
            return self.table(name) if self.exists(self.qualify(name)) else None
        if based_on.version is None:
            if self.exists(self.qualify(name)):
                raise self._conflict(name, based_on)
            return None
        return self.table(name, based_on.version)

    def _txn(self, name: str, based_on: Based | None) -> Transaction | None:
        return guard.txn(self.qualify(name), based_on)

    def _guarded(self, name: str, based_on: Based | None) -> AbstractContextManager[None]:
        return guard.guarded(self.qualify(name), based_on, lambda: self.exists(self.qualify(name)))

    def _conflict(self, name: str, based_on: Based) -> ConcurrentRunError:
        return guard.conflict(self.qualify(name), based_on)


def _props(meta: dict[str, Any], txn: Transaction | None = None) -> CommitProperties:
    """Commit properties that put `meta` into the commit's `custom_metadata`, JSON-encoded, and
    carry `txn` when given."""
    return guard.properties({META_PREFIX + k: json.dumps(v, default=str) for k, v in meta.items()}, txn)
