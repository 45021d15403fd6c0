"""The `headwater` command through typer's runner, on a real pipeline, lake and DuckDB file."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.support.shop import expected_by_country, write_pipeline

cli = CliRunner()


@pytest.fixture
def ran(shop: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(shop)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    result = cli.invoke(app, ["run", str(write_pipeline(shop))])
    assert result.exit_code == 0, result.output
    return shop


def test_run_prints_a_summary_of_tables_rows_and_versions(ran: Path) -> None:
    result = cli.invoke(app, ["run", str(ran / "pipeline.py")])
    assert result.exit_code == 0, result.output
    assert "landed 0 new rows" in result.output
    assert "raw.orders" in result.output and "unchanged" in result.output


def test_show_history_and_query(ran: Path) -> None:
    shown = cli.invoke(app, ["show", "raw.orders", "--limit", "2"], env={"COLUMNS": "200"})  # every column
    assert shown.exit_code == 0 and "first 2 rows" in shown.output and "_hw_run_id" in shown.output
    history = cli.invoke(app, ["history", "models.revenue"])
    assert history.exit_code == 0 and "CREATE TABLE" in history.output  # the model's first version
    total = sum(expected_by_country(ran).values())
    query = cli.invoke(app, ["query", "select round(sum(revenue), 2) as total from by_country"])
    assert query.exit_code == 0, query.output
    assert f"{total:.1f}" in query.output
    lake = cli.invoke(app, ["query", "select count(*) as n from raw.orders"])
    assert lake.exit_code == 0, lake.output
    assert " 4 " in lake.output.replace("│", " ")


def test_doctor_reports_backend_lake_and_warehouse(ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "pandas-API models: pandas" in result.output
    assert "SQL models: DuckDB (backend pandas)" in result.output
    assert "polars models: polars, streaming, on the CPU (backend pandas)" in result.output
    monkeypatch.setenv("HEADWATER_SQL_ENGINE", "polars")
    polars_sql = cli.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert "SQL models: polars SQL, streaming, on the CPU (backend pandas)" in polars_sql.output
    assert "3 tables" not in result.output and "4 tables" in result.output  # 2 raw + 2 models


def test_failures_are_one_line_with_a_non_zero_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = cli.invoke(app, ["run", str(tmp_path / "nope.py")])
    assert missing.exit_code == 1
    assert "error: no pipeline file" in missing.output and "Traceback" not in missing.output
    no_table = cli.invoke(app, ["show", "raw.nothing"])
    assert no_table.exit_code == 1 and "no lake table 'raw.nothing'" in no_table.output
    bad = cli.invoke(app, ["run", str(tmp_path / "nope.py"), "--backend", "tpu"])
    assert bad.exit_code == 1


def test_run_summary_counts_quarantined_rows(ran: Path) -> None:
    (ran / "orders" / "day2.csv").write_text("order_id,customer_id,amount\n5,2,3.0\n6,1,not-a-number\n")
    result = cli.invoke(app, ["run", str(ran / "pipeline.py")])
    assert result.exit_code == 0, result.output
    assert "landed 1 new rows (1 quarantined)" in result.output
    shown = cli.invoke(app, ["show", "quarantine.orders"], env={"COLUMNS": "200"})  # whole values
    assert shown.exit_code == 0 and "not-a-number" in shown.output
