"""What every warehouse shares: the `Warehouse` API and its publish modes (replace by swap,
append, merge), the bookkeeping table, name and column checks, and error translation."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import ConcurrentRunError, ConfigError, WarehouseError
from engine.lake import Based, WriteMode
from engine.lake.history import VALID_TO
from engine.publish.comments import Comments, from_schema
from engine.publish.types import Rows

log = logging.getLogger("headwater.publish")

if TYPE_CHECKING:
    import pyarrow.dataset

BOOKKEEPING = "_headwater_published"
STAGING_SUFFIX = "__hw_new"
CURRENT_SUFFIX = "_current"  # the view of an SCD2 history table's current rows
MAX_NAME = 63 - len(STAGING_SUFFIX)  # PostgreSQL truncates identifiers at 63 bytes
_NAME = re.compile(r"[A-Za-z0-9_]+")
MODES: tuple[WriteMode, ...] = ("replace", "append", "merge")

_meta = sa.MetaData()
published = sa.Table(
    BOOKKEEPING, _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("lake_version", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(255), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
)

def driver_connection(conn: sa.Connection) -> Any:
    """The DB-API connection under a SQLAlchemy connection (psycopg's, duckdb's), in its transaction."""
    raw = conn.connection.driver_connection
    assert raw is not None  # a live connection always has one
    return raw


def check_name(name: str) -> None:
    """Raise ConfigError unless `name` can be a warehouse table name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"invalid warehouse table name {name!r}",
                          "use only letters, digits and underscores (e.g. 'photo_features'); rename the model")
    if len(name) > MAX_NAME:
        raise ConfigError(f"warehouse table name {name!r} is {len(name)} characters long",
                          f"use at most {MAX_NAME}; rename the model")
    if name == BOOKKEEPING or name.endswith(STAGING_SUFFIX):
        raise ConfigError(f"warehouse table name {name!r} is reserved by headwater",
                          f"pick another name (not {BOOKKEEPING!r}, not ending in {STAGING_SUFFIX!r})")


def check_rows(name: str, schema: pa.Schema, mode: WriteMode, key: tuple[str, ...]) -> None:
    """Raise WarehouseError unless rows of `schema` can be published to `name` in `mode` on `key`."""
    if schema.names == []:
        raise WarehouseError(f"cannot publish {name!r}: the table has no columns",
                             "the model must return at least one column")
    dupes = sorted({c for c in schema.names if schema.names.count(c) > 1})
    if dupes:
        raise WarehouseError(f"cannot publish {name!r}: duplicate column names {dupes}",
                             "rename the columns in the model so each name appears once")
    if mode not in MODES:
        raise WarehouseError(f"cannot publish {name!r}: unknown mode {mode!r}",
                             f"use one of {', '.join(MODES)}")
    if mode == "merge" and not key:
        raise WarehouseError(f"cannot merge into {name!r} without a primary key",
                             "pass primary_key=[...] with the column(s) that identify a row (the model's)")
    missing = [k for k in key if k not in schema.names]
    if missing:
        raise WarehouseError(f"cannot publish {name!r}: key column(s) {missing} are not in the table "
                             f"(columns: {schema.names})",
                             "return the key columns from the model, or fix the model's primary_key")


def check_columns(name: str, schema: pa.Schema, existing: list[str], mode: str) -> None:
    """Raise WarehouseError unless the rows have the columns of the table they go into."""
    if sorted(existing) != sorted(schema.names):
        raise WarehouseError(
            f"cannot {mode} into {name!r}: the warehouse table has columns {sorted(existing)}, "
            f"the rows have {sorted(schema.names)}",
            "return the table's columns from the model, or publish once with mode='replace' "
            "to give the table the new columns")


# -- the base class ------------------------------------------------------------------------------
class Warehouse:
    """A SQL warehouse reached through SQLAlchemy; subclasses implement one dialect's publish and query."""

    url: str
    dialect: str
    driver_errors: tuple[type[BaseException], ...] = ()
    transient_errors: tuple[type[BaseException], ...] = ()  # the driver's OperationalError

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
    def publish(self, name: str, table: pa.Table | pa.RecordBatchReader, *, lake_version: int, run_id: str,
                mode: WriteMode = "replace", primary_key: str | Sequence[str] = (),
                replace_existing: bool = False, based_on: Based | None = None,
                partitions: Sequence[str] | None = None) -> int:
        """Publish `table` (a table, or a stream of record batches read once) to warehouse table
        `name` in one transaction; returns the rows written. `mode`:

        * `replace`: the table becomes exactly these rows (and columns);
        * `append`: the rows are added (for incremental models: pass only the new rows);
        * `merge`: rows whose `primary_key` matches a row of the table replace it, the others are added;
        * `append` with `partitions` (a partitioned model): the table's rows of those partitions
          (`_hw_partition`) are deleted, then the rows are added: the partitions are replaced.

        Append and merge create the table if it doesn't exist. A table with an `_hw_valid_to`
        column (an SCD2 history) gets a view `<name>_current` of its rows that are current. A table
        `name` that Headwater did not publish (no bookkeeping row) is refused, whatever the mode,
        unless `replace_existing`. The description and column comments in the rows' schema become
        the table's comments where the dialect has them (engine/publish/comments.py).
        With `based_on` (the lake version the caller found published, None for none), the publish
        takes the table's publish lock and fails with ConcurrentRunError, changing nothing, when
        another run published it since: an append or merge of the same rows twice is refused.
        In the same transaction,
        (name, lake_version, run_id, rows in the table, published_at UTC) is upserted into the
        bookkeeping table `_headwater_published`. Readers see the table before or after, never between."""
        check_name(name)
        keys = (primary_key,) if isinstance(primary_key, str) else tuple(primary_key)
        about = from_schema(table.schema) if isinstance(table, (pa.Table, pa.RecordBatchReader)) else None
        rows = Rows(table)
        check_rows(name, rows.schema, mode, keys)
        with self._errors(f"publishing {name!r}", "the previous table is unchanged; "), \
                self._transaction() as conn:
            if based_on is not None:
                self._lock(conn, name)
                now = self._published(conn, name)
                if now != based_on.version:
                    raise ConcurrentRunError(
                        f"warehouse table {name!r}: another run published lake version {now} while this run "
                        f"was publishing from {based_on.version}; this run changed nothing",
                        "runs of one pipeline must not overlap: run again once the other run is done")
            exists = self._has_table(conn, name)
            if exists and not replace_existing and not self._ours(conn, name):
                raise WarehouseError(
                    f"cannot publish {name!r}: {self.dialect} warehouse {self.where} has a table {name!r} "
                    "that Headwater did not create", "rename the model, drop or rename that table, or "
                    "declare the model with @model(..., replace_existing=True) to let it replace the table")
            if exists and mode != "replace":
                check_columns(name, rows.schema, self._columns(conn, name), mode)
            history = VALID_TO in rows.schema.names  # an SCD2 history: readers get a view of its current rows
            if history or mode == "replace":
                self._drop_current_view(conn, name)  # PostgreSQL will not drop a table a view reads
            if mode == "replace":
                self._swap(conn, name, rows)
            elif mode == "append":
                if partitions and exists:
                    self._delete_partitions(conn, name, partitions)
                self._load(conn, name, rows, create=not exists)
            else:
                self._merge(conn, name, rows, keys, exists)
            if about is not None:
                self._comment(conn, name, about)
            if history:
                self._current_view(conn, name)
            total = rows.count if mode == "replace" else self._count(conn, name)
            published.create(conn, checkfirst=True)
            conn.execute(published.delete().where(published.c.name == name))
            conn.execute(published.insert().values(
                name=name, lake_version=int(lake_version), run_id=str(run_id), rows=total,
                published_at=datetime.now(timezone.utc)))
        log.info("%s: %s %s rows of lake version %s on %s (%s rows in the table)", name, mode, f"{rows.count:,}",
                 lake_version, self.dialect, f"{total:,}")
        return rows.count

    def published_version(self, name: str) -> int | None:
        """The lake version last published to `name` (None if never, or if the table was dropped)."""
        check_name(name)
        with self._errors(f"reading what was published to {name!r}"), self.engine.connect() as conn:
            return self._published(conn, name)

    def published_versions(self) -> dict[str, int]:
        """{table: lake version published} of every table Headwater published that is still
        there, read without changing anything."""
        with self._errors("reading what was published"), self.engine.connect() as conn:
            if not self._has_table(conn, BOOKKEEPING):
                return {}
            rows = conn.execute(sa.select(published.c.name, published.c.lake_version)).all()
            return {str(n): int(v) for n, v in rows if self._has_table(conn, str(n))}

    def drop(self, name: str) -> bool:
        """Drop table `name` and forget it was published, in one transaction; False when there
        was no such table. A table Headwater did not publish is refused (WarehouseError)."""
        check_name(name)
        with self._errors(f"dropping {name!r}"), self._transaction() as conn:
            exists = self._has_table(conn, name)
            if exists and not self._ours(conn, name):
                raise WarehouseError(f"warehouse table {name!r} on {self.where} was not published by Headwater; "
                                     "it was left as it is", "drop it with the database's own tools if you mean to")
            if exists:
                conn.exec_driver_sql(f"DROP TABLE {self.engine.dialect.identifier_preparer.quote(name)}")
            if self._has_table(conn, BOOKKEEPING):
                conn.execute(published.delete().where(published.c.name == name))
        return exists

    def _published(self, conn: sa.Connection, name: str) -> int | None:
        if not self._has_table(conn, BOOKKEEPING) or not self._has_table(conn, name):
            return None
        version = conn.execute(sa.select(published.c.lake_version).where(published.c.name == name)).scalar()
        return None if version is None else int(version)

    def _comment(self, conn: sa.Connection, name: str, about: Comments) -> None:
        """Set table `name`'s comment and its columns' (dialects without comments keep none)."""

    def _lock(self, conn: sa.Connection, name: str) -> None:
        """Hold, until the transaction ends, the lock that serialises publishes of table `name`
        (DuckDB and SQLite let one writer at a time in: nothing to do; PostgreSQL overrides)."""

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

    def ping(self) -> None:
        """Connect and run a no-op: a wrong URL, a server that is down or refuses the login, or a
        file that is no database fails here, as a one-line WarehouseError."""
        with self._errors("a connection check"), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").close()

    def dispose(self) -> None:
        """Close every pooled connection (and so release a DuckDB file)."""
        self.engine.dispose()

    # -- for subclasses ---------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A connection inside one transaction: committed if the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn

    def _load(self, conn: sa.Connection, target: str, rows: Rows, *, create: bool) -> None:
        """Insert `rows` into table `target` (created from their schema first if `create`)."""
        raise NotImplementedError

    def _swap(self, conn: sa.Connection, name: str, rows: Rows) -> None:
        """Replace table `name` by `rows`: load them into a staging table, drop the old, rename."""
        staging = self._staging(conn, name)
        self._load(conn, staging, rows, create=True)
        self._rename_over(conn, staging, name)

    def _rename_over(self, conn: sa.Connection, staging: str, name: str) -> None:
        """Drop table `name` and rename `staging` to it."""
        quote = self.engine.dialect.identifier_preparer.quote
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")
        conn.exec_driver_sql(f"ALTER TABLE {quote(staging)} RENAME TO {quote(name)}")

    def _merge(self, conn: sa.Connection, name: str, rows: Rows, key: tuple[str, ...], exists: bool) -> None:
        """Upsert `rows` into `name` on `key`: stage them, refuse null or repeated keys, delete the
        table's rows with a staged key, insert the staged rows."""
        staging = self._staging(conn, name)
        self._load(conn, staging, rows, create=True)
        quote = self.engine.dialect.identifier_preparer.quote
        keys = ", ".join(quote(k) for k in key)
        null = " OR ".join(f"{quote(k)} IS NULL" for k in key)
        if conn.exec_driver_sql(f"SELECT 1 FROM {quote(staging)} WHERE {null} LIMIT 1").first():
            raise WarehouseError(f"cannot merge into {name!r}: a row has a null key {list(key)}",
                                 "a null key never matches: drop or fill those rows in the model")
        twice = conn.exec_driver_sql(f"SELECT {keys} FROM {quote(staging)} GROUP BY {keys} "
                                     "HAVING count(*) > 1 LIMIT 1").first()
        if twice:
            raise WarehouseError(f"cannot merge into {name!r}: key {dict(zip(key, twice, strict=True))} "
                                 "is in the rows more than once",
                                 "make the key unique in the model's output (e.g. keep the latest row per key)")
        if not exists:
            conn.exec_driver_sql(f"ALTER TABLE {quote(staging)} RENAME TO {quote(name)}")
            return
        lhs = f"({keys})" if len(key) > 1 else keys
        conn.exec_driver_sql(f"DELETE FROM {quote(name)} WHERE {lhs} IN (SELECT {keys} FROM {quote(staging)})")
        cols = ", ".join(quote(c) for c in rows.schema.names)
        conn.exec_driver_sql(f"INSERT INTO {quote(name)} ({cols}) SELECT {cols} FROM {quote(staging)}")
        conn.exec_driver_sql(f"DROP TABLE {quote(staging)}")

    def _current_view(self, conn: sa.Connection, name: str) -> None:
        """View `<name>_current`: the rows of SCD2 history table `name` that are current."""
        quote = self.engine.dialect.identifier_preparer.quote
        conn.exec_driver_sql(f"CREATE VIEW {quote(name + CURRENT_SUFFIX)} AS SELECT * FROM {quote(name)} "
                             f"WHERE {quote(VALID_TO)} IS NULL")

    def _drop_current_view(self, conn: sa.Connection, name: str) -> None:
        quote = self.engine.dialect.identifier_preparer.quote
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(name + CURRENT_SUFFIX)}")

    def _delete_partitions(self, conn: sa.Connection, name: str, partitions: Sequence[str]) -> None:
        """Delete the rows of `partitions` from table `name` (in the publish's transaction)."""
        from engine.lake.partitions import PARTITION

        quote = self.engine.dialect.identifier_preparer.quote
        if PARTITION not in self._columns(conn, name):
            raise WarehouseError(f"cannot replace partitions of {name!r}: it has no {PARTITION} column",
                                 "publish the model whole once: headwater run --full-refresh --select <model>")
        statement = sa.text(f"DELETE FROM {quote(name)} WHERE {quote(PARTITION)} IN :parts").bindparams(
            sa.bindparam("parts", expanding=True))
        conn.execute(statement, {"parts": list(partitions)})

    def _staging(self, conn: sa.Connection, name: str) -> str:
        """The name of a fresh staging table for `name` (one left by a crash is dropped)."""
        staging = name + STAGING_SUFFIX
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.engine.dialect.identifier_preparer.quote(staging)}")
        return staging

    def _has_table(self, conn: sa.Connection, name: str) -> bool:
        """Whether the warehouse has a table (or view) `name` where publish would write it."""
        return sa.inspect(conn).has_table(name)

    def _ours(self, conn: sa.Connection, name: str) -> bool:
        """Whether Headwater published table `name` (the bookkeeping table has its row)."""
        if not self._has_table(conn, BOOKKEEPING):
            return False
        return conn.execute(sa.select(published.c.name).where(published.c.name == name)).first() is not None

    def _columns(self, conn: sa.Connection, name: str) -> list[str]:
        """The column names of table `name` (from an empty select: every dialect answers that)."""
        quote = self.engine.dialect.identifier_preparer.quote
        result = conn.exec_driver_sql(f"SELECT * FROM {quote(name)} WHERE 1 = 0")
        names = list(result.keys())
        result.close()
        return names

    def _count(self, conn: sa.Connection, name: str) -> int:
        quote = self.engine.dialect.identifier_preparer.quote
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote(name)}").scalar() or 0)

    def _version(self) -> str:
        with self.engine.connect() as conn:
            info = conn.dialect.server_version_info or ()
        return ".".join(str(part) for part in info) or "?"

    def _transient(self, exc: BaseException) -> bool:
        """Whether `exc` (the driver's exception, or SQLAlchemy's) is operational (the database
        cannot be reached, a lock or a conflict, a timeout) rather than a refusal of the statement:
        DB-API drivers raise OperationalError for those."""
        return isinstance(exc, (sa.exc.OperationalError, sa.exc.DisconnectionError, sa.exc.TimeoutError,
                                ConnectionError, TimeoutError, *self.transient_errors))

    @contextmanager
    def _errors(self, action: str, hint_prefix: str = "") -> Iterator[None]:
        """Turn database errors raised inside into a one-line WarehouseError with a hint,
        retryable when the failure is operational (see `_transient`)."""
        caught: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError, *self.driver_errors)
        try:
            yield
        except caught as exc:
            cause = getattr(exc, "orig", None) or exc
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            transient = self._transient(exc) or self._transient(cause)
            raise WarehouseError(f"{action} on {self.dialect} warehouse {self.where} failed: {detail}",
                                 hint_prefix + self._hint(cause, transient), retryable=transient) from exc

    def _hint(self, exc: BaseException, transient: bool) -> str:
        """What the user can do about `exc` (the driver's exception, or SQLAlchemy's)."""
        if transient:
            return f"check the warehouse URL ({self.where}) and that the database is up and reachable"
        return "the database refused it: fix what the message names and run again"
