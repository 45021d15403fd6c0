"""`headwater query` and `show` over every zone of a real lake: raw tables written by appends and
merges (strings over 4 KiB among them), quarantine, the run manifest, and vacuumed versions."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from engine.cli import app
from engine.lake import Lake
from tests.support.shop import write_pipeline

cli = CliRunner()
NOTES = [(1, "x", "a" * 5000), (2, "y", "b" * 6000), (3, "x", "c" * 4500),
         (4, "z", "short"), (5, "x", "a"), (6, None, "zz")]


@pytest.fixture
def lake(shop: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """The shop pipeline run twice (the second time with a row it quarantines), plus raw.notes:
    six notes, three of them over 4 KiB, landed by two merges."""
    monkeypatch.chdir(shop)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    assert cli.invoke(app, ["run", str(write_pipeline(shop))]).exit_code == 0
    (shop / "orders" / "day2.csv").write_text("order_id,customer_id,amount\n5,2,3.0\n6,1,not-a-number\n")
    assert cli.invoke(app, ["run", str(shop / "pipeline.py")]).exit_code == 0
    lake = Lake(str(shop / "lake"))
    schema = pa.schema([("id", pa.int64()), ("title", pa.string()), ("body", pa.string())])
    first = [(1, "old", "q"), (2, "y", "b" * 6000), (4, "z", "short")]
    for i, load in enumerate([first, NOTES]):
        rows = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in load], schema=schema)
        lake.land("raw.notes", rows.to_batches(), run_id=f"n{i}", state={}, mode="merge", primary_key=["id"])
    return lake


def query(sql: str) -> list[list[str]]:
    """The cells of each data row `headwater query` prints."""
    result = cli.invoke(app, ["query", sql], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return [[c.strip() for c in line.strip("│").split("│")] for line in result.output.splitlines()
            if line.startswith("│")]


def test_query_reads_long_strings_and_merged_tables_like_every_reader(lake: Lake) -> None:
    assert query("select count(*) as n from raw.notes where body >= 'a'") == [["6"]]
    assert query("select count(*) as n from raw.notes where body >= 'b'") == [["4"]]
    assert query("select id from raw.notes where title = 'x' order by id") == [["1"], ["3"], ["5"]]
    assert query("select max(length(body)) as m from raw.notes where body > 'b'") == [["6000"]]


def test_query_names_quarantine_and_the_run_manifest(lake: Lake) -> None:
    assert query("select status, count(*) as n from _headwater.runs group by status") == [["ok", "2"]]
    rows = query("select count(*) as n from quarantine.orders")
    assert rows == [["1"]]
    joined = query("select count(*) as n from raw.orders o join _headwater.runs r on o._hw_run_id = r.run_id")
    assert joined == [["5"]]  # 4 orders, then 1 good of 2


def test_show_of_a_vacuumed_version_names_the_oldest_readable_one(lake: Lake) -> None:
    table = DeltaTable(lake.uri("raw.notes"))
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    result = cli.invoke(app, ["show", "raw.notes", "--version", "0"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert re.search(r"error: version 0 of raw\.notes was vacuumed \(\d+ of its data files are gone; the latest "
                     r"VACUUM is version 3\); the oldest readable is 1", result.output), result.output
    assert "Traceback" not in result.output and "FileNotFoundError" not in result.output
    shown = cli.invoke(app, ["show", "raw.notes", "--version", "1", "--limit", "2"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0 and "raw.notes @ version 1 (first 2 rows)" in shown.output, shown.output
