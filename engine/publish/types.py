"""The Arrow → SQL type mapping every warehouse shares, and the rows to publish (`Rows`): a
plain Arrow schema and its batches, from a whole table or a stream of record batches.

"Plain" Arrow types are the ones a warehouse stores: dictionaries decoded, all-null columns as
strings, views as their ordinary types, timestamps in microseconds and tz-aware ones in UTC.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import WarehouseError


def plain_type(t: pa.DataType) -> pa.DataType:
    """The type a column of Arrow type `t` has on its way into a warehouse."""
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    if pa.types.is_null(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", "UTC" if t.tz is not None else None)
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field's type made plain (names, nullability and order kept)."""
    return pa.schema([f.with_type(plain_type(f.type)) for f in schema])


def is_nested(t: pa.DataType) -> bool:
    """Whether Arrow type `t` is a list, struct or map (native on DuckDB, JSON elsewhere)."""
    return pa.types.is_nested(plain_type(t))


def is_binary(t: pa.DataType) -> bool:
    """Whether Arrow type `t` holds bytes."""
    t = plain_type(t)
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def sql_type(t: pa.DataType, nested: sa.types.TypeEngine | None = None) -> sa.types.TypeEngine:
    """The SQLAlchemy type a column of Arrow type `t` is stored as; lists, structs and maps
    as `nested` (JSON text by default), types with no SQL counterpart as text."""
    t = plain_type(t)
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_integer(t):
        if t.bit_width < 32 or t == pa.int32():
            return sa.Integer()
        return sa.Numeric(20, 0) if t == pa.uint64() else sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Double()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return sa.Text()
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=t.tz is not None)
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_time(t):
        return sa.Time()
    if pa.types.is_decimal(t):
        return sa.Numeric(t.precision, t.scale)
    if is_binary(t):
        return sa.LargeBinary()
    if pa.types.is_nested(t) and nested is not None:
        return nested
    return sa.Text()


def is_json(t: pa.DataType) -> bool:
    """Whether a column of Arrow type `t` is stored as JSON text outside DuckDB."""
    t = plain_type(t)
    return isinstance(sql_type(t), sa.Text) and not (pa.types.is_string(t) or pa.types.is_large_string(t))


def sql_columns(schema: pa.Schema, nested: sa.types.TypeEngine | None = None) -> list[sa.Column]:
    """SQLAlchemy columns for an Arrow schema (NOT NULL where the Arrow field is non-nullable)."""
    return [sa.Column(f.name, sql_type(f.type, nested), nullable=f.nullable) for f in schema]


def json_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of `array` as JSON text (null stays null): a map as an object, values JSON
    lacks (decimals, dates, …) as strings."""
    values = array.to_pylist()
    if pa.types.is_map(array.type):
        values = [None if v is None else dict(v) for v in values]
    return pa.array([None if v is None else json.dumps(v, default=str, ensure_ascii=False)
                     for v in values], pa.string())


def hex_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each bytes value of `array` as PostgreSQL's hex text (`\\x00ff`), null stays null."""
    return pa.array([None if v is None else "\\x" + v.hex() for v in array.to_pylist()], pa.string())


def sql_rows(batch: pa.RecordBatch, max_rows: int) -> Iterator[list[dict[str, Any]]]:
    """The rows of a plain `batch` as Python dicts ready to bind, at most `max_rows` at a time;
    nested values as JSON text."""
    for part in (batch.slice(i, max_rows) for i in range(0, batch.num_rows, max_rows)):
        for i, field in enumerate(part.schema):
            if is_json(field.type):
                part = part.set_column(i, field.with_type(pa.string()), json_text(part.column(i)))
        yield part.to_pylist()


def rows_to_arrow(names: list[str], rows: list[Any]) -> pa.Table:
    """Arrow table from DB-API rows; a column whose values don't share one type becomes text."""
    arrays = []
    for i in range(len(names)):
        values = [row[i] for row in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


class Rows:
    """The rows of one publish: `schema` (plain) and the data, read once, counted as it goes.

    A `pa.Table` stays whole (so DuckDB can scan it in parallel); a `pa.RecordBatchReader` is
    streamed a batch at a time and never held whole."""

    def __init__(self, data: pa.Table | pa.RecordBatchReader) -> None:
        if not isinstance(data, (pa.Table, pa.RecordBatchReader)):
            raise WarehouseError(f"cannot publish a {type(data).__name__}",
                                 "pass a pyarrow.Table or a pyarrow.RecordBatchReader")
        self._data: pa.Table | pa.RecordBatchReader | None = data
        self.schema = plain_schema(data.schema)
        # cast to nullable fields, so a null in a NOT NULL column is the database's error to report
        self._cast = pa.schema([f.with_nullable(True) for f in self.schema])
        self.count = 0  # rows handed out so far

    def _take(self) -> pa.Table | pa.RecordBatchReader:
        data, self._data = self._data, None
        if data is None:
            raise RuntimeError("the rows of a publish can be read only once")
        return data

    def batches(self, max_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """The plain batches, each at most `max_rows` rows when given."""
        data = self._take()
        source = data.to_batches(max_chunksize=max_rows) if isinstance(data, pa.Table) else data
        for batch in source:
            batch = batch.cast(self._cast, safe=False)  # ns → us truncates, as the lake does
            for start in range(0, batch.num_rows, max_rows or max(batch.num_rows, 1)):
                part = batch.slice(start, max_rows) if max_rows else batch
                self.count += part.num_rows
                yield part

    def arrow(self) -> pa.Table | pa.RecordBatchReader:
        """The plain data as Arrow for a scan: the whole table if one was given, else a reader."""
        data = self._take()
        if isinstance(data, pa.Table):
            self.count = data.num_rows
            return data.cast(self._cast, safe=False)
        self._data = data
        return pa.RecordBatchReader.from_batches(self._cast, self.batches())
