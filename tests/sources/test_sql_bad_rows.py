"""SQL rows that cannot land are quarantined, never dropped and never the end of the read: rows
in = landed + quarantined, on SQLite and on a real PostgreSQL server. (The SQLite corpus is in
tests/support/bad_sql.py.)"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.lake import Lake
from engine.load.land import land
from engine.sources import sql

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'src.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def run(lake: Lake, source: sql.SqlSource, run_id: str) -> tuple[list[int], list[dict]]:
    """Land `source` once; the ids in the raw table and this run's quarantine entries."""
    extraction = source.extract(lake.state(f"raw.{source.name}"), run_id=run_id, loaded_at=NOW)
    land(lake, f"raw.{source.name}", extraction, run_id=run_id)
    ids = sorted(lake.read(f"raw.{source.name}", columns=["id"]).column("id").to_pylist()) \
        if lake.exists(f"raw.{source.name}") else []
    entries = [e for e in (lake.read(f"quarantine.{source.name}").to_pylist()
                           if lake.exists(f"quarantine.{source.name}") else []) if e["_hw_run_id"] == run_id]
    return ids, entries


def test_null_cursor_rows_are_quarantined_once_and_land_once_given_a_cursor(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, '2026-01-01 00:00:00'), (2, NULL), (3, NULL)"))
    lake, source = Lake(str(tmp_path / "lake")), sql("s", db_url, "t", cursor="at", primary_key="id")
    ids, entries = run(lake, source, "r1")
    assert ids == [1] and sorted(e["raw"][:8] for e in entries) == ['{"id": 2', '{"id": 3']  # rows in 3 = 1 + 2
    assert all("cursor column 'at' is NULL" in e["reason"] and e["file"] == "table t" for e in entries)
    assert run(lake, source, "r2") == ([1], [])  # the same NULL rows: not quarantined again
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE t SET at = '2026-02-01 00:00:00' WHERE id = 2"))
    ids, entries = run(lake, source, "r3")  # one NULL row left: the count changed, so it is listed again
    assert ids == [1, 2] and [e["raw"].count('"id": 3') for e in entries] == [1]
    engine.dispose()


def test_values_of_the_wrong_type_quarantine_their_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER, n INTEGER, d DATE, x NUMERIC(10, 2))"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 5, '2026-01-01', 1.5), (2, 'abc', '2026-01-02', 2), "
                             "(3, 7, '0000-01-01', 3), (4, 2.5, '2026-01-04', 4), (5, 9, '2026-01-05', 'x')"))
    engine.dispose()
    ids, entries = run(Lake(str(tmp_path / "lake")), sql("s", url, "t", batch_rows=2), "r1")
    assert ids == [1] and len(entries) == 4  # rows in 5 = 1 + 4
    reasons = {e["line"]: e["reason"] for e in entries}
    assert "column 'n': 'abc' is not int64" in reasons[2]
    assert "column 'd': '0000-01-01' cannot be read" in reasons[3] and "year 0" in reasons[3]
    assert "column 'n'" in reasons[4] and "column 'x'" in reasons[5]


def test_a_postgres_query_with_twin_column_names_is_refused(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER, name TEXT, _hw_run_id TEXT)"))
    engine.dispose()
    for source, named in [(sql("s", pg_url, query='SELECT id, name, name AS "NAME" FROM t'), "'name' and 'NAME'"),
                          (sql("s", pg_url, query="SELECT id, name, name FROM t"), "repeats column 'name'"),
                          (sql("s", pg_url, "t"), "'_hw_run_id' uses the prefix _hw_")]:
        with pytest.raises(Exception, match=named) as refused:
            source.extract({}, run_id="r", loaded_at=NOW)
        assert "source 's'" in str(refused.value) and "\n" not in str(refused.value)


def test_postgres_dates_python_cannot_hold_quarantine_their_row(pg_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER, d DATE, at TIMESTAMPTZ)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, '2026-01-01', '2026-01-01 00:00:00+00'), "
                             "(2, '0001-01-01 BC', '2026-01-01 00:00:00+00'), (3, '2026-01-03', 'infinity')"))
    engine.dispose()
    ids, entries = run(Lake(str(tmp_path / "lake")), sql("s", pg_url, query="SELECT * FROM t ORDER BY id"), "r1")
    assert ids == [1] and sorted(e["line"] for e in entries) == [2, 3]
    assert all("cannot be read" in e["reason"] for e in entries), [e["reason"] for e in entries]
