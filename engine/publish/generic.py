"""Any SQLAlchemy database (SQLite, MySQL, …): rows go in through batched executemany, all of
a publish in one transaction (replace builds `name__hw_new` and renames it over `name`)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from engine.errors import WarehouseError
from engine.publish.base import Warehouse
from engine.publish.types import Rows, rows_to_arrow, sql_columns, sql_rows

if TYPE_CHECKING:
    import pyarrow.dataset


class GenericWarehouse(Warehouse):
    """A warehouse on any SQLAlchemy URL; rows go in through bounded executemany batches."""

    batch_rows: int = 10_000  # rows per executemany: bounds the memory one batch of Python rows takes

    def __init__(self, url: str, engine: sa.Engine) -> None:
        super().__init__(url, engine)
        if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
            _transactional_ddl(engine)

    def _load(self, conn: sa.Connection, target: str, rows: Rows, *, create: bool) -> None:
        table = sa.Table(target, sa.MetaData(), *sql_columns(rows.schema))
        if create:
            table.create(conn)
        insert = table.insert()
        for batch in rows.batches(self.batch_rows):
            for chunk in sql_rows(batch, self.batch_rows):
                conn.execute(insert, chunk)

    def query(self, sql: str, lake: dict[str, pyarrow.dataset.Dataset] | None = None) -> pa.Table:
        """Run SQL on the warehouse, result as Arrow; nothing it changes is committed.
        Lake tables can't be named here: they need a DuckDB warehouse."""
        named = [key for key in lake or {} if _names(sql, key)]
        if named:
            raise WarehouseError(
                f"lake table(s) {', '.join(sorted(named))} can't be queried on a {self.dialect} warehouse",
                "lake tables need a DuckDB warehouse: pass --warehouse duckdb:///some.duckdb, "
                "or query the published warehouse table by its bare name")
        with self._errors("query"), self.engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            if not result.returns_rows:
                return pa.table({})
            names = list(result.keys())
            rows = result.fetchall()
        return rows_to_arrow(names, list(rows))


def _names(sql: str, key: str) -> bool:
    """Whether `sql` mentions the dotted lake table `key` (e.g. raw.photos)."""
    zone, _, table = key.partition(".")
    pattern = rf'(?<![\w."]){re.escape(zone)}\s*\.\s*{re.escape(table)}(?![\w"])'
    return re.search(pattern, sql, re.IGNORECASE) is not None


def _transactional_ddl(engine: sa.Engine) -> None:
    """Make pysqlite run DDL inside the transaction (it autocommits CREATE/DROP by default), so a
    failed publish rolls back its half-built table too. The recipe from SQLAlchemy's SQLite docs."""

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")
