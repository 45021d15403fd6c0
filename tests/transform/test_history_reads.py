"""Reading SCD2 history: a model input `as_of="current"` reads only the current rows (every
version otherwise), and a published history table gets a `<name>_current` view in DuckDB and
PostgreSQL. The history here is a model's output with the SCD2 columns, so these tests need no
SCD2 source; the rows expected are written out by hand from the input file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from engine import Config, Pipeline, Runner, model, sources, sql_model
from engine.errors import ConfigError

VERSIONS = [  # (photo_id, title, valid_from, valid_to): photo 1 renamed, photo 2 deleted, photo 3 current
    (1, "old", "2026-03-01", "2026-03-05"), (1, "new", "2026-03-05", None),
    (2, "gone", "2026-03-02", "2026-03-04"), (3, "cat", "2026-03-03", None)]


@model(inputs={"versions": "raw.versions"})
def history(versions: pd.DataFrame) -> pd.DataFrame:
    out = versions.rename(columns={"valid_from": "_hw_valid_from", "valid_to": "_hw_valid_to"})
    out["_hw_valid_from"] = pd.to_datetime(out["_hw_valid_from"])
    out["_hw_valid_to"] = pd.to_datetime(out["_hw_valid_to"])
    return out[["photo_id", "title", "_hw_valid_from", "_hw_valid_to"]]


@model(inputs={"photos": "history"}, as_of={"photos": "current"})
def titles(photos: pd.DataFrame) -> pd.DataFrame:
    return photos[["photo_id", "title"]]


@model(inputs={"photos": "history"})
def every_version(photos: pd.DataFrame) -> pd.DataFrame:
    return photos[["photo_id", "title"]]


def run(root: Path, warehouse: str, *extra: Any) -> Runner:
    write(root / "versions.csv", VERSIONS)
    source = sources.files("versions", f"{root}/versions*.csv", format="csv")
    runner = Runner(Pipeline("h", sources=[source], models=[history, titles, every_version, *extra], models_dir=None),
                    Config.load(root, lake=str(root / "lake"), backend="pandas", warehouse=warehouse))
    summary = runner.run()
    assert summary.ok, summary.error
    return runner


def write(path: Path, versions: list[tuple[Any, ...]]) -> None:
    lines = [",".join("" if v is None else str(v) for v in r) for r in versions]
    path.write_text("\n".join(["photo_id,title,valid_from,valid_to", *lines]) + "\n")


def rows(runner: Runner, name: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in runner.lake.read(f"models.{name}").to_pylist())


def test_an_input_read_as_of_current_holds_only_the_current_rows(tmp_path: Path) -> None:
    current_sql = sql_model("titles_sql", "select photo_id, title from history", as_of={"history": "current"})
    runner = run(tmp_path, f"duckdb:///{tmp_path}/wh.duckdb", current_sql)
    assert rows(runner, "titles") == rows(runner, "titles_sql") == [(1, "new"), (3, "cat")]
    assert rows(runner, "every_version") == sorted((p, t) for p, t, _, _ in VERSIONS)  # the default: all versions
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert sorted(con.execute("select photo_id, title from history_current").fetchall()) == [(1, "new"), (3, "cat")]
        assert con.execute("select count(*) from history").fetchone() == (len(VERSIONS),)


def test_the_current_view_survives_a_republish_on_postgres(tmp_path: Path, pg_url: str) -> None:
    run(tmp_path, pg_url)
    write(tmp_path / "versions2.csv", [(4, "dog", "2026-03-06", None)])
    run(tmp_path, pg_url)  # the history table is replaced: its view must be dropped and made again
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        got = sorted(tuple(r) for r in conn.execute(sa.text("select photo_id, title from history_current")))
    engine.dispose()
    assert got == [(1, "new"), (3, "cat"), (4, "dog")]


def test_as_of_is_checked_at_declaration() -> None:
    with pytest.raises(ConfigError, match="as_of names 'nope', which is not an input"):
        model(inputs={"p": "raw.p"}, as_of={"nope": "current"}, name="m")(lambda p: p)
    with pytest.raises(ConfigError, match="as_of=\\{'p': 'yesterday'\\} is not known"):
        model(inputs={"p": "raw.p"}, as_of={"p": "yesterday"}, name="m")(lambda p: p)


def test_a_real_scd2_source_read_current_and_published_with_its_view(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "crm.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table customers (id integer primary key, plan text)")
        con.executemany("insert into customers values (?, ?)", [(1, "free"), (2, "pro"), (3, "free")])
    con.close()
    customers = sources.sql("customers", f"sqlite:///{db}", table="customers", primary_key="id", write="scd2")
    now = sql_model("plans_now", "select id, plan from raw.customers", as_of={"raw.customers": "current"})
    every = sql_model("plans_history", "select * from raw.customers")
    runner = Runner(Pipeline("crm", sources=[customers], models=[now, every], models_dir=None),
                    Config.load(tmp_path, lake=str(tmp_path / "lake"), backend="pandas",
                                warehouse=f"duckdb:///{tmp_path}/wh.duckdb"))
    assert runner.run().ok
    with sqlite3.connect(db) as con:  # 1 upgrades, 2 leaves
        con.execute("update customers set plan = 'pro' where id = 1")
        con.execute("delete from customers where id = 2")
    con.close()
    summary = runner.run()
    assert summary.ok, summary.error
    assert rows(runner, "plans_now") == [(1, "pro"), (3, "free")]
    history = sorted((r["id"], r["plan"], r["_hw_valid_to"] is None)
                     for r in runner.lake.read("models.plans_history").to_pylist())
    assert history == [(1, "free", False), (1, "pro", True), (2, "pro", False), (3, "free", True)]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert sorted(con.execute("select id, plan from plans_history_current").fetchall()) == [(1, "pro"), (3, "free")]
