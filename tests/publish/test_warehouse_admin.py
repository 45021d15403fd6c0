"""What `headwater plan` and `drop` ask of a warehouse: the versions Headwater published (read
without writing) and dropping a published table, on DuckDB, PostgreSQL and SQLite."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from engine.errors import WarehouseError
from engine.publish import Warehouse, published_versions


def test_published_versions_and_drop(wh: Warehouse) -> None:
    assert wh.published_versions() == {}
    wh.publish("m", pa.table({"a": [1, 2]}), lake_version=3, run_id="r1")
    wh.publish("n", pa.table({"a": [1]}), lake_version=0, run_id="r1")
    assert wh.published_versions() == {"m": 3, "n": 0}
    assert wh.drop("m") is True
    assert wh.published_versions() == {"n": 0} and wh.published_version("m") is None
    assert "m" not in wh.tables() and "n" in wh.tables()
    assert wh.drop("m") is False  # nothing left to drop
    with wh.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE theirs (x integer)")
    with pytest.raises(WarehouseError, match="'theirs' .* was not published by Headwater"):
        wh.drop("theirs")
    assert "theirs" in wh.tables()


def test_reading_a_duckdb_warehouse_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'sub' / 'wh.duckdb'}"
    assert published_versions(url) == {}
    assert list(tmp_path.iterdir()) == []


def test_a_duckdb_warehouse_is_read_without_being_changed(tmp_path: Path) -> None:
    from engine.publish import connect

    path = tmp_path / "wh.duckdb"
    wh = connect(f"duckdb:///{path}")
    wh.publish("m", pa.table({"a": [1]}), lake_version=5, run_id="r")
    wh.dispose()
    before = (path.stat().st_size, path.stat().st_mtime_ns)
    assert published_versions(f"duckdb:///{path}") == {"m": 5}
    assert (path.stat().st_size, path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wh.duckdb"]  # no WAL left either


def test_a_table_dropped_behind_headwaters_back_is_not_published(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    from engine.publish import connect

    wh = connect(url)
    wh.publish("m", pa.table({"a": [1]}), lake_version=1, run_id="r")
    with wh.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE m"))
    assert published_versions(url) == {}
    wh.dispose()
