"""End to end: `headwater demo` through the real command, checked against an independent pandas
computation from the generated raw files; a second run lands nothing and changes no table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from engine.lake import Lake
from tests.photo_reference import expected_training_set


def headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWATER_BACKEND": "pandas", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def warehouse_table(directory: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {name}").df()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    first = headwater("demo", str(directory), "--photos", "600", "--users", "120", "--log-days", "12",
                      cwd=directory)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "published" in first.stdout and "training_set" in first.stdout
    return directory


def test_training_set_equals_plain_pandas_row_for_row(demo_dir: Path) -> None:
    got = warehouse_table(demo_dir, "training_set").sort_values("photo_id", ignore_index=True)
    want = expected_training_set(demo_dir / "data" / "photo_popularity").sort_values(
        "photo_id", ignore_index=True)
    assert len(want) > 0 and list(got.columns) == list(want.columns)
    for column in want.columns:
        if pd.api.types.is_float_dtype(want[column]):
            assert got[column].to_numpy() == pytest.approx(want[column].to_numpy(), rel=1e-9), column
        elif pd.api.types.is_datetime64_any_dtype(want[column]):
            assert (got[column].astype("datetime64[us]") == want[column].astype("datetime64[us]")).all(), column
        else:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column


def test_second_run_lands_nothing_and_changes_no_table(demo_dir: Path) -> None:
    lake = Lake(str(demo_dir / "lake"))
    versions = {t: lake.version(t) for t in lake.tables()}
    before = warehouse_table(demo_dir, "_headwater_published").sort_values("name", ignore_index=True)
    again = headwater("demo", str(demo_dir), cwd=demo_dir)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "landed 0 new rows" in again.stdout
    assert {t: lake.version(t) for t in lake.tables()} == versions
    after = warehouse_table(demo_dir, "_headwater_published").sort_values("name", ignore_index=True)
    pd.testing.assert_frame_equal(after, before)


def test_query_answers_from_the_demo_folder(demo_dir: Path) -> None:
    expected = len(expected_training_set(demo_dir / "data" / "photo_popularity"))
    result = headwater("query", "select count(*) as n from training_set", cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    assert f" {expected} " in result.stdout.replace("│", " ")
    lake = headwater("query", "select count(distinct _hw_source_file) as files from raw.events", cwd=demo_dir)
    assert lake.returncode == 0, lake.stderr
    days = len(list((demo_dir / "data" / "photo_popularity" / "events").glob("*.jsonl")))
    assert f" {days} " in lake.stdout.replace("│", " ")
