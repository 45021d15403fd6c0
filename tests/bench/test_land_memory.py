"""bench/land_memory.py measures Headwater and DuckDB on the same job: each input, landed by
Headwater and copied by DuckDB in fresh processes, comes out with every row."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import land_memory


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(land_memory, "CACHE", tmp_path)
    monkeypatch.setattr(land_memory, "CHUNK", 2_000)
    return tmp_path


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_both_engines_take_every_row_of_each_input(small: Path, kind: str) -> None:
    if kind == "parquet":
        path, rows = land_memory.parquet_dataset(5_000), 5_000
    else:
        make = land_memory.csv_file if kind == "csv" else land_memory.jsonl_file
        path, rows = make(0.0002)  # 200 kB: a chunk of 2,000 events or two
    ours, theirs = land_memory.land(path), land_memory.duckdb_copy(path, kind)
    assert (ours["rows"], ours["quarantined"], theirs["rows"]) == (rows, 0, rows)
    assert ours["seconds"] > 0 and theirs["seconds"] > 0 and ours["peak_rss_mb"] > 50


def test_median_run_takes_the_middle_time_and_the_highest_peak() -> None:
    runs = [{"rows": 5, "seconds": 3.0, "peak_rss_mb": 10}, {"rows": 5, "seconds": 1.0, "peak_rss_mb": 30},
            {"rows": 5, "seconds": 2.0, "peak_rss_mb": 20}]
    assert land_memory.median_run(runs) == {"rows": 5, "seconds": 2.0, "peak_rss_mb": 30}
    assert land_memory.median_run(runs[:2])["seconds"] == 2.0  # an even count: the mean of the middle two
