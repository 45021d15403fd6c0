"""Arrow types as Delta stores them, and casting batches to a table's schema."""
from __future__ import annotations

from typing import Literal

import pyarrow as pa

from engine.errors import SchemaError

# one word per write mode, from source to warehouse ("scd2": sources only, engine/lake/scd2.py)
WriteMode = Literal["append", "replace", "merge", "scd2"]


def delta_mode(mode: WriteMode) -> Literal["append", "overwrite"]:
    """What delta-rs calls an append or a replace (a merge or an SCD2 load is not a write mode of
    delta-rs' writer)."""
    if mode in ("merge", "scd2"):
        raise ValueError(f"a {mode} load is written by engine.lake.{mode}, not by delta-rs' writer")
    return "overwrite" if mode == "replace" else "append"


def delta_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a column of type `t` is stored as in Delta (us timestamps, in UTC when they
    have a time zone; plain strings, at any depth: never `string_view`, whose Parquet statistics
    pyarrow cannot compare with a string, nor `large_string`). Types Delta has no place for are
    stored exactly as another: float16 as float32, decimal256 as decimal128 (38 digits at most:
    wider values do not cast), a duration as int64 microseconds, a time of day as its ISO text
    ("08:30:00.000000"), a map as the list of key/value structs it is made of (every backend reads
    and writes those back), an extension type as its storage type."""
    if isinstance(t, pa.BaseExtensionType):
        return delta_type(t.storage_type)
    if pa.types.is_timestamp(t) and (t.unit != "us" or t.tz not in (None, "UTC")):
        return pa.timestamp("us", tz=t.tz and "UTC")  # Delta keeps instants in UTC, naive as naive
    if pa.types.is_string_view(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return delta_type(t.value_type)
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_unsigned_integer(t):  # Delta's integers are signed: one wide enough
        return {8: pa.int16(), 16: pa.int32()}.get(t.bit_width, pa.int64())
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_decimal256(t):
        return pa.decimal128(min(t.precision, 38), min(t.scale, 38))
    if pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_time(t):
        return pa.string()
    if pa.types.is_map(t):
        return pa.list_(pa.struct([pa.field("key", delta_type(t.key_type), nullable=False),
                                   t.item_field.with_name("value").with_type(delta_type(t.item_type))]))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(delta_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(delta_type(f.type)) for f in t])
    return t


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every column mapped by `delta_type`."""
    return pa.schema([f.with_type(delta_type(f.type)) for f in schema])


def as_delta(table: pa.Table) -> pa.Table:
    """`table` with the types Delta stores (see `delta_type`)."""
    schema = delta_schema(table.schema)
    return pa.Table.from_arrays([cast(c, f.type) for c, f in zip(table.columns, schema)], schema=schema)


def conform(batch: pa.RecordBatch, schema: pa.Schema, origin: str = "") -> pa.RecordBatch:
    """Cast `batch` to `schema`: missing columns become nulls; an unknown column is an error."""
    extra = set(batch.schema.names) - set(schema.names)
    if extra:
        raise SchemaError(
            f"{origin or 'a batch'} has column(s) {sorted(extra)} that are not in the table's schema",
            "declare the column with schema=, or land these files under another source")
    arrays = []
    for field in schema:
        idx = batch.schema.get_field_index(field.name)
        if idx < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
            continue
        col = batch.column(idx)
        try:
            arrays.append(cast(col, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"{origin or 'a batch'}: column {field.name!r} is {col.type}, the table has {field.type}: {exc}",
                "make the types agree, or land the data under a new source name") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def cast(col: pa.Array | pa.ChunkedArray, to: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """`col` as type `to`; only sub-microsecond timestamp digits may be dropped, never values.
    A duration cast to an integer counts microseconds (see `delta_type`)."""
    if col.type == to:
        return col
    if isinstance(col.type, pa.BaseExtensionType):
        col = col.storage if isinstance(col, pa.Array) else pa.chunked_array(
            [c.storage for c in col.chunks], col.type.storage_type)
        return cast(col, to)
    if pa.types.is_duration(col.type) and pa.types.is_integer(to) and col.type.unit != "us":
        col = col.cast(pa.duration("us"))  # safe: a sub-microsecond remainder raises
    truncating = pa.types.is_timestamp(col.type) and pa.types.is_timestamp(to) and col.type.unit == "ns"
    return col.cast(to, safe=not truncating)
