"""SQL sources: a table or a query from any SQLAlchemy URL, read in chunks into Arrow.

With a `cursor` column, each run reads only rows whose cursor lies between the last landed
maximum (exclusive) and the maximum at the start of this run (inclusive). Without one, each run
reads the whole table or query.

`write` says what the rows do to the raw table: "append" (the default with a cursor), "replace"
(the default without one; the whole table or query each run, so no cursor) or "merge" (upsert on
`primary_key`, the last row of a key in cursor order winning; with or without a cursor).
"""
from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import HeadwaterError
from engine.sources.base import DEFAULT_BATCH_ROWS, WRITES, Extraction, check_write, key_columns, with_load_columns

_CODECS = {"datetime": (dt.datetime.isoformat, dt.datetime.fromisoformat),
           "date": (dt.date.isoformat, dt.date.fromisoformat),
           "decimal": (str, decimal.Decimal), "int": (int, int), "float": (float, float),
           "str": (str, str)}


def encode_cursor(value: Any) -> dict[str, Any]:
    """A cursor value as JSON-able state that `decode_cursor` turns back into the same value."""
    kind = {dt.datetime: "datetime", dt.date: "date", decimal.Decimal: "decimal",
            int: "int", float: "float", str: "str"}.get(type(value))
    if kind is None:
        raise HeadwaterError(f"cursor values of type {type(value).__name__} are not supported",
                             "use a timestamp, date, number or string column as cursor")
    return {"type": kind, "value": _CODECS[kind][0](value)}


def decode_cursor(state: dict[str, Any]) -> Any:
    """The cursor value stored by `encode_cursor`."""
    return _CODECS[state["type"]][1](state["value"])


def arrow_type(column_type: sa.types.TypeEngine) -> pa.DataType | None:
    """The Arrow type for a SQLAlchemy column type (None: let Arrow infer it)."""
    try:
        py = column_type.python_type
    except NotImplementedError:
        return None
    if py is dt.datetime:
        return pa.timestamp("us", tz="UTC" if getattr(column_type, "timezone", False) else None)
    if py is decimal.Decimal:
        precision = getattr(column_type, "precision", None)
        scale = getattr(column_type, "scale", None)
        return pa.decimal128(precision, scale or 0) if precision else pa.float64()
    return {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string(),
            dt.date: pa.date32(), bytes: pa.binary()}.get(py)


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
    write: str | None = None  # append | replace | merge; None: append with a cursor, else replace

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise HeadwaterError(f"source {self.name!r}: give exactly one of table= or query=")
        if self.write is None:
            self.write = "append" if self.cursor else "replace"
        check_write(self.name, self.write, self.primary_key)
        if self.write == "replace" and self.cursor:
            raise HeadwaterError(f"source {self.name!r}: write='replace' reads every row, so it takes no cursor",
                                 "drop cursor=, or use write='append' or 'merge'")
        if self.write == "append" and not self.cursor:
            raise HeadwaterError(f"source {self.name!r}: write='append' without a cursor would land "
                                 "every row again on each run", "give cursor=, or use write='replace'")

    def _selectable(self, engine: sa.Engine) -> sa.FromClause:
        if self.table:
            schema, _, name = self.table.rpartition(".")
            try:
                return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
            except sa.exc.NoSuchTableError as exc:
                raise HeadwaterError(f"source {self.name!r}: no table {self.table!r} at {_safe(self.url)}",
                                     "check table= and the database URL") from exc
        with engine.connect() as conn:  # learn the query's columns without reading its rows
            names = list(conn.execute(sa.text(f"SELECT * FROM ({self.query}) AS hw_q WHERE 1 = 0")).keys())
        return sa.text(self.query).columns(*(sa.column(n) for n in names)).subquery("hw_q")

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: dt.datetime) -> Extraction:
        try:
            engine = sa.create_engine(self.url)
            source = self._selectable(engine)
        except sa.exc.ArgumentError as exc:
            raise HeadwaterError(f"source {self.name!r}: bad database URL {_safe(self.url)}: {exc}",
                                 "use a SQLAlchemy URL such as postgresql+psycopg://user@host/db") from exc
        stmt = sa.select(source)
        new_state: dict[str, Any] = {}
        mode = WRITES[self.write or "replace"]
        planned = "all rows (no cursor: replaces the raw table)" if mode == "overwrite" else \
            "all rows (no cursor: merged on the primary key)"
        if self.cursor:
            if self.cursor not in source.c:
                raise HeadwaterError(f"source {self.name!r}: cursor column {self.cursor!r} not found",
                                     f"columns are {', '.join(source.c.keys())}")
            col = source.c[self.cursor]
            low = decode_cursor(state["cursor"]) if "cursor" in state else None
            bound = sa.select(sa.func.max(col))
            if low is not None:
                bound = bound.where(col > low)
            with engine.connect() as conn:
                high = conn.execute(bound).scalar()
            if high is None:
                engine.dispose()
                return Extraction(iter(()), state, f"no rows with {self.cursor} > {low}")
            stmt = stmt.where(col <= high).order_by(col)
            if low is not None:
                stmt = stmt.where(col > low)
            new_state = {"cursor": encode_cursor(high)}
            planned = f"rows with {self.cursor} <= {high}" if low is None else \
                f"rows with {self.cursor} in ({low}, {high}]"
        schema = _schema(source)
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at)
                   for b in _stream(engine, stmt, schema, self.batch_rows))
        return Extraction(batches, new_state, planned, [self.table or "query"], mode,
                          key_columns(self.primary_key))


def _schema(source: sa.FromClause) -> dict[str, pa.DataType | None]:
    return {c.name: arrow_type(c.type) for c in source.c}


def _stream(engine: sa.Engine, stmt: sa.Select, types: dict[str, pa.DataType | None],
            rows: int) -> Iterator[pa.RecordBatch]:
    try:
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=rows).execute(stmt)
            names = list(result.keys())
            for chunk in result.partitions(rows):
                columns = list(zip(*chunk))
                arrays = [pa.array(col, type=types.get(name)) for name, col in zip(names, columns)]
                yield pa.RecordBatch.from_arrays(arrays, names=names)
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url


def sql(name: str, url: str, table: str | None = None, *, query: str | None = None,
        cursor: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
        primary_key: str | list[str] | None = None, write: str | None = None) -> SqlSource:
    """A source of rows from a SQL database table or query, incremental by `cursor` if given,
    landed by `write`: "append" (default with a cursor), "replace" (default without one), or
    "merge" on `primary_key`."""
    return SqlSource(name, url, table, query, cursor, batch_rows, primary_key=primary_key, write=write)
