"""Two `headwater run`s of one pipeline started together, on a local lake and on an S3 lake:
whichever run commits a table first wins it, the other commits nothing to it
(ConcurrentRunError, or the DuckDB file's lock for the warehouse), so no row is ever landed,
built or published twice, and a run afterwards brings everything up to date."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from engine import Config, Runner, load_pipeline
from engine.lake import Lake
from tests.support.race import FILES, PIPELINE, ROWS, check_exactly_once, write_day
from tests.support.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 10
KNOWN_LOSSES = ("another run committed to it since this run read it",  # a lake table (ConcurrentRunError)
                "another process has the DuckDB file open")  # the warehouse file's lock


def race(folder: Path, lake: str, env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Two `headwater run`s of the pipeline, started together; both waited for."""
    command = [sys.executable, "-m", "engine.cli", "run", str(folder / "pipeline.py"), "--lake", lake,
               "--warehouse", f"duckdb:///{folder / 'wh.duckdb'}", "--backend", "pandas"]
    env = {**os.environ, **env, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in procs]


def trials(tmp_path: Path, lake_uri: str, env: dict[str, str], storage: dict[str, str]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for trial in range(TRIALS):
        folder = tmp_path / f"trial{trial}"
        uri = lake_uri.format(trial=trial, folder=folder)
        config = Config(lake=uri, warehouse=f"duckdb:///{folder / 'wh.duckdb'}", backend="pandas",
                        storage_options=storage)
        expected = write_day(folder, 0)
        (folder / "pipeline.py").write_text(PIPELINE.format(orders=str(folder / "orders" / "*.csv")))
        assert Runner(load_pipeline(folder / "pipeline.py"), config).run().ok  # yesterday's run
        expected += write_day(folder, 1)  # today's files: the two runs race to land them
        done = race(folder, uri, env)
        for run in done:
            if run.returncode == 0:
                outcomes["won"] += 1
                continue
            error = run.stderr.strip().splitlines()[-1]
            assert any(loss in error for loss in KNOWN_LOSSES), run.stdout + run.stderr
            outcomes["lost"] += 1
        lake = Lake(uri, storage)
        check_exactly_once(lake, expected)
        # the next run brings the warehouse up to date and changes nothing in the lake
        versions = {t: lake.version(t) for t in ("raw.orders", "models.order_log", "models.totals")}
        after = Runner(load_pipeline(folder / "pipeline.py"), config).run()
        assert after.ok, after.error
        assert {t: lake.version(t) for t in versions} == versions
        with duckdb.connect(str(folder / "wh.duckdb"), read_only=True) as con:
            assert dict(con.execute("select customer, amount from totals").fetchall()) == pytest.approx(expected)
            assert con.execute("select count(*), count(distinct order_id) from order_log").fetchone() == (
                2 * FILES * ROWS, 2 * FILES * ROWS)
    print(f"two runs at once on {lake_uri}: {dict(outcomes)}")  # seen with pytest -s
    return outcomes


def test_two_runs_at_once_on_a_local_lake_land_build_and_publish_every_row_once(tmp_path: Path) -> None:
    outcomes = trials(tmp_path, "{folder}/lake", {}, {})
    assert outcomes["won"] + outcomes["lost"] == 2 * TRIALS


def test_two_runs_at_once_on_an_s3_lake_land_build_and_publish_every_row_once(
        tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> None:
    outcomes = trials(tmp_path, f"s3://{s3_bucket}/trial{{trial}}", s3_server.env(), s3_server.env())
    assert outcomes["won"] + outcomes["lost"] == 2 * TRIALS
