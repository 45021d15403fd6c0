"""SCD2 sources (write="scd2"): every version of each key, checked against histories computed
independently in plain Python over the source's snapshots (tests/support/history.py), for SQL and
file sources, over three runs of updates, deletes and re-inserts."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import ConfigError
from engine.lake import Lake
from engine.sources import files, sql
from tests.support.history import COLUMNS, SNAPSHOTS, T1, T2, T3, T4, expected_history, history_rows
from tests.support.landing import land


def database(path: Path, rows: dict[Any, dict[str, Any]]) -> str:
    """A SQLite file holding `rows` as table customers (replacing what it held); its URL."""
    with closing(sqlite3.connect(path)) as con, con:
        con.execute("create table if not exists customers (id integer primary key, name text, plan text)")
        con.execute("delete from customers")
        con.executemany("insert into customers values (?, ?, ?)", [(k, r["name"], r["plan"]) for k, r in rows.items()])
    return f"sqlite:///{path}"


def csv_file(path: Path, rows: dict[Any, dict[str, Any]]) -> None:
    path.write_text("id,name,plan\n" + "".join(f"{k},{r['name']},{r['plan']}\n" for k, r in rows.items()))


@pytest.mark.parametrize("hard_deletes", ["invalidate", "ignore"])
def test_sql_history_over_three_runs_equals_an_independent_computation(tmp_path: Path, hard_deletes: str) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = sql("customers", database(tmp_path / "app.sqlite", SNAPSHOTS[0]), table="customers",
                 primary_key="id", write="scd2", **({} if hard_deletes == "invalidate" else {"hard_deletes": "ignore"}))
    loaded = []
    for when, snapshot in zip((T1, T2, T3), SNAPSHOTS):
        database(tmp_path / "app.sqlite", snapshot)
        loaded.append(land(lake, source, f"r{len(loaded)}", when))
        assert loaded[-1].rows == len(snapshot)  # every row of the extract landed (as a version or unchanged)
    want = expected_history(list(zip((T1, T2, T3), SNAPSHOTS)), columns=COLUMNS,
                            invalidate=hard_deletes == "invalidate")
    assert history_rows(lake, "raw.customers", "id", COLUMNS) == want
    # run 2: key 5 new; keys 1 and 3 changed; key 2 vanished (closed only with invalidate)
    assert (loaded[1].inserted, loaded[1].updated) == (1, 2)
    assert [c.version for c in loaded] == [0, 1, 2]

    version = lake.version("raw.customers")
    again = land(lake, source, "r3", T4)  # nothing changed: nothing committed
    assert again.version is None and lake.version("raw.customers") == version
    assert history_rows(lake, "raw.customers", "id", COLUMNS) == want


def test_files_history_with_track_ignores_changes_to_other_columns(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    lake = Lake(str(tmp_path / "lake"))
    every = files("customers", f"{tmp_path}/in/*.csv", write="scd2", primary_key="id")
    plans = files("plans", f"{tmp_path}/in/*.csv", write="scd2", primary_key="id", track=["plan"])
    for day, (when, snapshot) in enumerate(zip((T1, T2, T3), SNAPSHOTS)):
        csv_file(tmp_path / "in" / f"day{day}.csv", snapshot)  # each run: one new file, the whole table
        land(lake, every, f"r{day}", when)
        land(lake, plans, f"r{day}", when)
    snapshots = list(zip((T1, T2, T3), SNAPSHOTS))
    assert history_rows(lake, "raw.customers", "id", COLUMNS) == expected_history(snapshots, columns=COLUMNS)
    assert history_rows(lake, "raw.plans", "id", COLUMNS) == expected_history(snapshots, columns=COLUMNS,
                                                                              track=["plan"])
    # cy's rename made a version in customers only; plans keeps the name its version started with
    assert [r[1] for r in history_rows(lake, "raw.plans", "id", COLUMNS) if r[0] == 3] == ["cy"]
    assert lake.state("raw.plans") == {"files": [str(tmp_path / "in" / f"day{d}.csv") for d in range(3)]}
    assert land(lake, plans, "r3", T4).version is None  # no new file: nothing to do


def test_a_cursor_stamps_versions_and_deletes_are_not_seen(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    stamps = {1: T1, 2: T1, 3: T1 + timedelta(hours=1)}
    with closing(sqlite3.connect(db)) as con, con:
        con.execute("create table customers (id integer primary key, plan text, updated_at timestamp)")
        con.executemany("insert into customers values (?, ?, ?)",
                        [(k, "free", stamps[k].replace(tzinfo=None)) for k in stamps])
    lake = Lake(str(tmp_path / "lake"))
    source = sql("customers", f"sqlite:///{db}", table="customers", cursor="updated_at", primary_key="id",
                 write="scd2")
    land(lake, source, "r1", T2)
    edited = T2 + timedelta(hours=5)
    with closing(sqlite3.connect(db)) as con, con:
        con.execute("update customers set plan = 'pro', updated_at = ? where id = 1", (edited.replace(tzinfo=None),))
        con.execute("delete from customers where id = 2")  # a cursor never sees this
    second = land(lake, source, "r2", T3)
    assert (second.rows, second.inserted, second.updated) == (1, 0, 1)  # only the changed row was read
    got = sorted((r["id"], r["plan"], r["_hw_valid_from"], r["_hw_valid_to"])
                 for r in lake.read("raw.customers").to_pylist())
    assert got == [(1, "free", T1, edited), (1, "pro", edited, None), (2, "free", T1, None),
                   (3, "free", T1 + timedelta(hours=1), None)]
    assert land(lake, source, "r3", T4).version is None


@pytest.mark.parametrize("declare, why", [
    (dict(cursor="updated_at", hard_deletes="invalidate"), "never sees a deleted one"),
    (dict(hard_deletes="sometimes"), "unknown hard_deletes"),
    (dict(track=[]), "non-empty list"),
    (dict(track=["_hw_loaded_at"]), "load column"),
    (dict(primary_key=None), "needs primary_key"),
])
def test_scd2_options_that_do_not_fit_are_config_errors(declare: dict[str, Any], why: str) -> None:
    options: dict[str, Any] = {"primary_key": "id", "write": "scd2", **declare}
    with pytest.raises(ConfigError, match=why):
        sql("customers", "sqlite:///x.sqlite", table="customers", **options)
    with pytest.raises(ConfigError, match="options of write='scd2'"):
        files("customers", "in/*.csv", primary_key="id", write="merge", hard_deletes="ignore")


def test_null_and_repeated_keys_are_quarantined_and_counted(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(db)) as con, con:  # a log with no key constraint
        con.execute("create table log (id integer, plan text, at timestamp)")
        con.executemany("insert into log values (?, ?, ?)", [
            (1, "free", "2026-03-01 10:00:00"), (None, "lost", "2026-03-01 10:30:00"),
            (2, "free", "2026-03-01 11:00:00"), (1, "pro", "2026-03-01 12:00:00"), (1, "team", "2026-03-01 09:00:00")])
    lake = Lake(str(tmp_path / "lake"))
    source = sql("log", f"sqlite:///{db}", table="log", cursor="at", primary_key="id", write="scd2")
    commit = land(lake, source, "r1", T2)
    quarantined = lake.read("quarantine.log").to_pylist()
    assert commit.rows + len(quarantined) == 5  # rows in = rows landed + rows quarantined
    got = sorted((r["id"], r["plan"]) for r in lake.read("raw.log").to_pylist())
    assert got == [(1, "pro"), (2, "free")]  # the last by the cursor, not the last read (09:00)
    reasons = sorted(r["reason"] for r in quarantined)
    assert len(reasons) == 3 and "primary key id is null" in reasons[2]
    assert all("key id=1 appears more than once" in r and "the last by at" in r for r in reasons[:2])
    assert {'"plan": "free"', '"plan": "team"'} == {r["raw"].split(", ")[1].rstrip("}") for r in quarantined
                                                    if r["raw"].startswith('{"id": 1')}

    (tmp_path / "in").mkdir()
    csv_file(tmp_path / "in" / "a.csv", {1: {"name": "x", "plan": "free"}, 2: {"name": "y", "plan": "free"}})
    (tmp_path / "in" / "b.csv").write_text("id,name,plan\n1,x,pro\n,nobody,free\n")
    landed = land(lake, files("people", f"{tmp_path}/in/*.csv", write="scd2", primary_key="id"), "r1", T2)
    people = lake.read("quarantine.people").to_pylist()
    assert landed.rows == 2 and len(people) == 2  # 5 rows in
    assert sorted((r["id"], r["plan"]) for r in lake.read("raw.people").to_pylist()) == [(1, "pro"), (2, "free")]
    repeated = next(r for r in people if "appears more than once" in r["reason"])
    assert repeated["file"] == str(tmp_path / "in" / "a.csv") and "the last read landed" in repeated["reason"]


def test_an_extract_with_quarantined_rows_closes_no_vanished_key(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    lake = Lake(str(tmp_path / "lake"))
    source = files("customers", f"{tmp_path}/in/*.csv", write="scd2", primary_key="id", schema={"id": "int64"})
    csv_file(tmp_path / "in" / "day0.csv", SNAPSHOTS[0])
    land(lake, source, "r0", T1)
    # day 1: key 2 is gone, but key 4's row cannot be read: the extract is not the whole table
    (tmp_path / "in" / "day1.csv").write_text("id,name,plan\n1,ann,pro\n3,cy,pro\n4x,di,free\n")
    second = land(lake, source, "r1", T2)
    assert second.updated == 1 and "0 closed" in second.detail
    current = sorted(r["id"] for r in lake.read("raw.customers").to_pylist() if r["_hw_valid_to"] is None)
    assert current == [1, 2, 3, 4]
    csv_file(tmp_path / "in" / "day2.csv", {1: SNAPSHOTS[1][1], 3: SNAPSHOTS[0][3]})  # a whole extract again
    third = land(lake, source, "r2", T3)
    assert "2 closed" in third.detail
    ended = {r["id"]: r["_hw_valid_to"] for r in lake.read("raw.customers").to_pylist() if r["id"] in (2, 4)}
    assert ended == {2: T3, 4: T3}


def test_a_new_column_makes_versions_only_where_it_has_values(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    lake = Lake(str(tmp_path / "lake"))
    source = files("customers", f"{tmp_path}/in/*.parquet", write="scd2", primary_key="id")
    rows = [{"id": k, **r} for k, r in SNAPSHOTS[0].items()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "day0.parquet")
    land(lake, source, "r0", T1)
    tiers = pa.Table.from_pylist([{**r, "tier": "gold" if r["id"] == 1 else None} for r in rows])
    pq.write_table(tiers, tmp_path / "in" / "day1.parquet")  # a new column, null but for key 1
    second = land(lake, source, "r1", T2)
    assert (second.inserted, second.updated, second.rows) == (0, 1, 4)
    got = sorted((r["id"], r["tier"] or "", r["_hw_valid_to"] or T4) for r in lake.read("raw.customers").to_pylist())
    assert got == [(1, "", T2), (1, "gold", T4), (2, "", T4), (3, "", T4), (4, "", T4)]


def test_a_widened_column_keeps_the_versions(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    lake = Lake(str(tmp_path / "lake"))
    source = files("scores", f"{tmp_path}/in/*.parquet", write="scd2", primary_key="id")
    pq.write_table(pa.table({"id": [1, 2, 3], "n": pa.array([10, 20, 30], pa.int32())}), tmp_path / "in" / "a.parquet")
    land(lake, source, "r0", T1)
    pq.write_table(pa.table({"id": [1, 2, 3], "n": pa.array([10, 20, 31], pa.int64())}), tmp_path / "in" / "b.parquet")
    second = land(lake, source, "r1", T2)  # n widens to int64: the table is rewritten first, then the load
    assert (second.inserted, second.updated, second.rows) == (0, 1, 3)
    got = sorted((r["id"], r["n"], r["_hw_valid_from"], r["_hw_valid_to"]) for r in lake.read("raw.scores").to_pylist())
    assert got == [(1, 10, T1, None), (2, 20, T1, None), (3, 30, T1, T2), (3, 31, T2, None)]
    assert lake.table("raw.scores").schema().to_arrow().field("n").type == pa.int64()
    assert lake.state("raw.scores") == {"files": [str(tmp_path / "in" / f) for f in ("a.parquet", "b.parquet")]}
