"""What every warehouse shares: the `Warehouse` API, the bookkeeping table, name checks,
error translation and the Arrow → SQLAlchemy type mapping."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import HeadwaterError

if TYPE_CHECKING:
    import pyarrow.dataset

BOOKKEEPING = "_headwater_published"
STAGING_SUFFIX = "__hw_new"
MAX_NAME = 63 - len(STAGING_SUFFIX)  # PostgreSQL truncates identifiers at 63 bytes
_NAME = re.compile(r"[A-Za-z0-9_]+")

_meta = sa.MetaData()
published = sa.Table(
    BOOKKEEPING, _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("lake_version", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(255), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
)

Recorder = Callable[[sa.Connection], None]


def check_name(name: str) -> None:
    """Raise HeadwaterError unless `name` can be a warehouse table name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HeadwaterError(f"invalid warehouse table name {name!r}",
                             "use only letters, digits and underscores (e.g. 'photo_features'); rename the model")
    if len(name) > MAX_NAME:
        raise HeadwaterError(f"warehouse table name {name!r} is {len(name)} characters long",
                             f"use at most {MAX_NAME}; rename the model")
    if name == BOOKKEEPING or name.endswith(STAGING_SUFFIX):
        raise HeadwaterError(f"warehouse table name {name!r} is reserved by headwater",
                             f"pick another name (not {BOOKKEEPING!r}, not ending in {STAGING_SUFFIX!r})")


def check_table(name: str, table: pa.Table) -> None:
    """Raise HeadwaterError unless `table` has columns with distinct names."""
    if table.num_columns == 0:
        raise HeadwaterError(f"cannot publish {name!r}: the table has no columns",
                             "the model must return at least one column")
    dupes = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if dupes:
        raise HeadwaterError(f"cannot publish {name!r}: duplicate column names {dupes}",
                             "rename the columns in the model so each name appears once")


def plain(table: pa.Table) -> pa.Table:
    """`table` with dictionary columns decoded and all-null columns typed as strings."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.with_type(field.type.value_type),
                                     table.column(i).cast(field.type.value_type))
        elif pa.types.is_null(field.type):
            table = table.set_column(i, field.with_type(pa.string()), table.column(i).cast(pa.string()))
    return table


# -- Arrow → SQL types -------------------------------------------------------------------------
def sql_type(t: pa.DataType) -> sa.types.TypeEngine:
    """The SQLAlchemy type a column of Arrow type `t` is stored as (nested and unknown: JSON text)."""
    if pa.types.is_dictionary(t):
        return sql_type(t.value_type)
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_integer(t):
        if t.bit_width < 32 or t == pa.int32():
            return sa.Integer()
        return sa.Numeric(20, 0) if t == pa.uint64() else sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Double()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return sa.Text()
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=t.tz is not None)
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_time(t):
        return sa.Time()
    if pa.types.is_decimal(t):
        return sa.Numeric(t.precision, t.scale)
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or pa.types.is_binary_view(t)):
        return sa.LargeBinary()
    return sa.Text()


def is_json(t: pa.DataType) -> bool:
    """Whether a column of Arrow type `t` is stored as JSON text."""
    if pa.types.is_dictionary(t):
        return is_json(t.value_type)
    return isinstance(sql_type(t), sa.Text) and not (
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
        or pa.types.is_null(t))


def sql_columns(schema: pa.Schema) -> list[sa.Column]:
    """SQLAlchemy columns for an Arrow schema (NOT NULL where the Arrow field is non-nullable)."""
    return [sa.Column(f.name, sql_type(f.type), nullable=f.nullable) for f in schema]


def sql_rows(table: pa.Table, max_rows: int) -> Iterator[list[dict[str, Any]]]:
    """The rows of `table` as Python dicts ready to bind, in chunks of at most `max_rows`:
    tz-aware timestamps in UTC, nanoseconds truncated to microseconds, nested values as JSON."""
    table = plain(table)
    for i, field in enumerate(table.schema):
        t = field.type
        if pa.types.is_timestamp(t) and (t.tz is not None or t.unit == "ns"):
            target = pa.timestamp("us", "UTC" if t.tz is not None else None)
            table = table.set_column(i, field.with_type(target), table.column(i).cast(target, safe=False))
    as_json = [f.name for f in table.schema if is_json(f.type)]
    for batch in table.to_batches(max_chunksize=max_rows):
        rows = batch.to_pylist()
        for row in rows:
            for col in as_json:
                if row[col] is not None:
                    row[col] = json.dumps(row[col], default=str, ensure_ascii=False)
        yield rows


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


# -- the base class ------------------------------------------------------------------------------
class Warehouse:
    """A SQL warehouse reached through SQLAlchemy; subclasses implement one dialect's publish and query."""

    url: str
    dialect: str
    driver_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str, engine: sa.Engine) -> None:
        self.url = url
        self.engine = engine
        self.dialect = engine.dialect.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where})"

    @property
    def where(self) -> str:
        """Where the warehouse is, safe to print (no password)."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- public API -------------------------------------------------------------------------------
    def publish(self, name: str, table: pa.Table, *, lake_version: int, run_id: str) -> int:
        """Atomically replace table `name` with `table`; returns rows written. In the same
        transaction, upsert (name, lake_version, run_id, rows, published_at UTC) into the
        bookkeeping table `_headwater_published`."""
        check_name(name)
        check_table(name, table)

        def record(conn: sa.Connection) -> None:
            published.create(conn, checkfirst=True)
            conn.execute(published.delete().where(published.c.name == name))
            conn.execute(published.insert().values(
                name=name, lake_version=int(lake_version), run_id=str(run_id), rows=table.num_rows,
                published_at=datetime.now(timezone.utc)))

        with self._errors(f"publishing {name!r}", "the previous table is unchanged; "):
            self._replace(name, table, record)
        return table.num_rows

    def published_version(self, name: str) -> int | None:
        """The lake version last published to `name` (None if never, or if the table was dropped)."""
        check_name(name)
        with self._errors(f"reading what was published to {name!r}"), self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(BOOKKEEPING) or not inspector.has_table(name):
                return None
            version = conn.execute(sa.select(published.c.lake_version)
                                   .where(published.c.name == name)).scalar()
        return None if version is None else int(version)

    def tables(self) -> list[str]:
        """User tables in the warehouse, sorted (bookkeeping and half-built tables left out)."""
        with self._errors("listing tables"), self.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
        return sorted(n for n in names if n != BOOKKEEPING and not n.endswith(STAGING_SUFFIX))

    def query(self, sql: str, lake: dict[str, pyarrow.dataset.Dataset] | None = None) -> pa.Table:
        """Run SQL on the warehouse (read-only), result as Arrow."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for `headwater doctor`: dialect, server or library version, where, table count."""
        with self._errors("connecting"):
            version = self._version()
            count = len(self.tables())
        return f"{self.dialect} {version} at {self.where}, {count} tables"

    def dispose(self) -> None:
        """Close every pooled connection (and so release a DuckDB file)."""
        self.engine.dispose()

    # -- for subclasses ---------------------------------------------------------------------------
    def _replace(self, name: str, table: pa.Table, record: Recorder) -> None:
        """Replace table `name` with `table` and call `record(conn)`, all in one transaction."""
        raise NotImplementedError

    def _version(self) -> str:
        with self.engine.connect() as conn:
            info = conn.dialect.server_version_info or ()
        return ".".join(str(part) for part in info) or "?"

    def _hint(self, exc: BaseException) -> str:
        """What the user can do about `exc` (the driver's exception, or SQLAlchemy's)."""
        text = str(exc).lower()
        if any(word in text for word in ("connect", "unable to open", "password", "host", "timeout")):
            return f"check the warehouse URL ({self.where}) and that the database is up and reachable"
        return "the database refused it: fix what the message names and run again"

    @contextmanager
    def _errors(self, action: str, hint_prefix: str = "") -> Iterator[None]:
        """Turn database errors raised inside into a one-line HeadwaterError with a hint."""
        try:
            yield
        except (sa.exc.SQLAlchemyError, *self.driver_errors) as exc:
            cause = getattr(exc, "orig", None) or exc
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise HeadwaterError(f"{action} on {self.dialect} warehouse {self.where} failed: {detail}",
                                 hint_prefix + self._hint(cause)) from exc
