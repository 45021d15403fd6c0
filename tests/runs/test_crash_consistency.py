"""Crash consistency of whole runs: `headwater run` killed with SIGKILL at points spread over a
run (while it loads, builds and publishes), then run again, leaves the lake and the warehouse
equal, value for value, to a run that was never killed. One source keeps history (write="scd2"):
its versions, which are current and their hashes must come out the same too."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from engine import Config, Runner, load_pipeline
from engine.lake import Lake

ROOT = Path(__file__).resolve().parents[2]
KILLS = 12
ROWS = 150_000  # a load, a build and a publish that each take a while
PIPELINE = '''
from engine import Pipeline, model, sources

events = sources.files("events", {events!r})
users = sources.sql("users", {db!r}, table="users", cursor="user_id")
customers = sources.sql("customers", {db!r}, table="customers", primary_key="customer_id", write="scd2")


@model(inputs={{"events": "raw.events"}}, materialized="incremental")
def event_log(events):
    return events[["event_id", "user_id", "value"]]


@model(inputs={{"log": "event_log", "users": "raw.users"}})
def per_country(log, users):
    joined = log.merge(users, on="user_id")
    return joined.groupby("country", as_index=False).agg(events=("event_id", "size"), value=("value", "sum"))


pipeline = Pipeline("crash", sources=[events, users, customers], models=[event_log, per_country])
'''
TABLES = ("raw.events", "raw.users", "raw.customers", "models.event_log", "models.per_country")
ORDER = {"raw.events": "event_id", "raw.users": "user_id", "raw.customers": "customer_id",
         "models.event_log": "event_id", "models.per_country": "country"}
CUSTOMERS = 2_000  # a small history: the kills are timed over the whole run, not aimed at it


def project(folder: Path) -> Path:
    """Yesterday's data landed already; today's events file waiting: the pipeline file."""
    import sqlite3

    (folder / "events").mkdir(parents=True)
    with sqlite3.connect(folder / "users.sqlite") as con:
        con.execute("create table users (user_id integer primary key, country text)")
        con.executemany("insert into users values (?, ?)", [(u, "abcde"[u % 5]) for u in range(100)])
        con.execute("create table customers (customer_id integer primary key, plan text)")
        con.executemany("insert into customers values (?, ?)", [(c, "free") for c in range(CUSTOMERS)])
    con.close()
    pipeline = folder / "pipeline.py"
    pipeline.write_text(PIPELINE.format(events=str(folder / "events" / "*.csv"), db=f"sqlite:///{folder}/users.sqlite"))
    for day in (0, 1):
        lines = ["event_id,user_id,value"] + [f"{day * ROWS + i},{i % 100},{(i % 13) / 2}" for i in range(ROWS)]
        (folder / "events" / f"day{day}.csv").write_text("\n".join(lines) + "\n")
        if day == 0:
            assert Runner(load_pipeline(pipeline), config(folder)).run().ok
    with sqlite3.connect(folder / "users.sqlite") as con:  # today: edits, deletes and new customers
        con.execute("update customers set plan = 'pro' where customer_id % 7 = 0")
        con.execute("delete from customers where customer_id % 11 = 0")
        con.executemany("insert into customers values (?, ?)", [(c, "team") for c in range(CUSTOMERS, CUSTOMERS + 300)])
    con.close()
    return pipeline


def config(folder: Path) -> Config:
    return Config(lake=str(folder / "lake"), warehouse=f"duckdb:///{folder / 'wh.duckdb'}", backend="pandas")


def run_command(pipeline: Path) -> subprocess.Popen[str]:
    folder = pipeline.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(pipeline), "--lake", str(folder / "lake"),
                             "--warehouse", f"duckdb:///{folder / 'wh.duckdb'}", "--backend", "pandas"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def snapshot(folder: Path) -> dict[str, Any]:
    """Every lake table's rows (load columns, which hold run ids and times, left out) and every
    warehouse table's rows, sorted."""
    lake = Lake(str(folder / "lake"))
    out: dict[str, Any] = {}
    for name in TABLES:
        table = lake.read(name)
        kept = [c for c in table.column_names if not c.startswith("_hw_") or c == "_hw_row_hash"]
        if "_hw_valid_to" in table.column_names:  # the times differ between runs; which version is current not
            table = table.append_column("current", table.column("_hw_valid_to").is_null())
            kept.append("current")
        out[name] = table.select(kept).sort_by([(ORDER[name], "ascending"), (kept[-1], "ascending")]).to_pylist()
    with duckdb.connect(str(folder / "wh.duckdb"), read_only=True) as con:
        for name in ("event_log", "per_country"):
            out[f"warehouse.{name}"] = con.execute(f"select * from {name} order by 1").fetchall()
    return out


def phase(folder: Path, before: dict[str, int | None]) -> str:
    """Where a killed run stopped: what it had committed (by the tables' versions)."""
    lake = Lake(str(folder / "lake"))
    now = {t: lake.version(t) for t in TABLES}
    if now["raw.events"] == before["raw.events"]:
        return "load"
    if now["models.per_country"] == before["models.per_country"]:
        return "build"
    return "publish"


def test_runs_killed_anywhere_then_run_again_equal_a_run_never_killed(tmp_path: Path) -> None:
    durations, cleans = [], []
    for name in ("clean", "warm"):  # the first run pays for cold caches: time a second one too
        clean = project(tmp_path / name)
        cleans.append(clean)
        started = time.monotonic()
        done = run_command(clean)
        out, _ = done.communicate(timeout=300)
        assert done.returncode == 0, out
        durations.append(time.monotonic() - started)
    duration = min(durations)
    reference = snapshot(clean.parent)
    assert snapshot(cleans[0].parent) == reference  # two runs never killed agree
    assert len(reference["raw.events"]) == 2 * ROWS and reference["warehouse.per_country"]
    changed = sum(1 for c in range(CUSTOMERS) if c % 7 == 0 and c % 11)
    gone = sum(1 for c in range(CUSTOMERS) if c % 11 == 0)
    assert len(reference["raw.customers"]) == CUSTOMERS + changed + 300  # versions
    assert sum(not r["current"] for r in reference["raw.customers"]) == changed + gone

    phases: list[str] = []
    for k in range(KILLS):
        pipeline = project(tmp_path / f"kill{k}")
        lake = Lake(str(pipeline.parent / "lake"))
        before = {t: lake.version(t) for t in TABLES}
        child = run_command(pipeline)
        time.sleep(duration * (0.3 + 0.55 * k / KILLS))  # past the imports, over the load, build, publish
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        if child.returncode != -signal.SIGKILL:  # it had finished: nothing was killed
            phases.append("finished")
            continue
        phases.append(phase(pipeline.parent, before))
        again = Runner(load_pipeline(pipeline), config(pipeline.parent)).run()
        assert again.ok, again.error
        assert snapshot(pipeline.parent) == reference, f"killed during {phases[-1]}"
    killed = [p for p in phases if p != "finished"]
    assert len(killed) >= 10, phases
    assert {"load", "build"} <= set(killed), phases  # the kills reached past the load
    print(f"SIGKILL points: {phases}")

