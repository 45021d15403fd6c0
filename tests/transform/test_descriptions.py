"""Model and column descriptions: declared on `@model` and `sql_model` (or a .sql header), stored
on the model's Delta table (its description, a `comment` on each column) and published as
warehouse comments (DuckDB here, PostgreSQL in the second test)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from engine import Config, Pipeline, Runner, model, sources, sql_model
from engine.lake.describe import Description
from engine.transform.sql import sql_file

ABOUT = {"country": "where the customer lives", "orders": "orders placed"}


def per_country(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders per country."""
    out = orders.groupby("country").agg({"order_id": "count"}).reset_index()
    return out.rename(columns={"order_id": "orders"})


def all_orders(orders: pd.DataFrame) -> pd.DataFrame:
    return orders[["order_id", "country"]]


def write_orders(root: Path, day: int, rows: list[tuple[int, str]]) -> None:
    (root / "orders").mkdir(exist_ok=True)
    lines = ["order_id,country"] + [f"{i},{c}" for i, c in rows]
    (root / "orders" / f"day{day}.csv").write_text("\n".join(lines) + "\n")


def make(root: Path, columns: dict[str, str], incremental_about: str = "every order, as landed") -> Pipeline:
    orders = sources.files("orders", f"{root}/orders/*.csv")
    return Pipeline("described", sources=[orders], models=[
        model(inputs={"orders": "raw.orders"}, column_descriptions=columns)(per_country),
        model(inputs={"orders": "raw.orders"}, materialized="incremental", description=incremental_about,
              column_descriptions={"order_id": "the order"})(all_orders),
        sql_model("top_country", "select country, orders from per_country order by orders desc limit 1",
                  description="The country with the most orders.",
                  column_descriptions={"orders": "its orders"}),
    ])


def run(root: Path, pipeline: Pipeline, warehouse: str) -> tuple[Runner, dict[str, str]]:
    """The runner, and the detail of each publish step."""
    runner = Runner(pipeline, Config.load(root, lake=str(root / "lake"), warehouse=warehouse, backend="pandas"))
    summary = runner.run()
    assert summary.ok, summary.error
    return runner, {s.name: s.detail for s in summary.steps if s.kind == "publish"}


def delta(root: Path, name: str) -> Description:
    return Description.of(DeltaTable(str(root / "lake" / "models" / name)))


def duckdb_comments(path: Path, table: str) -> tuple[str | None, dict[str, str | None]]:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("select comment from duckdb_tables() where table_name = ?", [table]).fetchone()
        cols = con.execute("select column_name, comment from duckdb_columns() where table_name = ?",
                           [table]).fetchall()
    assert row is not None
    return row[0], dict(cols)


def test_descriptions_reach_the_lake_table_and_the_warehouse(tmp_path: Path) -> None:
    write_orders(tmp_path, 1, [(1, "fr"), (2, "fr"), (3, "de")])
    wh = tmp_path / "wh.duckdb"
    run(tmp_path, make(tmp_path, ABOUT), f"duckdb:///{wh}")
    assert delta(tmp_path, "per_country") == Description("Orders per country.", ABOUT)  # the docstring
    assert delta(tmp_path, "top_country") == Description("The country with the most orders.",
                                                         {"orders": "its orders"})
    assert duckdb_comments(wh, "per_country") == ("Orders per country.", ABOUT)
    assert duckdb_comments(wh, "all_orders") == ("every order, as landed",
                                                 {"order_id": "the order", "country": None})
    # the rows are what they would be without descriptions
    got = pd.DataFrame(duckdb.connect(str(wh), read_only=True).execute(
        "select country, orders from per_country order by country").fetchall(), columns=["country", "orders"])
    assert got.to_dict("list") == {"country": ["de", "fr"], "orders": [1, 2]}


def test_a_changed_description_reaches_an_incremental_table_without_a_full_publish(tmp_path: Path) -> None:
    write_orders(tmp_path, 1, [(1, "fr"), (2, "de")])
    wh = tmp_path / "wh.duckdb"
    run(tmp_path, make(tmp_path, ABOUT), f"duckdb:///{wh}")
    write_orders(tmp_path, 2, [(3, "it")])
    runner, published = run(tmp_path, make(tmp_path, {"country": "ISO code"}, "all orders"), f"duckdb:///{wh}")
    assert published["all_orders"] == "to duckdb, append"  # the metadata-only commit added no rows
    assert delta(tmp_path, "all_orders") == Description("all orders", {"order_id": "the order"})
    assert delta(tmp_path, "per_country").columns == {"country": "ISO code"}  # a table model: in its commit
    history = runner.lake.history("models.all_orders")
    assert [c["operation"] for c in history[:2]] == ["UPDATE TABLE METADATA", "WRITE"]  # appended, then described
    described = [c for c in history if c.get("described")]
    assert len(described) == 1  # one metadata-only commit: only the description changed
    assert duckdb_comments(wh, "all_orders")[0] == "all orders"
    with duckdb.connect(str(wh), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("select order_id from all_orders").fetchall()) == [1, 2, 3]
    # nothing changed: the next run builds and publishes nothing
    again = Runner(make(tmp_path, {"country": "ISO code"}, "all orders"),
                   Config.load(tmp_path, lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{wh}",
                               backend="pandas")).run()
    assert {s.status for s in again.steps if s.kind != "load"} == {"unchanged"}


def test_descriptions_become_postgres_comments(tmp_path: Path, pg_url: str) -> None:
    import sqlalchemy as sa

    write_orders(tmp_path, 1, [(1, "fr"), (2, "it's")])
    run(tmp_path, make(tmp_path, {"country": "it's the country"}), pg_url)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        table = conn.execute(sa.text("select obj_description('per_country'::regclass)")).scalar()
        cols = dict(conn.execute(sa.text(
            "select attname, col_description(attrelid, attnum) from pg_attribute "
            "where attrelid = 'per_country'::regclass and attnum > 0 and not attisdropped")).all())
    engine.dispose()
    assert table == "Orders per country."
    assert cols == {"country": "it's the country", "orders": None}


def test_a_sql_file_header_describes_columns(tmp_path: Path) -> None:
    path = tmp_path / "models" / "by_country.sql"
    path.parent.mkdir()
    path.write_text("-- description: Orders per country.\n-- column country: ISO code\n"
                    "-- column orders: how many: all of them\n-- a plain comment\n"
                    "select country, count(*) as orders from raw.orders group by country\n")
    m = sql_file(path)
    assert m.description == "Orders per country."
    assert m.column_descriptions == {"country": "ISO code", "orders": "how many: all of them"}


@pytest.mark.parametrize("columns", [{"nosuch": "x"}, {}])
def test_columns_the_output_lacks_are_left_out(tmp_path: Path, columns: dict[str, Any]) -> None:
    write_orders(tmp_path, 1, [(1, "fr")])
    run(tmp_path, make(tmp_path, columns), f"duckdb:///{tmp_path / 'wh.duckdb'}")
    assert delta(tmp_path, "per_country").columns == {}
    schema = pa.schema(DeltaTable(str(tmp_path / "lake" / "models" / "per_country")).schema().to_arrow())
    assert schema.names == ["country", "orders"]


def test_a_partitioned_model_keeps_its_descriptions_and_publishes_only_changed_partitions(tmp_path: Path) -> None:
    from engine.lake.partitions import changed_partitions

    def daily(orders: pd.DataFrame) -> pd.DataFrame:
        return orders.groupby("day").agg({"order_id": "count"}).reset_index().rename(columns={"order_id": "n"})

    def make_daily(about: str) -> Pipeline:
        orders = sources.files("orders", f"{tmp_path}/orders/*.csv")
        return Pipeline("parts", sources=[orders], models=[
            model(inputs={"orders": "raw.orders"}, partition_by="day", description=about,
                  column_descriptions={"n": "orders that day"})(daily)], models_dir=None)

    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "a.csv").write_text("order_id,day\n1,2026-03-01\n2,2026-03-01\n3,2026-03-02\n")
    wh = tmp_path / "wh.duckdb"
    run(tmp_path, make_daily("orders per day"), f"duckdb:///{wh}")
    assert delta(tmp_path, "daily") == Description("orders per day", {"n": "orders that day"})
    (tmp_path / "orders" / "b.csv").write_text("order_id,day\n4,2026-03-02\n")
    runner, published = run(tmp_path, make_daily("orders each day"), f"duckdb:///{wh}")
    assert delta(tmp_path, "daily").table == "orders each day"  # set after the partition replace
    assert [c["operation"] for c in runner.lake.history("models.daily")][:2] == ["UPDATE TABLE METADATA", "WRITE"]
    assert changed_partitions(runner.lake, "models.daily", 0, 2) == ["2026-03-02"]  # the description adds none
    assert published["daily"] == "to duckdb, 1 partition(s) replaced"  # not the whole table
    assert duckdb_comments(wh, "daily")[0] == "orders each day"
    with duckdb.connect(str(wh), read_only=True) as con:
        assert sorted(con.execute("select cast(day as varchar), n from daily").fetchall()) == [
            ("2026-03-01", 2), ("2026-03-02", 2)]
