"""DuckDB file (or in-memory) warehouse: publish straight from Arrow (a table, or a stream of
batches) with CREATE OR REPLACE / INSERT … BY NAME, and query the warehouse together with the
lake's Delta tables."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.pool import NullPool, StaticPool

from engine.errors import ConfigError, WarehouseError
from engine.publish.base import BOOKKEEPING, Warehouse, driver_connection
from engine.publish.comments import Comments, comment_on
from engine.publish.types import Rows

if TYPE_CHECKING:
    import pyarrow.dataset

ATTACHED = "warehouse"  # catalog name of the warehouse file inside a query's in-memory connection


class DuckDBWarehouse(Warehouse):
    """A DuckDB database file (or `:memory:`). Every call opens the file and closes it again, so
    other processes can use it in between: DuckDB allows one writer process per file."""

    driver_errors = (duckdb.Error,)
    transient_errors = (duckdb.OperationalError,)

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url)
        database = parsed.database or ":memory:"
        self.path = None if database == ":memory:" or database.startswith("md:") else Path(database)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WarehouseError(f"cannot make the folder of DuckDB warehouse {self.path}: {exc}",
                                     "check the warehouse URL (duckdb:///path/to/file.duckdb)") from exc
        # one shared connection keeps a :memory: database alive; a file is opened per use
        pool = StaticPool if database == ":memory:" else NullPool
        super().__init__(url, sa.create_engine(parsed.set(database=database), poolclass=pool))

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    def _swap(self, conn: sa.Connection, name: str, rows: Rows) -> None:
        """One CREATE OR REPLACE from Arrow: DuckDB swaps the table when the transaction commits."""
        with _registered(conn, rows) as source:
            conn.exec_driver_sql(f"CREATE OR REPLACE TABLE {self._quote(name)} AS SELECT * FROM {source}")

    def _load(self, conn: sa.Connection, target: str, rows: Rows, *, create: bool) -> None:
        with _registered(conn, rows) as source:
            if create:
                conn.exec_driver_sql(f"CREATE TABLE {self._quote(target)} AS SELECT * FROM {source}")
            else:
                conn.exec_driver_sql(f"INSERT INTO {self._quote(target)} BY NAME SELECT * FROM {source}")

    def published_versions(self) -> dict[str, int]:
        """As `Warehouse.published_versions`, from the file opened read-only (a file that is not
        there has published nothing, and is not created)."""
        if self.path is None:
            return super().published_versions()
        if not self.path.exists():
            return {}
        with self._errors("reading what was published"), self._reader() as con:
            tables = {str(r[0]).lower() for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
                "UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = 'main'",
                [ATTACHED, ATTACHED]).fetchall()}
            if BOOKKEEPING not in tables:
                return {}
            rows = con.execute(f'SELECT name, lake_version FROM {ATTACHED}.main."{BOOKKEEPING}"').fetchall()
        return {str(n): int(v) for n, v in rows if str(n).lower() in tables}

    def _comment(self, conn: sa.Connection, name: str, about: Comments) -> None:
        comment_on(conn, self.engine.dialect.identifier_preparer.quote, name, about)

    def _has_table(self, conn: sa.Connection, name: str) -> bool:
        # duckdb-engine's has_table also finds the catalog's own views (`tables`, `views`,
        # `columns`): look in this database's schema only, as DuckDB names fold case
        found = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT table_name AS n, database_name AS d, schema_name AS s FROM duckdb_tables() "
            "UNION ALL SELECT view_name, database_name, schema_name FROM duckdb_views() WHERE NOT internal) "
            "WHERE d = current_database() AND s = current_schema() AND lower(n) = lower(?)", (name,)).scalar()
        return bool(found)

    def _quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    def query(self, sql: str, lake: dict[str, pyarrow.dataset.Dataset] | None = None) -> pa.Table:
        """Run SQL on the warehouse (read-only), result as Arrow. Every entry of `lake`, keyed
        like "raw.photos", is queryable under that dotted name; bare names are warehouse tables."""
        with self._errors("query"), self._reader() as con:
            with _lake_views(con, lake or {}):
                result = con.sql(sql)
                return result.to_arrow_table() if result is not None else pa.table({})

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection whose bare table names are the warehouse's (attached read-only)
        and whose default catalog can hold the lake's schemas and views."""
        if self.path is None:
            with self.engine.connect() as conn:
                yield driver_connection(conn)
            return
        con = duckdb.connect()
        try:
            if self.path.exists():
                literal = "'" + str(self.path).replace("'", "''") + "'"
                con.execute(f"ATTACH {literal} AS {ATTACHED} (READ_ONLY)")
                con.execute(f"SET search_path = 'memory.main,{ATTACHED}.main'")
            yield con
        finally:
            con.close()

    def _version(self) -> str:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version()").scalar() or duckdb.__version__

    def _hint(self, exc: BaseException, transient: bool) -> str:
        # DuckDB raises one IOException for a held lock and for a file it cannot read: only its
        # message tells them apart
        text = str(exc)
        if "lock" in text.lower():
            return ("another process has the DuckDB file open for writing (one writer at a time): "
                    "wait for it to finish or stop it")
        if "not a valid DuckDB database" in text or "Serialization Error" in text:
            return (f"{self.where} is not a DuckDB file this duckdb {duckdb.__version__} can read: "
                    "point the URL at another file")
        return super()._hint(exc, transient)


@contextmanager
def _registered(conn: sa.Connection, rows: Rows) -> Iterator[str]:
    """The name under which `rows` (a whole Arrow table, or a stream) can be scanned on `conn`
    for the duration of the block."""
    source = f"__hw_publish_{uuid.uuid4().hex}"
    con = driver_connection(conn)  # the duckdb connection under duckdb-engine
    con.complete()  # finish what SQLAlchemy left pending (its inspector's reads), as DuckDB 2 asks
    con.register(source, rows.arrow())
    try:
        yield source
    except BaseException:
        with suppress(duckdb.Error):  # the transaction is aborted: the first error is the one to report
            con.unregister(source)
        raise
    con.complete()
    con.unregister(source)


@contextmanager
def _lake_views(con: duckdb.DuckDBPyConnection, lake: dict[str, pyarrow.dataset.Dataset]) -> Iterator[None]:
    """Views named `zone.table` over the lake's datasets in `con`'s default catalog, for the
    duration of the block (DuckDB's delta extension would download itself; datasets don't)."""
    zones = sorted({_split(key)[0] for key in lake})
    sources = {key: f"__hw_lake_{i}_{uuid.uuid4().hex[:8]}" for i, key in enumerate(sorted(lake))}
    try:
        for zone in zones:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{zone}"')
        for key, source in sources.items():
            zone, table = _split(key)
            con.register(source, lake[key])
            con.execute(f'CREATE OR REPLACE VIEW "{zone}"."{table}" AS SELECT * FROM "{source}"')
        yield
    finally:
        for key, source in sources.items():
            zone, table = _split(key)
            con.execute(f'DROP VIEW IF EXISTS "{zone}"."{table}"')
            con.unregister(source)
        for zone in zones:
            con.execute(f'DROP SCHEMA IF EXISTS "{zone}"')


def _split(key: str) -> tuple[str, str]:
    zone, _, table = key.partition(".")
    if not (zone.replace("_", "a").isalnum() and table.replace("_", "a").isalnum()):
        raise ConfigError(f"lake table key {key!r} is not of the form zone.table",
                          "name lake tables like 'raw.photos' or 'models.training_set'")
    return zone, table
