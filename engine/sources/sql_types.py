"""Types for SQL sources: database column types as Arrow types, rows as Arrow arrays, and
cursor values and primary keys as JSON state (they live in Delta commit metadata).
"""
from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import SourceError
from engine.load.schema import short

_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "datetime": (dt.datetime.isoformat, dt.datetime.fromisoformat),
    "date": (dt.date.isoformat, dt.date.fromisoformat),
    "decimal": (str, decimal.Decimal), "int": (int, int), "float": (float, float),
    "str": (str, str)}
_KINDS = {dt.datetime: "datetime", dt.date: "date", decimal.Decimal: "decimal",
          int: "int", float: "float", str: "str"}


def encode_cursor(value: Any) -> dict[str, Any]:
    """A cursor value as JSON-able state that `decode_cursor` turns back into the same value."""
    kind = _KINDS.get(type(value))
    if kind is None:
        raise SourceError(f"cursor values of type {type(value).__name__} are not supported",
                          "use a timestamp, date, number or string column as cursor")
    return {"type": kind, "value": _CODECS[kind][0](value)}


def decode_cursor(state: dict[str, Any]) -> Any:
    """The cursor value stored by `encode_cursor`."""
    return _CODECS[state["type"]][1](state["value"])


def key_token(values: Sequence[Any]) -> tuple[Any, ...]:
    """A primary key (one value per key column) as a hashable, JSON-able tuple.

    Ints, strings, floats and bools stay as they are; tz-aware timestamps become UTC ISO text
    (the session's time zone may change between runs); other values (UUIDs, decimals, dates)
    become their `str`, which is stable for values read from the same column.
    """
    return tuple(_token(v) for v in values)


def _token(v: Any) -> Any:
    if v is None or isinstance(v, (int, str, float)):
        return v
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).isoformat()
    return str(v)


def arrow_type(column_type: sa.types.TypeEngine[Any]) -> pa.DataType | None:
    """The Arrow type for a SQLAlchemy column type (None: let Arrow infer it).

    Timestamps with a time zone land as UTC; NUMERIC(p, s) as decimal(p, s); NUMERIC with no
    precision as float64 (exact decimals need a declared precision); UUIDs as strings.
    """
    try:
        py = column_type.python_type
    except NotImplementedError:
        return None
    if py is dt.datetime:
        return pa.timestamp("us", tz="UTC" if getattr(column_type, "timezone", False) else None)
    if py is decimal.Decimal or (isinstance(column_type, sa.Numeric) and column_type.asdecimal):
        precision = getattr(column_type, "precision", None)
        scale = getattr(column_type, "scale", None) or 0
        if not precision:
            return pa.float64()
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    return {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string(),
            dt.date: pa.date32(), bytes: pa.binary(), uuid.UUID: pa.string(),
            dt.time: pa.time64("us"), dt.timedelta: pa.duration("us")}.get(py)


def to_arrow(values: Sequence[Any], type_: pa.DataType | None) -> pa.Array:
    """A column of Python values from a database driver as an Arrow array of `type_`."""
    if type_ is not None:
        if pa.types.is_floating(type_):
            values = [v if v is None or isinstance(v, (str, bytes)) else float(v) for v in values]  # Decimal
        elif pa.types.is_string(type_):
            values = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
        elif pa.types.is_integer(type_) and not {float, decimal.Decimal}.isdisjoint(map(type, values)):
            values = [_whole(v) for v in values]  # pyarrow would truncate 2.5 to 2
    return pa.array(values, type=type_)


def _whole(value: Any) -> Any:
    if isinstance(value, (float, decimal.Decimal)):
        if value != int(value):  # (int() of NaN or infinity raises too)
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return value


def to_arrow_each(values: Sequence[Any], type_: pa.DataType | None,
                  column: str) -> tuple[pa.Array, dict[int, str]]:
    """`to_arrow`, and when a value does not convert, the others as `type_` (the first
    convertible value's type when `type_` is None) and the failures by index, with why."""
    try:
        return to_arrow(values, type_), {}
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    if type_ is None:
        type_ = next((t for v in values if v is not None and (t := _type_of(v)) is not None), pa.string())
    bad: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            to_arrow([value], type_)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            bad[i] = f"column {column!r}: {short(value)} is not {type_}"
    return to_arrow([None if i in bad else v for i, v in enumerate(values)], type_), bad


def _type_of(value: Any) -> pa.DataType | None:
    try:
        return pa.array([value]).type
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


class Unreadable:
    """A value the database driver handed over that its column type cannot read (a SQLite
    DATE of '0000-01-01'): kept with why, so its row is quarantined instead of failing the load."""

    __slots__ = ("raw", "why")

    def __init__(self, raw: Any, why: str) -> None:
        self.raw, self.why = raw, why

    def __repr__(self) -> str:
        return repr(self.raw)


class Tolerant(sa.types.TypeDecorator[Any]):
    """`inner`, except that a value its result processor cannot read becomes an `Unreadable`
    (counted in `failures`) instead of an exception that would end the whole read."""

    impl = sa.types.NullType
    cache_ok = False  # `failures` is per read

    def __init__(self, inner: sa.types.TypeEngine[Any], failures: list[int]) -> None:
        super().__init__()
        self.inner, self.failures = inner, failures

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return self.inner.dialect_impl(dialect)

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        process = self.inner.dialect_impl(dialect).result_processor(dialect, coltype)
        if process is None:
            return None
        failures = self.failures

        def tolerant(value: Any) -> Any:
            try:
                return process(value)
            except (ValueError, TypeError, ArithmeticError) as exc:
                failures[0] += 1
                return Unreadable(value, f"{type(exc).__name__}: {exc}")

        return tolerant


# PostgreSQL type OIDs (pg_type.oid) of a query's result columns, as SQLAlchemy types.
_PG_OIDS: dict[int, Callable[[Any], sa.types.TypeEngine[Any]]] = {
    16: lambda c: sa.Boolean(), 20: lambda c: sa.BigInteger(), 21: lambda c: sa.SmallInteger(),
    23: lambda c: sa.Integer(), 700: lambda c: sa.Float(), 701: lambda c: sa.Float(),
    1700: lambda c: sa.Numeric(getattr(c, "precision", None), getattr(c, "scale", None)),
    25: lambda c: sa.String(), 1042: lambda c: sa.String(), 1043: lambda c: sa.String(),
    1082: lambda c: sa.Date(), 1114: lambda c: sa.DateTime(),
    1184: lambda c: sa.DateTime(timezone=True), 17: lambda c: sa.LargeBinary(),
    2950: lambda c: sa.Uuid(), 1083: lambda c: sa.Time(), 1186: lambda c: sa.Interval()}


def result_column_types(dialect: str, description: Sequence[Any] | None) -> list[sa.types.TypeEngine[Any]]:
    """SQLAlchemy types of a result's columns from its DB-API `cursor.description`.

    Known for PostgreSQL (type OIDs); elsewhere NullType, and Arrow infers from the values.
    """
    types: list[sa.types.TypeEngine[Any]] = []
    for col in description or ():
        make = _PG_OIDS.get(col[1]) if dialect == "postgresql" else None
        types.append(make(col) if make else sa.types.NullType())
    return types


def tolerate_out_of_range(driver_connection: Any, failures: list[int]) -> None:
    """On a psycopg connection, dates and timestamps Python cannot hold (BC, `infinity`, past
    year 9999) load as `Unreadable` (counted in `failures`) instead of failing the fetch."""
    try:
        import psycopg
    except ImportError:  # not a PostgreSQL source
        return
    if not isinstance(driver_connection, psycopg.Connection):
        return
    adapters = driver_connection.adapters
    for name in ("date", "timestamp", "timestamptz"):
        info = adapters.types.get(name)
        for fmt in (psycopg.pq.Format.TEXT, psycopg.pq.Format.BINARY):
            fast = adapters.get_loader(info.oid, fmt) if info else None
            if fast is not None and info is not None:
                adapters.register_loader(info.oid, _tolerant_loader(psycopg, fast, fmt, failures))


def _tolerant_loader(psycopg: Any, fast: Any, fmt: Any, failures: list[int]) -> type:
    class TolerantLoader(psycopg.adapt.Loader):
        format = fmt

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self.fast = fast(oid, context)

        def load(self, data: Any) -> Any:
            try:
                return self.fast.load(data)
            except psycopg.DataError as exc:
                failures[0] += 1
                raw = bytes(data).decode("utf-8", "replace") if fmt == psycopg.pq.Format.TEXT else bytes(data)
                return Unreadable(raw, str(exc))

    return TolerantLoader
