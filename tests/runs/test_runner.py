"""The runner end to end on a small real pipeline: CSV + SQLite sources, two models, DuckDB."""
import sqlite3
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from engine import Config, Runner
from engine.pipeline import load_pipeline

PIPELINE = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", "{root}/orders/*.csv")
customers = sources.sql("customers", "sqlite:///{root}/shop.sqlite", "customers", cursor="id")

@model(inputs={{"orders": "raw.orders", "customers": "raw.customers"}})
def revenue(orders, customers, ctx):
    per = orders.groupby("customer_id", as_index=False).agg(revenue=("amount", "sum"), n=("amount", "size"))
    out = customers[["id", "country"]].merge(per, left_on="id", right_on="customer_id", how="inner")
    return out[["id", "country", "revenue", "n"]]

@model(inputs={{"revenue": "revenue"}})
def by_country(revenue):
    {body}

pipeline = Pipeline("shop", sources=[orders, customers], models=[revenue, by_country])
'''
GOOD = 'return revenue.groupby("country", as_index=False).agg(revenue=("revenue", "sum"))'


def write_pipeline(root: Path, body: str = GOOD) -> Path:
    path = root / "pipeline.py"
    path.write_text(PIPELINE.format(root=root, body=body))
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "day1.csv").write_text(
        "order_id,customer_id,amount\n1,1,10.5\n2,1,4.5\n3,2,7.0\n4,3,1.0\n")
    con = sqlite3.connect(tmp_path / "shop.sqlite")
    con.execute("create table customers (id integer primary key, country text)")
    con.executemany("insert into customers values (?, ?)", [(1, "fr"), (2, "de"), (3, "fr")])
    con.commit()
    con.close()
    return tmp_path


def config(root: Path) -> Config:
    return Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root}/wh.duckdb",
                       backend="pandas")


def warehouse(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def expected_by_country(root: Path) -> dict[str, float]:
    orders = pd.concat(pd.read_csv(p) for p in sorted((root / "orders").glob("*.csv")))
    with sqlite3.connect(root / "shop.sqlite") as con:
        customers = pd.read_sql("select * from customers", con)
    joined = orders.merge(customers, left_on="customer_id", right_on="id")
    return joined.groupby("country")["amount"].sum().to_dict()


def test_run_lands_builds_publishes_then_changes_nothing(shop: Path) -> None:
    runner = Runner(load_pipeline(write_pipeline(shop)), config(shop))
    first = runner.run()
    assert first.ok, first.error
    status = {(s.kind, s.name): (s.status, s.rows) for s in first.steps}
    assert status[("load", "orders")] == ("landed", 4)
    assert status[("load", "customers")] == ("landed", 3)
    assert status[("model", "revenue")] == ("built", 3)
    assert status[("publish", "by_country")][0] == "published"
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got.country, got.revenue)) == pytest.approx(expected_by_country(shop))

    versions = {t: runner.lake.version(t) for t in runner.lake.tables()}
    second = runner.run()
    assert second.ok and second.rows_landed() == 0
    assert {s.status for s in second.steps} == {"unchanged"}
    assert {t: runner.lake.version(t) for t in runner.lake.tables()} == versions

    (shop / "orders" / "day2.csv").write_text("order_id,customer_id,amount\n5,2,3.0\n")
    third = runner.run()
    assert [s.rows for s in third.steps if s.name == "orders" and s.kind == "load"] == [1]
    assert {s.status for s in third.steps if s.kind == "model"} == {"built"}
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got.country, got.revenue)) == pytest.approx(expected_by_country(shop))


def test_a_failing_model_stops_the_run_and_keeps_the_last_good_version(shop: Path) -> None:
    assert Runner(load_pipeline(write_pipeline(shop)), config(shop)).run().ok
    broken = load_pipeline(write_pipeline(shop, 'return revenue["no_such_column"]'))
    runner = Runner(broken, config(shop))
    before = runner.lake.version("models.by_country")
    summary = runner.run()
    assert not summary.ok
    assert "model 'by_country' failed: KeyError" in summary.error
    assert runner.lake.version("models.by_country") == before
    assert not any(s.kind == "publish" for s in summary.steps)
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got.country, got.revenue)) == pytest.approx(expected_by_country(shop))


def test_changed_model_code_rebuilds_only_that_model(shop: Path) -> None:
    assert Runner(load_pipeline(write_pipeline(shop)), config(shop)).run().ok
    doubled = GOOD.replace('("revenue", "sum"))', '("revenue", "sum")).assign(revenue=lambda d: d.revenue * 2)')
    summary = Runner(load_pipeline(write_pipeline(shop, doubled)), config(shop)).run()
    assert {s.name: s.status for s in summary.steps if s.kind == "model"} == {
        "revenue": "unchanged", "by_country": "built"}
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got.country, got.revenue)) == pytest.approx(
        {k: 2 * v for k, v in expected_by_country(shop).items()})
