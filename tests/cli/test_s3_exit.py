"""`headwater show --limit`, `runs` and `query … limit` on a lake on S3 (moto on loopback) exit cleanly:
a scan stopped early over pyarrow's fsspec wrapper used to abort the process at exit
(`terminate called without an active exception`, `PyGILState_Release … finalizing`, exit 134)
or leave it hanging, in 16 of 20 calls of `show raw.events --limit 5`."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from engine.lake import Lake
from engine.runs.manifest import RUNS, SCHEMA
from tests.support.processes import ROOT
from tests.support.s3 import S3Server

SHOWS, RUN_LISTS, QUERIES = 20, 6, 4


def test_show_runs_and_query_exit_cleanly_on_an_s3_lake(s3_server: S3Server, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/lake"
    lake = Lake(uri, s3_server.env())
    for i in range(3):  # three files of 1,000 rows each: ids 1000*i + j, names n<j>
        lake.land("raw.events", [pa.record_batch({"id": list(range(i * 1000, i * 1000 + 1000)),
                                                  "name": [f"n{j}" for j in range(1000)]})],
                  run_id=f"r{i}", state={"load": i})
    now = dt.datetime.now(dt.timezone.utc)
    for i in range(3):
        row = {"run_id": f"run{i}", "pipeline": "p", "status": "ok", "started_at": now - dt.timedelta(minutes=i),
               "finished_at": now, "seconds": 1.0, "selection": "{}",
               "steps": json.dumps([{"kind": "load", "rows": 1000, "status": "landed"}])}
        lake.write_append(RUNS, pa.Table.from_pylist([row], schema=SCHEMA), run_id=f"run{i}", meta={})

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HEADWATER_"))}
    env.update(s3_server.env(), COLUMNS="200", PYTHONPATH=str(ROOT), AWS_CONFIG_FILE="/nonexistent",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent")

    def call(args: list[str]) -> tuple[int | str, str, str]:
        try:
            done = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--lake", uri], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return "hung", "", ""
        return done.returncode, done.stdout, done.stderr

    calls = ([["show", "raw.events", "--limit", "5"]] * SHOWS + [["runs"]] * RUN_LISTS
             + [["query", "select id, name from raw.events where name = 'n7' order by id limit 2",
                 "--warehouse", "duckdb:///:memory:"]] * QUERIES)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(call, calls))
    bad = []
    for args, (code, out, err) in zip(calls, results):
        if args[0] == "show":
            shown = [(int(a), int(b)) for a, b in re.findall(r"│\s+(\d+) │ n(\d+)\s+│", out)]  # numbers right-aligned
            right = len(shown) == 5 and all(a % 1000 == b for a, b in shown)
        elif args[0] == "runs":
            right = all(f"run{i}" in out for i in range(3))
        else:  # a scan DuckDB stops at its LIMIT
            right = re.findall(r"│\s+(\d+) │ (n\d+)\s+│", out) == [("7", "n7"), ("1007", "n7")]
        if code != 0 or not right:
            bad.append(f"{' '.join(args)}: exit {code}, {err.strip().splitlines()[-1:] or out[-300:]}")
    assert not bad, f"{len(bad)} of {len(calls)} calls failed:\n" + "\n".join(bad)
