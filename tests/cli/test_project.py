"""`headwater init`, `ls`, `plan`, `test`, `reset` and `drop` through typer's runner, on real
pipelines, lakes and DuckDB files; every expected value is computed from the source data."""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.cli.app import console
from engine.lake import Lake
from tests.support.shop import expected_by_country, write_pipeline

cli = CliRunner()


@pytest.fixture(autouse=True)
def _pandas_and_wide(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """pandas models; a console wide enough that no table cell wraps (one test narrows it)."""
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    saved = console._width
    console.width = 250
    yield
    console._width = saved


def invoke(*args: str, code: int = 0, input: str | None = None) -> str:
    """The command's output as words (table borders dropped); asserts its exit status."""
    result = cli.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    return " ".join(re.sub("[│┃]", " ", result.output).split())


@pytest.fixture
def starter(tmp_path: Path) -> Path:
    """`headwater init` in a fresh folder."""
    invoke("init", str(tmp_path / "proj"))
    return tmp_path / "proj"


def expected(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """customer_revenue and country_revenue of the starter, from its CSV files and SQLite file."""
    orders = pd.concat(pd.read_csv(p) for p in sorted((root / "data").glob("orders*.csv")))
    with sqlite3.connect(root / "data" / "shop.sqlite") as con:
        customers = pd.read_sql("select customer_id, name, country from customers", con)
    per = {cid: (round(g["amount"].sum(), 2), len(g)) for cid, g in orders.groupby("customer_id")}
    people = customers[customers["customer_id"].isin(list(per))].sort_values("customer_id")
    by_customer = pd.DataFrame({"customer_id": people["customer_id"].tolist(), "country": people["country"].tolist(),
                                "revenue": [per[c][0] for c in people["customer_id"]],
                                "orders": [per[c][1] for c in people["customer_id"]]})
    by_country = by_customer.groupby("country").agg(customers=("customer_id", "size"), orders=("orders", "sum"),
                                                     revenue=("revenue", "sum")).reset_index()
    by_country["revenue"] = by_country["revenue"].round(2)
    return by_customer, by_country


def warehouse(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def test_init_writes_a_pipeline_that_runs_as_is(starter: Path) -> None:
    files = sorted(str(p.relative_to(starter)) for p in starter.rglob("*") if p.is_file())
    assert files == [".gitignore", "data/orders.csv", "data/shop.sqlite", "headwater.toml",
                     "models/country_revenue.sql", "pipeline.py"]
    ignored = (starter / ".gitignore").read_text().split()
    assert "lake/" in ignored and "warehouse.duckdb" in ignored
    invoke("run", str(starter / "pipeline.py"))
    assert (starter / "lake" / "raw" / "orders").is_dir()  # headwater.toml put the lake beside the pipeline
    by_customer, by_country = expected(starter)
    got = warehouse(starter, "select customer_id, country, revenue, orders from customer_revenue order by customer_id")
    pd.testing.assert_frame_equal(got, by_customer, check_dtype=False)
    got = warehouse(starter, "select country, customers, orders, revenue from country_revenue order by country")
    pd.testing.assert_frame_equal(got, by_country, check_dtype=False)
    comments = warehouse(starter, "select column_name, comment from duckdb_columns() "
                                  "where table_name = 'country_revenue' and comment is not null")
    assert set(comments["column_name"]) == {"country", "customers"}  # from the .sql file's header
    assert "6 check(s) of 2 model(s)" in invoke("test", str(starter / "pipeline.py"))


def test_the_starter_gives_the_same_rows_on_dask(starter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BACKEND", "dask")
    assert "models on dask" in invoke("run", str(starter / "pipeline.py"))
    by_customer, _ = expected(starter)
    got = warehouse(starter, "select customer_id, country, revenue, orders from customer_revenue order by customer_id")
    pd.testing.assert_frame_equal(got, by_customer, check_dtype=False)


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text("# mine\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    out = invoke("init", str(tmp_path), code=1)
    assert "already has pipeline.py, .gitignore" in out and "nothing was written" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "pipeline.py"]
    assert (tmp_path / "pipeline.py").read_text() == "# mine\n"


KINDS = '''
from engine import Pipeline, model, sources, sql_model

events = sources.files("events", "{root}/events/*.csv")

@model(inputs={{"events": "raw.events"}}, materialized="merge", primary_key="user_id", tags=["daily"],
       column_descriptions={{"n": "events of the user"}})
def per_user(events):
    """Events per user."""
    return events.groupby("user_id").agg({{"kind": "count"}}).reset_index().rename(columns={{"kind": "n"}})

@model(inputs={{"per_user": "per_user"}}, frame="polars", publish=False)
def busy(per_user):
    return per_user.filter(per_user["n"] > 1)

total = sql_model("total", "select count(*) as users from busy", description="How many busy users.")

pipeline = Pipeline("kinds", sources=[events], models=[per_user, busy, total])
'''


@pytest.fixture
def kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "a.csv").write_text("user_id,kind\n1,view\n1,like\n2,view\n")
    (tmp_path / "pipeline.py").write_text(KINDS.format(root=tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "pipeline.py"


def test_ls_lists_kinds_materializations_the_dag_and_descriptions(kinds: Path) -> None:
    out = invoke("ls", str(kinds))
    assert "raw.events files append" in out and "a.csv" not in out and "events/*.csv" in out
    assert "per_user [daily] pandas merge on user_id raw.events" in out
    assert "busy polars table, not published per_user" in out
    assert "total sql table busy" in out
    assert "per_user: Events per user. n: events of the user total: How many busy users." in out
    assert "1 source(s), 3 model(s)" in out
    partitioned = kinds.read_text().replace('frame="polars", publish=False', 'frame="polars", publish=False, '
                                            'partition_by="day"')
    kinds.write_text(partitioned.replace("per_user.filter(", "per_user.with_columns(day=pl.lit(None)).filter(")
                     .replace("from engine import", "import polars as pl\nfrom engine import"))
    assert "busy polars table, by day of day, not published per_user" in invoke("ls", str(kinds))
    picked = invoke("ls", str(kinds), "-s", "busy+")
    assert "per_user [daily]" not in picked and "busy" in picked and "total" in picked and "raw.events" not in picked
    assert "0 source(s), 2 model(s)" in picked
    assert "matches no model" in invoke("ls", str(kinds), "-s", "nosuch", code=1)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: (size, mtime in ns)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_plan_says_what_a_run_would_do_and_writes_nothing(starter: Path) -> None:
    pipeline = str(starter / "pipeline.py")
    before = snapshot(starter)
    first = invoke("plan", pipeline)
    assert snapshot(starter) == before  # no lake, no warehouse file, nothing else
    assert "raw.orders land 1 new file(s) of 1: orders.csv" in first
    assert "models.customer_revenue build first build" in first
    assert "would land 2 source(s), build 2 model(s), publish 2" in first
    invoke("run", pipeline)
    assert "would land 0 source(s), build 0 model(s), publish 0" in invoke("plan", pipeline)

    (starter / "data" / "orders_2.csv").write_text("order_id,customer_id,amount,ordered_at\n7,5,9.5,2026-01-10\n")
    sql = starter / "models" / "country_revenue.sql"
    sql.write_text(sql.read_text().replace("order by country", "order by country desc"))
    lake = Lake(str(starter / "lake"))
    versions = {t: lake.version(t) for t in lake.tables(internal=True)}
    before = snapshot(starter)
    out = invoke("plan", pipeline)
    assert snapshot(starter) == before and {t: lake.version(t) for t in lake.tables(internal=True)} == versions
    assert "raw.orders land 1 new file(s) of 2: orders_2.csv" in out
    assert "raw.customers unchanged no rows with updated_at >" in out
    assert "models.customer_revenue build raw.orders would land new rows: full build" in out
    assert "models.country_revenue build code changed; models.customer_revenue would be rebuilt" in out
    assert "customer_revenue publish models.customer_revenue would be rebuilt" in out
    only = invoke("plan", pipeline, "--exclude", "raw.orders", "--exclude", "customer_revenue")
    assert "models.customer_revenue" not in only and "country_revenue build code changed: full build" in only
    assert "country_revenue publish models.country_revenue would be rebuilt" in only
    # the plan was right: the run does what it said
    ran = invoke("run", pipeline)
    assert "raw.orders landed 1" in ran and "raw.customers unchanged" in ran
    assert "models.customer_revenue built" in ran and "models.country_revenue built" in ran


def test_plan_names_the_step_that_would_fail(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(
        "from engine import Pipeline, model, sources\n"
        f"events = sources.files('events', '{tmp_path}/nothing/*.csv')\n"
        "@model(inputs={'events': 'raw.events'})\ndef n(events):\n    return events\n"
        "pipeline = Pipeline('p', sources=[events], models=[n])\n")
    out = invoke("plan", str(tmp_path / "pipeline.py"), "--lake", str(tmp_path / "lake"), code=1)
    assert "error: the run would fail at" in out
    assert not (tmp_path / "lake").exists()


def test_test_runs_checks_on_the_current_tables_without_building(starter: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    pipeline = str(starter / "pipeline.py")
    assert "not built" in invoke("test", pipeline, code=1)
    invoke("run", pipeline)
    lake = Lake(str(starter / "lake"))
    table = lake.read("models.customer_revenue")
    twice = pd.concat([table.to_pandas(), table.to_pandas().head(1)])  # customer 1 twice
    import pyarrow as pa

    lake.write("models.customer_revenue", pa.Table.from_pandas(twice, preserve_index=False), run_id="tamper",
               meta={})
    versions = {t: lake.version(t) for t in lake.tables()}
    out = invoke("test", pipeline, code=1)
    assert "customer_revenue v1 unique(customer_id) fail 2 rows" in out  # both rows of the repeated key
    assert "fail customer_revenue unique(customer_id): 2 rows share 1 duplicated key(s)" in out
    assert "error: model 'customer_revenue'" in out and "unique(customer_id)" in out.split("error:")[1]
    assert "country_revenue v0 unique(country) pass" in out  # not rebuilt from the bad table
    assert {t: lake.version(t) for t in lake.tables()} == versions
    assert "0 check(s) of 0 model(s)" in invoke("test", pipeline, "-s", "raw.orders")


def test_reset_lands_the_files_again_once(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop)
    pipeline = str(write_pipeline(shop))
    invoke("run", pipeline)
    lake = Lake(str(shop / "lake"))
    version = lake.version("raw.orders")
    assert "nothing was changed" in invoke("reset", "raw.orders", input="n\n", code=1)
    assert "nothing was changed" in invoke("reset", "orders", code=1)  # no answer at all
    assert lake.version("raw.orders") == version
    asked = invoke("reset", "orders", input="y\n")
    assert "remove its 4 row(s) and forget 1 landed file(s)" in asked
    assert lake.read("raw.orders").num_rows == 0 and lake.state("raw.orders") == {}
    assert lake.version("raw.orders") == version + 1  # one commit: rows and state together
    ran = invoke("run", pipeline)
    assert "raw.orders landed 4" in ran
    rows = lake.read("raw.orders", columns=["order_id"]).column("order_id").to_pylist()
    assert sorted(rows) == [1, 2, 3, 4]  # landed again, once
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got["country"], got["revenue"])) == pytest.approx(expected_by_country(shop))
    assert "is not a raw table" in invoke("reset", "models.revenue", "--yes", code=1)


def test_drop_removes_the_lake_table_and_its_warehouse_table(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop)
    pipeline = str(write_pipeline(shop))
    invoke("run", pipeline)
    lake = Lake(str(shop / "lake"))
    assert "nothing was changed" in invoke("drop", "by_country", input="n\n", code=1)
    assert lake.exists("models.by_country")
    out = invoke("drop", "by_country", input="y\n")
    assert "dropped models.by_country and warehouse table by_country" in out
    assert not lake.exists("models.by_country") and lake.exists("models.revenue")
    published = warehouse(shop, "select name from _headwater_published")["name"].tolist()
    tables = warehouse(shop, "select table_name from duckdb_tables()")["table_name"].tolist()
    assert "by_country" not in published and "by_country" not in tables and "revenue" in tables
    invoke("drop", "raw.customers", "--yes")
    assert not lake.exists("raw.customers")
    assert "Headwater's own table" in invoke("drop", "_headwater.runs", "--yes", code=1)
    ran = invoke("run", pipeline)  # both come back: the source lands again, the model is built again
    assert "raw.customers landed 3" in ran and "models.by_country built" in ran
    got = warehouse(shop, "select country, revenue from by_country")
    assert dict(zip(got["country"], got["revenue"])) == pytest.approx(expected_by_country(shop))


def test_plan_and_ls_keep_every_column_at_80_columns(starter: Path) -> None:
    console.width = 80
    result = cli.invoke(app, ["plan", str(starter / "pipeline.py")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "step" in line)
    assert all(word in header for word in ("step", "table", "would", "why"))
    rows = [line for line in lines if line.startswith("│ ") and line.split("│")[1].strip()]
    assert [r.split("│")[1].strip() for r in rows] == ["load", "load", "model", "model", "publish", "publish"]
    assert [r.split("│")[3].strip() for r in rows] == ["land", "land", "build", "build", "publish", "publish"]
    listed = cli.invoke(app, ["ls", str(starter / "pipeline.py")])
    assert listed.exit_code == 0 and max(len(line) for line in listed.output.splitlines()) <= 80
    assert "customer_revenue" in listed.output and "country_revenue" in listed.output
