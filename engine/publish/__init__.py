"""Publish model outputs (Arrow tables) to a SQL warehouse through SQLAlchemy.

`connect(url)` picks the implementation: DuckDB URLs get the Arrow fast path and lake queries,
`postgresql+psycopg://` URLs COPY, any other SQLAlchemy URL the generic path (executemany).
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from engine.errors import ConfigError
from engine.publish.base import BOOKKEEPING, MODES, Warehouse
from engine.redact import remember_settings

__all__ = ["BOOKKEEPING", "MODES", "Warehouse", "connect", "published_versions"]


def connect(url: str) -> Warehouse:
    """The warehouse at SQLAlchemy `url` (`duckdb:///path.duckdb`, `duckdb:///:memory:`,
    `postgresql+psycopg://…`, `sqlite:///…`). Connects lazily: nothing is opened yet. The URL's
    password is masked in everything Headwater prints or logs from now on."""
    remember_settings(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"warehouse URL {url!r} is not a SQLAlchemy URL",  # ConfigError masks the password
                          "use e.g. duckdb:///warehouse.duckdb or postgresql+psycopg://user@host/db") from exc
    try:
        if parsed.get_backend_name() == "duckdb":
            from engine.publish.duckdb import DuckDBWarehouse

            return DuckDBWarehouse(url)
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
            from engine.publish.postgres import PostgresWarehouse

            return PostgresWarehouse(url, sa.create_engine(parsed))
        from engine.publish.generic import GenericWarehouse

        return GenericWarehouse(url, sa.create_engine(parsed))
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(f"no driver for warehouse URL {parsed.render_as_string(hide_password=True)}: {exc}",
                          "install the driver (PostgreSQL: pip install 'headwater[postgres]')") from exc


def published_versions(url: str) -> dict[str, int]:
    """{table: lake version} of what Headwater published to the warehouse at `url` and is still
    there, read without writing anything (a DuckDB file that does not exist is not created)."""
    parsed = sa.make_url(url) if "://" in url else None
    if parsed is not None and parsed.get_backend_name() == "duckdb":
        database = parsed.database or ":memory:"
        if database != ":memory:" and not database.startswith("md:") and not Path(database).exists():
            return {}
    wh = connect(url)
    try:
        return wh.published_versions()
    finally:
        wh.dispose()
