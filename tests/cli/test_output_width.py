"""What `headwater` prints fits the terminal it is printed on (80, 120 and 200 columns): the run
summary keeps step, table, status, rows and version whole, details wrap beside them or move
below; `runs`, `history` and `doctor` print plain values; the backend note is one line. Every
number a test expects is read from the lake, the warehouse or the source files, not the CLI."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable
from rich.cells import cell_len
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.lake import Lake
from engine.runs import manifest
from tests.support.shop import write_pipeline

cli = CliRunner()
WIDTHS = [80, 120, 200]
LONG = " ".join(f"word{i:02d}" for i in range(45))  # a 314-character error message


def headwater(*args: str, width: int, **env: str) -> Result:
    return cli.invoke(app, list(args), env={"COLUMNS": str(width), **env})


def assert_fits(output: str, width: int) -> None:
    """Every line fits in `width`, but the final `error:` line: one line by design (the terminal
    wraps it; scripts and the tests of one-line errors read it whole)."""
    too_wide = [line for line in output.splitlines()
                if cell_len(line.rstrip()) > width and not line.startswith("error: ")]
    assert not too_wide, "\n".join(too_wide)


def expected_steps(root: Path, warehouse: Path) -> list[tuple[str, str, str, int, int]]:
    """(step, table, status, rows, version) of a first run of the shop pipeline, from its
    inputs, its lake and its warehouse."""
    orders = sum(len(p.read_text().splitlines()) - 1 for p in (root / "orders").glob("*.csv"))
    with sqlite3.connect(root / "shop.sqlite") as con:
        customers = con.execute("select count(*) from customers").fetchone()[0]
    con.close()
    lake = root / "lake"
    steps = [("load", "raw.orders", "landed", orders, DeltaTable(str(lake / "raw" / "orders")).version()),
             ("load", "raw.customers", "landed", customers, DeltaTable(str(lake / "raw" / "customers")).version())]
    with duckdb.connect(str(warehouse), read_only=True) as db:
        for name in ("revenue", "by_country"):
            table = DeltaTable(str(lake / "models" / name))
            steps.append(("model", f"models.{name}", "built", table.to_pyarrow_table().num_rows, table.version()))
            published = db.execute(f"select count(*) from {name}").fetchone()[0]
            steps.append(("publish", name, "published", published, table.version()))
    return steps


def summary_row(output: str, step: str, table: str) -> list[str]:
    (row,) = [line.split() for line in output.splitlines() if line.split()[:2] == [step, table]]
    return row


@pytest.fixture
def shop_dir(shop: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(shop)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    write_pipeline(shop)
    return shop


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_keeps_step_table_status_rows_and_version(shop_dir: Path, width: int) -> None:
    result = headwater("run", "pipeline.py", width=width)
    assert result.exit_code == 0, result.output
    assert_fits(result.output, width)
    for step, table, status, rows, version in expected_steps(shop_dir, shop_dir / "warehouse.duckdb"):
        row = summary_row(result.output, step, table)
        assert row[2:5] == [status, f"{rows:,}", str(version)], row
    lines = result.output.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["step", "table"])
    if width >= 120:  # room beside the table: details there, none below
        assert header.split()[-1] == "detail" and "details" not in lines
        assert summary_row(result.output, "load", "raw.orders")[6:] == "1 new file(s) of 1".split()
    else:
        assert "detail" not in header.split() and "details" in lines
        assert any(line.split()[:1] == ["raw.orders"] and "new file(s)" in line for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_long_failure_detail_wraps_and_squeezes_nothing(shop_dir: Path, width: int) -> None:
    write_pipeline(shop_dir, body=f'raise ValueError("{LONG}")')
    result = headwater("run", "pipeline.py", width=width)
    assert result.exit_code == 1
    assert_fits(result.output, width)
    assert summary_row(result.output, "model", "models.by_country")[2:4] == ["failed", "0"]
    assert summary_row(result.output, "publish", "by_country")[2] == "skipped"
    revenue = DeltaTable(str(shop_dir / "lake" / "models" / "revenue"))
    assert summary_row(result.output, "model", "models.revenue")[2:5] == [
        "built", f"{revenue.to_pyarrow_table().num_rows:,}", str(revenue.version())]
    words = result.output.split()
    assert all(f"word{i:02d}" in words for i in range(45))  # the whole message, wrapped by words


def test_the_backend_note_is_one_line(shop_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BACKEND", "auto")
    result = headwater("run", "pipeline.py", width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith("backend: ")]
    assert lines[at + 1].startswith("landed "), lines[at:at + 2]
    assert len(lines[at]) <= 80


@pytest.mark.parametrize("width", [80, 200])
def test_runs_history_and_doctor_print_plain_values(shop_dir: Path, width: int) -> None:
    assert headwater("run", "pipeline.py", width=width).exit_code == 0
    (recorded,) = manifest.runs(Lake(str(shop_dir / "lake")))
    runs = headwater("runs", width=width)
    assert runs.exit_code == 0, runs.output
    assert_fits(runs.output, width)
    row = next(line.split() for line in runs.output.splitlines() if line.startswith(recorded["run_id"]))
    landed = sum(s["rows"] for s in recorded["steps"] if s["kind"] == "load")
    assert row[1:4] == ["ok", f"{landed:,}", "2"]  # status, rows landed, models built
    history = headwater("history", "raw.customers", width=width)
    assert history.exit_code == 0, history.output
    assert_fits(history.output, width)
    with sqlite3.connect(shop_dir / "shop.sqlite") as con:
        last_id = con.execute("select max(id) from customers").fetchone()[0]
    con.close()
    assert f"cursor {last_id}" in history.output
    models = headwater("history", "models.by_country", width=width)
    assert f"models.revenue v{DeltaTable(str(shop_dir / 'lake' / 'models' / 'revenue')).version()}" in models.output
    doctor = headwater("doctor", width=width)
    assert doctor.exit_code == 0, doctor.output
    assert_fits(doctor.output, width)
    for output in (runs.output, history.output, models.output, doctor.output):
        assert not re.search(r"[{\[]'|': ", output), output  # no Python dict or list reprs
    assert "gpu: " in doctor.output


def test_listings_name_the_columns_they_leave_out(shop_dir: Path) -> None:
    assert headwater("run", "pipeline.py", width=80).exit_code == 0
    narrow = headwater("runs", width=80)
    wide = headwater("runs", width=200)
    header = next(line for line in wide.output.splitlines() if line.startswith("run "))
    shown = next(line for line in narrow.output.splitlines() if line.startswith("run "))
    missing = [name for name in ("started (UTC)", "pipeline") if name in header and name not in shown]
    assert missing and f"not shown at 80 columns: {', '.join(missing)}" in narrow.output
    assert "not shown" not in wide.output


def test_the_demo_at_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    result = headwater("demo", str(tmp_path), width=80)
    assert result.exit_code == 0, result.output
    assert_fits(result.output, 80)
    lake = Lake(str(tmp_path / "lake"))
    (recorded,) = manifest.runs(lake)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        for step in recorded["steps"]:
            if step["kind"] == "publish":
                rows = db.execute(f"select count(*) from {step['table']}").fetchone()[0]
                version = DeltaTable(lake.uri(f"models.{step['table']}")).version()
            else:
                table = DeltaTable(lake.uri(step["table"]))
                rows, version = table.to_pyarrow_table().num_rows, table.version()
            status = {"load": "landed", "model": "built", "publish": "published"}[step["kind"]]
            assert summary_row(result.output, step["kind"], step["table"])[2:5] == [status, f"{rows:,}", str(version)]
