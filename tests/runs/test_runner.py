"""The runner end to end on a small real pipeline: CSV + SQLite sources, two models, DuckDB
(tests/support/shop.py; the `shop` fixture is in tests/conftest.py)."""
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from engine import Config, Runner
from engine.pipeline import load_pipeline
from tests.support.shop import GOOD, PIPELINE, expected_by_country, write_pipeline


def config(root: Path) -> Config:
    return Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root}/wh.duckdb",
                       backend="pandas")


def warehouse(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


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


def test_a_failing_model_skips_its_publish_and_keeps_the_last_good_version(shop: Path) -> None:
    assert Runner(load_pipeline(write_pipeline(shop)), config(shop)).run().ok
    broken = load_pipeline(write_pipeline(shop, 'return revenue["no_such_column"]'))
    runner = Runner(broken, config(shop))
    before = runner.lake.version("models.by_country")
    summary = runner.run()
    assert not summary.ok
    line = PIPELINE.format(root=shop, body="").splitlines().index("def by_country(revenue):") + 2
    assert f"model 'by_country' failed: pipeline.py:{line} in by_country: KeyError: 'no_such_column'" \
        in summary.error
    assert runner.lake.version("models.by_country") == before
    assert [(s.name, s.status) for s in summary.steps if s.kind == "publish"] == [
        ("revenue", "unchanged"), ("by_country", "skipped")]
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


def test_each_stage_logs_through_its_own_logger(shop: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A user's handler on the `headwater` logger hears every stage of a run, each under its
    own logger (Prefect's log capture works the same way)."""
    with caplog.at_level("DEBUG", logger="headwater"):
        summary = Runner(load_pipeline(write_pipeline(shop)), config(shop)).run()
    assert summary.ok
    by_logger = {r.name for r in caplog.records}
    assert {"headwater.load", "headwater.lake", "headwater.runs", "headwater.publish"} <= by_logger
    landed = [r.getMessage() for r in caplog.records if r.name == "headwater.load"]
    assert any(m.startswith("raw.orders: 4 rows landed (version 0") for m in landed)
    published = [r.getMessage() for r in caplog.records if r.name == "headwater.publish"]
    assert any(m.startswith(f"by_country: replace {len(expected_by_country(shop))} rows") for m in published)
