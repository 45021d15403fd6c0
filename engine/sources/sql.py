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

`write` says what the rows do to the raw table: "append" (the default with a cursor), "replace"
(the default without one; the whole table or query each run, so no cursor) or "merge" (upsert on
`primary_key`, the last row of a key in cursor order winning; with or without a cursor).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import ConfigError, SourceError
from engine.lake import WriteMode
from engine.load.extraction import Extraction
from engine.sources.base import (
    DEFAULT_BATCH_ROWS,
    check_source_name,
    check_write,
    key_columns,
    with_load_columns,
)
from engine.sources.sql_types import (
    arrow_type,
    decode_cursor,
    encode_cursor,
    key_token,
    result_column_types,
    to_arrow,
)

__all__ = ["SqlSource", "arrow_type", "decode_cursor", "encode_cursor", "sql"]

DEFAULT_MAX_BOUNDARY_KEYS = 10_000
Row = Sequence[Any]


@dataclass
class Plan:
    """One incremental read: cursor bounds, the row filter at the bounds, the state to commit."""

    where: list[sa.ColumnElement[bool]]
    keep: Callable[[Row], bool] | None
    state: dict[str, Any]
    planned: str


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

    def __post_init__(self) -> None:
        check_source_name(self.name)
        if (self.table is None) == (self.query is None):
            raise ConfigError(f"source {self.name!r}: give exactly one of table= or query=")
        if self.batch_rows < 1:
            raise ConfigError(f"source {self.name!r}: batch_rows must be at least 1")
        if self.write is None:
            self.write = "append" if self.cursor else "replace"
        check_write(self.name, self.write, self.primary_key)
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
                return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
            except sa.exc.NoSuchTableError as exc:
                raise SourceError(f"source {self.name!r}: no table {self.table!r} at {_safe(self.url)}",
                                  "check table= and the database URL") from exc
        with engine.connect() as conn:  # learn the query's columns without reading its rows
            result = conn.execute(sa.text(f"SELECT * FROM ({self.query}) AS hw_q WHERE 1 = 0"))
            names = list(result.keys())
            types = result_column_types(engine.dialect.name, result.cursor.description)
            result.close()
        columns = (sa.column(n, t) for n, t in zip(names, types or [sa.types.NullType()] * len(names)))
        assert self.query is not None  # a source without a query has a table
        return sa.text(self.query).columns(*columns).subquery("hw_q")

    def _column(self, source: sa.FromClause, name: str, role: str) -> sa.ColumnElement[Any]:
        if name not in source.c:
            raise SourceError(f"source {self.name!r}: {role} column {name!r} not found",
                              f"columns are {', '.join(source.c.keys())}")
        return source.c[name]

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: dt.datetime) -> Extraction:
        try:
            engine = sa.create_engine(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"source {self.name!r}: bad database URL {_safe(self.url)}: {exc}",
                              "use a SQLAlchemy URL such as postgresql+psycopg://user@host/db") from exc
        try:  # until the stream owns the engine, any failure must release its connections
            source = self._selectable(engine)
            for key in self.keys:
                self._column(source, key, "primary key")
            stmt = sa.select(source)
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
            stmt = stmt.where(*plan.where).order_by(col)
            keep, new_state, planned = plan.keep, plan.state, plan.planned
        else:
            keep, new_state = None, {}
            planned = "all rows (no cursor: replaces the raw table)" if self.write == "replace" else \
                "all rows (no cursor: merged on the primary key)"
        types = {c.name: arrow_type(c.type) for c in source.c}
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at)
                   for b in _stream(engine, stmt, types, self.batch_rows, keep))
        return Extraction(batches, new_state, planned, [self.table or "query"],
                          self.write or "replace", self.keys)

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
            if high is None:
                return f"no rows with {self.cursor} > {low}"
            at_high: set[tuple[Any, ...]] | None = None
            if self.keys:
                keys = sa.select(*(source.c[k] for k in self.keys)).where(col == high)
                found = conn.execute(keys.limit(self.max_boundary_keys + 1)).all()
                if 0 < len(found) <= self.max_boundary_keys:  # 0: `=` disagrees with max()
                    at_high = {key_token(r) for r in found}
        if seen is not None and high == low and at_high is not None and at_high <= seen:
            return f"no rows with {self.cursor} > {low} and none new at {low}"
        new_state: dict[str, Any] = {"cursor": encode_cursor(high)}
        if self.keys:
            new_state["boundary_keys"] = None if at_high is None else sorted(at_high, key=str)
        where = [col <= high] + ([above] if above is not None else [])
        planned = (f"rows with {self.cursor} <= {high}" if low is None else
                   f"rows with {self.cursor} in [{low}, {high}], less {len(seen)} landed at {low}"
                   if seen is not None else f"rows with {self.cursor} in ({low}, {high}]")
        return Plan(where, self._keep(low, seen, high, at_high), new_state, planned)

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


def _stream(engine: sa.Engine, stmt: sa.Select[Any], types: dict[str, pa.DataType | None],
            rows: int, keep: Callable[[Row], bool] | None) -> Iterator[pa.RecordBatch]:
    """Batches of at most `rows` rows of `stmt`, read through a server-side cursor."""
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=rows).execute(stmt)
            names = list(result.keys())
            for chunk in result.partitions(rows):
                if keep is not None:
                    chunk = [row for row in chunk if keep(row)]
                    if not chunk:
                        continue
                columns = list(zip(*chunk))
                arrays = [to_arrow(col, types.get(name)) for name, col in zip(names, columns)]
                yield pa.RecordBatch.from_arrays(arrays, names=names)
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url


def sql(name: str, url: str, table: str | None = None, *, query: str | None = None,
        cursor: str | None = None, primary_key: str | list[str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS, write: WriteMode | None = None,
        max_boundary_keys: int = DEFAULT_MAX_BOUNDARY_KEYS) -> SqlSource:
    """A source of rows from a SQL database table or query, incremental by `cursor` if given,
    landed by `write`: "append" (default with a cursor), "replace" (default without one), or
    "merge" on `primary_key`.

    With `primary_key` (a column or a list) and a cursor, rows that share the last landed cursor
    value are neither skipped nor landed twice; see this module's docstring for the exact rule.
    """
    return SqlSource(name, url, table, query, cursor, batch_rows, primary_key,
                     max_boundary_keys=max_boundary_keys, write=write)
