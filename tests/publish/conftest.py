"""The warehouse each publish test runs on: a DuckDB file, a PostgreSQL server (COPY) and a SQLite
file (the generic path), one test each."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.publish import Warehouse, connect


@pytest.fixture(params=["duckdb", "postgresql", "sqlite"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    url = {"duckdb": f"duckdb:///{tmp_path}/wh.duckdb", "sqlite": f"sqlite:///{tmp_path}/wh.sqlite"}.get(
        request.param) or request.getfixturevalue("pg_url")
    warehouse = connect(url)
    yield warehouse
    warehouse.dispose()
