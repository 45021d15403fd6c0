"""SQL sources on SQLite and on a real PostgreSQL server (tests/support/pg.py starts one)."""
from __future__ import annotations

import sqlite3
import tracemalloc
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.sources import sql
from engine.sources.sql import SqlSource, decode_cursor
from engine.sources.sql_types import key_token
from tests.support.landing import land as land_source

NOW = datetime(2026, 3, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 8, 0, 0, 123456)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'src.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def land(lake: Lake, source: SqlSource, run_id: str) -> int | None:
    """Extract and land like the runner does; the new Delta version (None: nothing new)."""
    return land_source(lake, source, run_id).version


def photos_table(engine: sa.Engine) -> sa.Table:
    meta = sa.MetaData()
    table = sa.Table("photos", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("title", sa.Text), sa.Column("price", sa.Numeric(10, 2)),
                     sa.Column("liked", sa.Boolean), sa.Column("taken", sa.Date),
                     sa.Column("note", sa.Text),  # NULL in most rows
                     sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False))
    meta.create_all(engine)
    return table


def photo(i: int, at: datetime, title: str | None = None) -> dict[str, Any]:
    return {"id": i, "title": title or f"p{i}", "price": Decimal(f"{i}.{i:02d}"), "liked": i % 2 == 0,
            "taken": date(2026, 1, i), "note": "hand-picked" if i == 3 else None, "updated_at": at}


def by_key(rows: list[dict[str, Any]], columns: list[str]) -> dict[int, list[tuple[Any, ...]]]:
    """Every landed version of every row, by id, oldest first."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for r in sorted(rows, key=lambda r: (r["updated_at"], r["id"])):
        out.setdefault(r["id"], []).append(tuple(r[c] for c in columns))
    return out


def test_boundary_rows_land_once_by_primary_key(db_url: str, tmp_path: Path) -> None:
    pg = db_url.startswith("postgresql")
    tz = UTC if pg else None  # timestamptz on PostgreSQL; SQLite keeps naive times
    if pg:  # the server answers in +05:30; the lake must hold the same instants, in UTC
        db_url += "?options=-c%20TimeZone%3DAsia%2FKolkata"
    t = [T0.replace(tzinfo=tz) + timedelta(minutes=m) for m in range(5)]
    engine = sa.create_engine(db_url)
    table = photos_table(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [photo(1, t[0]), photo(2, t[1]), photo(3, t[1]),
                                      photo(4, t[2]), photo(5, t[2])])
    lake = Lake(str(tmp_path / "lake"))
    keyed = sql("photos", db_url, "photos", cursor="updated_at", primary_key="id", batch_rows=2)
    strict = sql("strict", db_url, "photos", cursor="updated_at", batch_rows=2)
    assert land(lake, keyed, "r1") == 0 and land(lake, strict, "r1") == 0
    state = lake.state("raw.photos")
    assert decode_cursor(state["cursor"]) == t[2] and state["boundary_keys"] == [[4], [5]]

    with engine.begin() as conn:  # a late row at the landed maximum, a newer row, an update
        conn.execute(table.insert(), [photo(6, t[2]), photo(7, t[3])])
        conn.execute(table.update().where(table.c.id == 2).values(title="edited", updated_at=t[3]))
    assert land(lake, keyed, "r2") == 1 and land(lake, strict, "r2") == 1
    assert land(lake, keyed, "r3") is None  # nothing new: no commit
    with engine.begin() as conn:  # another row at the new boundary t[3] (2 and 7 landed there)
        conn.execute(table.insert(), [photo(8, t[3])])
    assert land(lake, keyed, "r4") == 2
    assert lake.state("raw.photos")["boundary_keys"] == [[2], [7], [8]]
    assert land(lake, keyed, "r5") is None

    columns = ["title", "price", "liked", "taken", "note", "updated_at"]
    with engine.connect() as conn:
        source_rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
    if pg:
        source_rows = [{**r, "updated_at": r["updated_at"].astimezone(UTC)} for r in source_rows]
    landed = by_key(lake.read("raw.photos").to_pylist(), columns)
    latest = {i: versions[-1] for i, versions in landed.items()}
    assert latest == {r["id"]: tuple(r[c] for c in columns) for r in source_rows}
    assert {i: len(v) for i, v in landed.items()} == {1: 1, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1}
    # without a primary key the late row 6 at the old maximum is never read: the documented trade-off
    assert sorted(by_key(lake.read("raw.strict").to_pylist(), columns)) == [1, 2, 3, 4, 5, 7]
    schema = lake.read("raw.photos").schema
    assert schema.field("price").type == pa.decimal128(10, 2)
    assert schema.field("updated_at").type == pa.timestamp("us", tz="UTC" if pg else None)
    assert (schema.field("liked").type, schema.field("taken").type) == (pa.bool_(), pa.date32())
    engine.dispose()


def test_composite_key_query_source_and_key_limit(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    events = sa.Table("events", meta, sa.Column("shard", sa.Text, primary_key=True),
                      sa.Column("seq", sa.Integer, primary_key=True), sa.Column("day", sa.Date),
                      sa.Column("v", sa.Numeric(12, 3)))
    meta.create_all(engine)
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    with engine.begin() as conn:
        conn.execute(events.insert(), [{"shard": s, "seq": n, "day": d1, "v": Decimal("1.5")}
                                       for s in "ab" for n in range(3)])
    lake = Lake(str(tmp_path / "lake"))
    query = "select shard, seq, day, v from events where seq >= 1"
    src = sql("ev", db_url, query=query, cursor="day", primary_key=["shard", "seq"], batch_rows=3)
    capped = sql("cap", db_url, "events", cursor="day", primary_key=["shard", "seq"], max_boundary_keys=3)
    assert land(lake, src, "r1") == 0 and land(lake, capped, "r1") == 0
    assert lake.state("raw.ev")["boundary_keys"] == [["a", 1], ["a", 2], ["b", 1], ["b", 2]]
    assert lake.state("raw.cap")["boundary_keys"] is None  # 6 rows share the maximum: over the limit
    with engine.begin() as conn:
        conn.execute(events.insert(), [{"shard": "c", "seq": 1, "day": d1, "v": Decimal("2.25")},
                                       {"shard": "c", "seq": 2, "day": d2, "v": None}])
    assert land(lake, src, "r2") == 1 and land(lake, capped, "r2") == 1
    keys = sorted((r["shard"], r["seq"]) for r in lake.read("raw.ev").to_pylist())
    assert keys == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("c", 2)]
    values = {(r["shard"], r["seq"]): r["v"] for r in lake.read("raw.ev").to_pylist()}
    assert values[("c", 1)] == Decimal("2.250") and values[("c", 2)] is None
    if db_url.startswith("postgresql"):  # the query's column types come from the server
        assert lake.read("raw.ev").schema.field("v").type == pa.decimal128(12, 3)
    # over the limit the next run is strict: (c, 1) at the old maximum is not read
    capped_keys = {(r["shard"], r["seq"]) for r in lake.read("raw.cap").to_pylist()}
    assert ("c", 2) in capped_keys and ("c", 1) not in capped_keys and len(capped_keys) == 7
    with pytest.raises(HeadwaterError, match="primary key column 'nope' not found"):
        sql("x", db_url, "events", cursor="day", primary_key=["shard", "nope"]).extract(
            {}, run_id="r", loaded_at=NOW)
    engine.dispose()


def read_all(source: SqlSource) -> tuple[list[int], int]:
    """Batch sizes of a full read, and the peak bytes Python allocated while reading."""
    tracemalloc.start()
    try:
        sizes = [b.num_rows for b in source.extract({}, run_id="r", loaded_at=NOW).batches]
        return sizes, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def fill_big(engine: sa.Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("create table big (id integer primary key, body text)"))
        conn.execute(sa.text("insert into big values (:id, :body)"),
                     [{"id": i, "body": f"{i:08d}" + "x" * 92} for i in range(n)])


def test_big_table_streams_in_bounded_batches(db_url: str) -> None:
    n, batch = 40_000, 2_000
    engine = sa.create_engine(db_url)
    fill_big(engine, n)
    read_all(sql("big", db_url, "big", batch_rows=batch))  # first use imports and caches: not measured
    sizes, peak = read_all(sql("big", db_url, "big", batch_rows=batch))
    assert sum(sizes) == n and max(sizes) <= batch and len(sizes) >= n // batch
    _, whole = read_all(sql("big", db_url, "big", batch_rows=n))
    assert peak < whole / 4, (peak, whole)  # one batch at a time, not the table
    engine.dispose()


def test_postgres_reads_through_a_server_side_cursor(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    fill_big(engine, 5_000)
    batches = sql("big", pg_url, "big", batch_rows=1_000).extract({}, run_id="r", loaded_at=NOW).batches
    first = next(batches)
    with engine.connect() as conn:  # while the read is open, its session's last statement is a FETCH
        fetching = conn.execute(sa.text("select query from pg_stat_activity where datname = current_database() "
                                        "and pid <> pg_backend_pid()")).scalars().all()
    assert first.num_rows == 1_000 and any(q.startswith("FETCH FORWARD") for q in fetching), fetching
    assert sum(b.num_rows for b in batches) == 4_000
    engine.dispose()


def test_sqlite_text_times_sql_cannot_match_fall_back_to_strict(tmp_path: Path) -> None:
    """SQLite stores times as text; written without microseconds, `= max()` finds no row, so
    the boundary keys are unknown and the run is strict rather than dropping boundary rows."""
    path = tmp_path / "t.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table t (id integer primary key, at TIMESTAMP)")
    con.executemany("insert into t values (?, ?)", [(1, "2026-03-01 10:00:00"), (2, "2026-03-01 11:00:00")])
    con.commit()
    lake = Lake(str(tmp_path / "lake"))
    source = sql("t", f"sqlite:///{path}", "t", cursor="at", primary_key="id")
    assert land(lake, source, "r1") == 0 and lake.state("raw.t")["boundary_keys"] is None
    con.execute("insert into t values (3, '2026-03-01 12:00:00')")
    con.commit()
    con.close()
    assert land(lake, source, "r2") == 1 and land(lake, source, "r3") is None
    assert sorted(r["id"] for r in lake.read("raw.t").to_pylist()) == [1, 2, 3]


def test_key_tokens_do_not_depend_on_the_session_time_zone() -> None:
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    kolkata = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert key_token([kolkata, Decimal("1.50"), 7]) == key_token([at, Decimal("1.50"), 7])
    assert key_token([at]) == ("2026-03-01T12:00:00+00:00",)
