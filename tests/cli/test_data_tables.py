"""`show` and `query` print rows as DuckDB's shell does: one line per row at any width, wide values
cut with "…", the last columns left out (and counted) when they do not fit; `--format csv|json|
markdown` prints every value whole for scripts. Expected values come from DuckDB or the lake."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest
from rich.cells import cell_len
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.cli.tables import clip
from engine.lake import Lake
from tests.support.shop import write_pipeline

cli = CliRunner()
WIDE = "select 1 as id, repeat('x', 300) as long_text, 2.5 as price, NULL as nothing"
MANY = "select " + ", ".join(f"'value of column {i}' as column_{i:02d}" for i in range(15))


@pytest.fixture
def ran(shop: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(shop)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    assert cli.invoke(app, ["run", str(write_pipeline(shop))]).exit_code == 0
    return shop


def headwater(*args: str, width: int = 80) -> Result:
    result = cli.invoke(app, list(args), env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result


def cells(output: str) -> list[list[str]]:
    """The cells of each data row of a boxed table."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in output.splitlines()
            if line.startswith("│")]


def header(output: str) -> list[str]:
    first = next(line for line in output.splitlines() if line.startswith("┃"))
    return [c.strip() for c in first.strip().strip("┃").split("┃")]


@pytest.mark.parametrize("width", [80, 120, 200])
def test_a_wide_value_is_cut_and_the_row_stays_one_line(ran: Path, width: int) -> None:
    out = headwater("query", WIDE, width=width).output
    assert all(cell_len(line.rstrip()) <= width for line in out.splitlines()), out
    (row,) = cells(out)
    assert row[0] == "1" and row[2] == "2.5" and row[3] == "NULL"
    assert row[1].endswith("…") and set(row[1][:-1]) == {"x"}  # cut, on its one line
    assert header(out) == ["id", "long_text", "price", "nothing"]
    assert out.rstrip().splitlines()[-1] == "1 row"


@pytest.mark.parametrize("width", [80, 120])
def test_columns_that_do_not_fit_are_left_out_from_the_right(ran: Path, width: int) -> None:
    out = headwater("query", MANY, width=width).output
    assert all(cell_len(line.rstrip()) <= width for line in out.splitlines()), out
    names = header(out)
    shown = names[:-1]
    assert names[-1] == "…" and shown == [f"column_{i:02d}" for i in range(len(shown))] and 1 < len(shown) < 15
    assert out.rstrip().splitlines()[-1] == f"1 row, 15 columns ({len(shown)} shown)"
    (row,) = cells(out)
    want = duckdb.sql(MANY).fetchall()[0]
    assert row[:-1] == [clip(v, len(v)) for v in want[:len(shown)]] and row[-1] == "…"


def test_a_lake_tables_bookkeeping_columns_go_first(ran: Path) -> None:
    (ran / "orders" / "day2.csv").write_text("order_id,customer_id,amount\n5,2,3.0\n6,1,not-a-number\n")
    assert cli.invoke(app, ["run", "pipeline.py"]).exit_code == 0
    out = headwater("show", "quarantine.orders", width=80).output
    names = header(out)
    assert "reason" in names and not any(n.startswith("_hw_") for n in names), names
    (row,) = cells(out)
    (want,) = Lake(str(ran / "lake")).read("quarantine.orders").to_pylist()
    for name, value in zip(names, row):
        if name != "…":
            text = str(want[name])
            assert value == text or (value.endswith("…") and text.startswith(value[:-1])), (name, value, text)


def test_everything_fits_at_200_columns(ran: Path) -> None:
    out = headwater("query", "select * from by_country order by country", width=200).output
    with duckdb.connect(str(ran / "warehouse.duckdb"), read_only=True) as db:
        want = db.execute("select * from by_country order by country").fetchall()
    assert cells(out) == [[str(v) for v in row] for row in want]
    assert out.rstrip().splitlines()[-1] == f"{len(want)} rows"


def test_formats_print_every_value_whole(ran: Path) -> None:
    want = duckdb.sql(WIDE).fetchall()[0]
    as_csv = list(csv.reader(io.StringIO(headwater("query", WIDE, "--format", "csv").output)))
    assert as_csv == [["id", "long_text", "price", "nothing"], ["1", want[1], "2.5", ""]]
    as_json = json.loads(headwater("query", WIDE, "--format", "json").output)
    assert as_json == [{"id": 1, "long_text": want[1], "price": 2.5, "nothing": None}]
    markdown = headwater("query", WIDE, "--format", "markdown").output.splitlines()
    assert markdown == ["| id | long_text | price | nothing |", "|---:|---|---:|---|",
                        f"| 1 | {want[1]} | 2.5 |  |"]


def test_show_in_every_format(ran: Path) -> None:
    rows = Lake(str(ran / "lake")).read("raw.orders").to_pylist()
    as_json = json.loads(headwater("show", "raw.orders", "--format", "json").output)
    assert [r["order_id"] for r in as_json] == [r["order_id"] for r in rows]
    assert [r["_hw_run_id"] for r in as_json] == [r["_hw_run_id"] for r in rows]
    as_csv = list(csv.DictReader(io.StringIO(headwater("show", "raw.orders", "--format", "csv").output)))
    assert [float(r["amount"]) for r in as_csv] == [r["amount"] for r in rows]
    table = headwater("show", "raw.orders", width=80).output
    assert "raw.orders @ version 0 (first 4 rows)" in table
    assert [r[0] for r in cells(table)] == [str(r["order_id"]) for r in rows]


def test_more_rows_than_the_limit_are_counted(ran: Path) -> None:
    out = headwater("query", "select * from range(100)", "--limit", "3").output
    assert [r[0] for r in cells(out)] == ["0", "1", "2"]
    assert out.rstrip().splitlines()[-1] == "100 rows (3 shown, --limit shows more)"
    as_csv = cli.invoke(app, ["query", "select * from range(100)", "--limit", "3", "--format", "csv"])
    assert as_csv.stdout.splitlines() == ["range", "0", "1", "2"]  # the note went to stderr


def test_an_unknown_format_is_a_usage_error(ran: Path) -> None:
    result = cli.invoke(app, ["query", "select 1", "--format", "xml"])
    assert result.exit_code == 2 and "xml" in result.output
