"""SQL sources: a table or a query from any SQLAlchemy URL, streamed in bounded Arrow batches.

Rows are read through a server-side cursor (`stream_results`; a named cursor on PostgreSQL),
so the client holds one batch at a time, never the table.

With a `cursor` column, each run appends only new rows, up to `high`, the cursor's maximum
when the run starts; the state committed with the rows says what was landed:

* with `primary_key`: rows with `low <= cursor <= high`, where `low` is the previous `high`,
  less the rows at `low` whose keys the previous run landed. The keys of the rows at `high`
  go into the state, so a row inserted later with the same cursor value as the last landed
  one still lands, once. If more than `max_boundary_keys` rows share `high`, their keys are
  not kept and the next run falls back to the strict rule below.
* without: rows with `low < cursor <= high`. A row inserted after a run with a cursor value
  equal to that run's `high` (same `updated_at`) is never read; give a primary key, or a
  cursor that only grows.

Either way, a row committed late with a cursor *below* `high` (a long transaction) is missed:
use a cursor set at commit time, or reload. Without a cursor, each run reads the whole table
or query and replaces the raw table with it.

A row whose cursor is NULL cannot be placed by an incremental load: such rows are quarantined
(with their values and why) by the first run that sees them, and again by any run that finds
their number changed (`null_cursor_rows` in the state); once given a cursor value they land.
A value the driver or the column type cannot read (text in an INTEGER column of SQLite, a date
in year 0) quarantines its row; so does one Delta cannot store (a NUMERIC wider than 38
digits). Rows in = rows landed + rows quarantined, for each run. Column names follow the file
sources' rules (`engine/load/schema.py`): a source whose columns break them is refused.

A SQLite URL's relative path (`sqlite:///app.sqlite`) starts at the pipeline file's folder
(`base_dir`), and a database file that is not there is an error naming it (SQLite would
quietly create an empty one).

`write` says what the rows do to the raw table: "append" (the default with a cursor), "replace"
(the default without one; the whole table or query each run, so no cursor), "merge" (upsert on
`primary_key`, the last row of a key in cursor order winning; with or without a cursor) or "scd2"
(every version of each key kept, engine/lake/scd2.py; without a cursor the whole table or query is
read in key order and compared with the current versions).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import ConfigError, SourceError
from engine.lake import WriteMode
from engine.lake.history import HardDeletes, History
from engine.load.extraction import Extraction
from engine.load.quarantine import Quarantine
from engine.load.schema import LOAD_ORIGIN, SchemaPlan, names_problem
from engine.sources.base import (
    DEFAULT_BATCH_ROWS,
    check_history,
    check_source_name,
    check_write,
    key_columns,
    resolve_local,
    where_relative,
    with_load_columns,
)
from engine.sources.base import (
    LOAD_SCHEMA as SOURCE_LOAD_SCHEMA,
)
from engine.sources.sql_read import Read, Row
from engine.sources.sql_types import (
    Tolerant,
    arrow_type,
    decode_cursor,
    encode_cursor,
    key_token,
    result_column_types,
)

__all__ = ["SqlSource", "arrow_type", "decode_cursor", "encode_cursor", "sql"]

DEFAULT_MAX_BOUNDARY_KEYS = 10_000
LOAD_SCHEMA = pa.schema([f for f in SOURCE_LOAD_SCHEMA if f.name != "_hw_source_file"])  # no file


@dataclass
class Plan:
    """One incremental read: cursor bounds, the row filter at the bounds, the state to commit."""

    where: list[sa.ColumnElement[bool]]
    keep: Callable[[Row], bool] | None
    state: dict[str, Any]
    planned: str
    nulls: bool = False  # the rows whose cursor is NULL are read too (to be quarantined)


@dataclass
class SqlSource:
    """Rows of `table` (or of `query`) at `url`, incremental when `cursor` is set."""

    name: str
    url: str
    table: str | None = None
    query: str | None = None
    cursor: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    primary_key: str | list[str] | None = None
    max_boundary_keys: int = DEFAULT_MAX_BOUNDARY_KEYS
    write: WriteMode | None = None  # None: append with a cursor, else replace
    base_dir: Path | None = None  # where a SQLite URL's relative path starts (the pipeline file's folder)
    track: list[str] | None = None  # write="scd2": the columns whose change makes a version (None: all)
    hard_deletes: HardDeletes | None = None  # write="scd2": None is "invalidate" without a cursor

    def __post_init__(self) -> None:
        check_source_name(self.name)
        if (self.table is None) == (self.query is None):
            raise ConfigError(f"source {self.name!r}: give exactly one of table= or query=")
        if self.batch_rows < 1:
            raise ConfigError(f"source {self.name!r}: batch_rows must be at least 1")
        if self.write is None:
            self.write = "append" if self.cursor else "replace"
        check_write(self.name, self.write, self.primary_key)
        self.hard_deletes = check_history(self.name, self.write, cursor=self.cursor, track=self.track,
                                          hard_deletes=self.hard_deletes)
        if self.write == "replace" and self.cursor:
            raise ConfigError(f"source {self.name!r}: write='replace' reads every row, so it takes no cursor",
                              "drop cursor=, or use write='append' or 'merge'")
        if self.write == "append" and not self.cursor:
            raise ConfigError(f"source {self.name!r}: write='append' without a cursor would land "
                              "every row again on each run", "give cursor=, or use write='replace'")

    @property
    def keys(self) -> list[str]:
        """The primary key's columns ([] when none is given)."""
        return key_columns(self.primary_key)

    def _selectable(self, engine: sa.Engine) -> sa.FromClause:
        if self.table:
            schema, _, name = self.table.rpartition(".")
            try:
                table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
                self._check_names([c.name for c in table.c])
                return table
            except sa.exc.NoSuchTableError as exc:
                raise SourceError(f"source {self.name!r}: no table {self.table!r} at {_safe(self.url)}",
                                  "check table= and the database URL") from exc
        with engine.connect() as conn:  # learn the query's columns without reading its rows
            result = conn.execute(sa.text(f"SELECT * FROM ({self.query}) AS hw_q WHERE 1 = 0"))
            names = list(result.keys())
            types = result_column_types(engine.dialect.name, result.cursor.description)
            self._check_names([str(c[0]) for c in result.cursor.description or ()])  # as the database names them
            result.close()
        columns = (sa.column(n, t) for n, t in zip(names, types or [sa.types.NullType()] * len(names)))
        assert self.query is not None  # a source without a query has a table
        return sa.text(self.query).columns(*columns).subquery("hw_q")

    def _check_names(self, names: list[str]) -> None:
        why = names_problem(names)
        if why:
            what = "query" if self.query else f"table {self.table!r}"
            raise SourceError(f"source {self.name!r} ({what}): {why}",
                              "select the columns under other names (query= with AS)")

    def _column(self, source: sa.FromClause, name: str, role: str) -> sa.ColumnElement[Any]:
        if name not in source.c:
            raise SourceError(f"source {self.name!r}: {role} column {name!r} not found",
                              f"columns are {', '.join(source.c.keys())}")
        return source.c[name]

    def database_url(self) -> sa.URL:
        """`url` parsed, a SQLite file's relative path made absolute against `base_dir`; raises
        SourceError when that file is not there (SQLite would create an empty one)."""
        try:
            url = sa.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"source {self.name!r}: bad database URL {_safe(self.url)}: {exc}",
                              "use a SQLAlchemy URL such as postgresql+psycopg://user@host/db") from exc
        database = url.database or ""
        if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
            return url  # a server, an in-memory database, or a SQLite URI (file:...?uri=true)
        path = resolve_local(database, self.base_dir)
        if not Path(path).is_file():
            relative = "" if Path(database).expanduser().is_absolute() else \
                f"; a relative path starts at {where_relative(self.base_dir)}"
            raise SourceError(f"source {self.name!r}: no SQLite database file at {path} ({_safe(self.url)})",
                              f"check the path in url={relative}")
        return url.set(database=path)

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: dt.datetime) -> Extraction:
        url = self.database_url()
        try:
            engine = sa.create_engine(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"source {self.name!r}: bad database URL {_safe(self.url)}: {exc}",
                              "use a SQLAlchemy URL such as postgresql+psycopg://user@host/db") from exc
        try:  # until the stream owns the engine, any failure must release its connections
            source = self._selectable(engine)
            for key in self.keys:
                self._column(source, key, "primary key")
            failures = [0]  # values the column types could not read, counted by `Tolerant`
            stmt = sa.select(*(sa.type_coerce(c, Tolerant(c.type, failures)).label(c.name) for c in source.c))
            if self.cursor:
                col = self._column(source, self.cursor, "cursor")
                plan = self._plan(engine, source, col, state)
        except BaseException:
            engine.dispose()
            raise
        if self.cursor:
            if isinstance(plan, str):
                engine.dispose()
                return Extraction(iter(()), state, plan, [self.table or "query"])
            where = sa.and_(*plan.where)
            stmt = stmt.where(sa.or_(where, col.is_(None)) if plan.nulls else where).order_by(col)
            keep, new_state, planned = plan.keep, plan.state, plan.planned
            nulls = plan.nulls  # only then can a row with a NULL cursor be read
        else:
            keep, new_state, nulls = None, {}, False
            planned = "all rows (no cursor: " + {"replace": "replaces the raw table)", "merge": "merged on the "
                                                 "primary key)"}.get(self.write or "", "compared with the history)")
            if self.write == "scd2":  # in key order: the history's files then hold key ranges
                stmt = stmt.order_by(*(source.c[k] for k in self.keys))
        types = {c.name: arrow_type(c.type) for c in source.c}
        quarantine = Quarantine(self.name, run_id, loaded_at)
        known = pa.schema([(n, t) for n, t in types.items() if t is not None])
        # with every type known, a run that quarantines all it reads can still create the table
        schema = SchemaPlan(self.name, [(f"source {self.name!r}", known), (LOAD_ORIGIN, LOAD_SCHEMA)]) \
            if len(known) == len(types) else None
        read = Read(f"table {self.table}" if self.table else "query", types, self.batch_rows, keep,
                    quarantine, failures, self.cursor if nulls else None)
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at) for b in read.stream(engine, stmt))
        history = History(self.keys, loaded_at, self.track, self.cursor, self.hard_deletes or "ignore") \
            if self.write == "scd2" else None
        return Extraction(batches, new_state, planned, [self.table or "query"],
                          self.write or "replace", self.keys, history, plan=schema, quarantine=quarantine)

    def _plan(self, engine: sa.Engine, source: sa.FromClause, col: sa.ColumnElement[Any],
              state: dict[str, Any]) -> Plan | str:
        """The bounds of this run's read, or a line saying there is nothing new."""
        low = decode_cursor(state["cursor"]) if "cursor" in state else None
        seen: set[tuple[Any, ...]] | None = None
        if self.keys and low is not None and state.get("boundary_keys") is not None:
            seen = {tuple(k) for k in state["boundary_keys"]}
        above = (col >= low if seen is not None else col > low) if low is not None else None
        bound = sa.select(sa.func.max(col))
        with engine.connect() as conn:
            high = conn.execute(bound if above is None else bound.where(above)).scalar()
            nulls = conn.execute(sa.select(sa.func.count()).where(col.is_(None)).select_from(source)).scalar() or 0
            new_nulls = nulls != state.get("null_cursor_rows", 0) and nulls > 0
            if high is None and not new_nulls:
                return f"no rows with {self.cursor} > {low}"
            if high is None:  # only NULL-cursor rows to read: the bounds stay
                kept = {k: v for k, v in state.items() if k != "null_cursor_rows"}
                return Plan([sa.false()], None, {**kept, "null_cursor_rows": nulls},
                            f"{nulls} row(s) with a NULL {self.cursor}", nulls=True)
            at_high: set[tuple[Any, ...]] | None = None
            if self.keys:
                keys = sa.select(*(source.c[k] for k in self.keys)).where(col == high)
                found = conn.execute(keys.limit(self.max_boundary_keys + 1)).all()
                if 0 < len(found) <= self.max_boundary_keys:  # 0: `=` disagrees with max()
                    at_high = {key_token(r) for r in found}
        if seen is not None and high == low and at_high is not None and at_high <= seen and not new_nulls:
            return f"no rows with {self.cursor} > {low} and none new at {low}"
        new_state: dict[str, Any] = {"cursor": encode_cursor(high)}
        if nulls:
            new_state["null_cursor_rows"] = nulls
        if self.keys:
            new_state["boundary_keys"] = None if at_high is None else sorted(at_high, key=str)
        where = [col <= high] + ([above] if above is not None else [])
        planned = (f"rows with {self.cursor} <= {high}" if low is None else
                   f"rows with {self.cursor} in [{low}, {high}], less {len(seen)} landed at {low}"
                   if seen is not None else f"rows with {self.cursor} in ({low}, {high}]")
        if new_nulls:
            planned += f", and {nulls} row(s) with a NULL {self.cursor}"
        return Plan(where, self._keep(low, seen, high, at_high), new_state, planned, nulls=new_nulls)

    def _keep(self, low: Any, seen: set[tuple[Any, ...]] | None, high: Any,
              at_high: set[tuple[Any, ...]] | None) -> Callable[[Row], bool] | None:
        """Which rows at the bounds to land: none seen at `low`; at `high`, only the planned keys
        (a row inserted at `high` after planning lands next run, as its key is not in the state)."""
        if seen is None and at_high is None:
            return None
        positions = None  # column positions, learnt from the first row's keys

        def keep(row: Row) -> bool:
            nonlocal positions
            if positions is None:
                names = list(row._fields)  # type: ignore[attr-defined]
                positions = (names.index(self.cursor), [names.index(k) for k in self.keys])
            value = row[positions[0]]
            if seen is not None and value == low and key_token([row[i] for i in positions[1]]) in seen:
                return False
            if at_high is not None and value == high:
                return key_token([row[i] for i in positions[1]]) in at_high
            return True

        return keep


def _safe(url: str) -> str:
    """`url` without its password (a URL SQLAlchemy cannot parse: its scheme only)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    except sa.exc.ArgumentError:
        return url.partition("://")[0] + "://…"


def sql(name: str, url: str, table: str | None = None, *, query: str | None = None,
        cursor: str | None = None, primary_key: str | list[str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS, write: WriteMode | None = None,
        max_boundary_keys: int = DEFAULT_MAX_BOUNDARY_KEYS, track: list[str] | None = None,
        hard_deletes: HardDeletes | None = None) -> SqlSource:
    """A source of rows from a SQL database table or query, incremental by `cursor` if given,
    landed by `write`: "append" (default with a cursor), "replace" (default without one),
    "merge" on `primary_key`, or "scd2": every version of each key, changes found by a hash of
    the `track` columns (default: all), keys gone from a full extract closed unless
    `hard_deletes="ignore"` (the default, and the only choice, with a cursor).

    With `primary_key` (a column or a list) and a cursor, rows that share the last landed cursor
    value are neither skipped nor landed twice; see this module's docstring for the exact rule.
    """
    return SqlSource(name, url, table, query, cursor, batch_rows, primary_key,
                     max_boundary_keys=max_boundary_keys, write=write, track=track, hard_deletes=hard_deletes)
