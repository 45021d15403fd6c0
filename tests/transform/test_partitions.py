"""Partitioned models: a build replaces only the partitions whose inputs changed, each from its
window of the inputs; the result always equals a full build computed independently (plain
Python over the event files); every reader sees the same rows; publish replaces only those
partitions in DuckDB and PostgreSQL; backfills and `--partition` rebuild what they are asked."""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from engine import Config, Pipeline, Runner, model, sources, sql_model
from engine.errors import ConfigError
from engine.lake.partitions import NULL_PARTITION, PARTITION
from engine.runs.backfill import backfill, plan_backfill

DAY0 = date(2026, 3, 1)


def write_day(root: Path, day: int, rows: int, late: list[tuple[int, int]] = (), nulls: int = 0) -> None:
    """Events of day `day` (0-based from DAY0), plus `late` (day, hour) events of earlier days."""
    (root / "events").mkdir(exist_ok=True)
    start = datetime.combine(DAY0 + timedelta(days=day), datetime.min.time())
    lines = [{"event_id": day * 1000 + i, "ts": (start + timedelta(minutes=37 * i)).isoformat(),
              "kind": "like" if i % 3 == 0 else "view"} for i in range(rows)]
    lines += [{"event_id": day * 1000 + 900 + j, "kind": "like",
               "ts": (datetime.combine(DAY0 + timedelta(days=d), datetime.min.time()) + timedelta(hours=h)).isoformat()}
              for j, (d, h) in enumerate(late)]
    lines += [{"event_id": day * 1000 + 800 + j, "kind": "view", "ts": None} for j in range(nulls)]
    (root / "events" / f"day{day:02d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def expected(root: Path) -> list[tuple[Any, ...]]:
    """(day, likes, views) per day, counted in plain Python from the files (None: no timestamp)."""
    counts: dict[Any, Counter] = {}
    for f in sorted((root / "events").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            day = None if e["ts"] is None else datetime.fromisoformat(e["ts"]).date()
            counts.setdefault(day, Counter())[e["kind"]] += 1
    return sorted(((d, c["like"], c["view"]) for d, c in counts.items()), key=lambda r: (r[0] is None, r[0] or DAY0))


@model(inputs={"events": "raw.events"}, partition_by="day", event_time={"events": "ts"})
def daily(events: pd.DataFrame) -> pd.DataFrame:
    out = events.assign(day=events["ts"].dt.date, like=events["kind"] == "like", view=events["kind"] == "view")
    out = out.groupby("day", dropna=False, as_index=False).agg(likes=("like", "sum"), views=("view", "sum"))
    return out.astype({"likes": "int64", "views": "int64"})


DAILY_SQL = ("select cast(ts as date) as day, sum(case when kind = 'like' then 1 else 0 end) as likes, "
             "sum(case when kind = 'view' then 1 else 0 end) as views from raw.events group by 1")


def runner_for(root: Path, *models: Any, warehouse: str | None = None, **config: str) -> Runner:
    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    return Runner(Pipeline("p", sources=[events], models=list(models or [daily]), models_dir=None),
                  Config.load(root, lake=str(root / "lake"), backend="pandas",
                              warehouse=warehouse or f"duckdb:///{root}/wh.duckdb", **config))


def lake_rows(runner: Runner, name: str = "daily") -> list[tuple[Any, ...]]:
    table = runner.lake.read(f"models.{name}")
    out = [(r["day"], r["likes"], r["views"]) for r in table.to_pylist()]
    return sorted(out, key=lambda r: (r[0] is None, r[0] or DAY0))


def steps(summary: Any) -> dict[str, Any]:
    assert summary.ok, summary.error
    return {f"{s.kind}:{s.name}": s for s in summary.steps}


def test_only_changed_partitions_are_rebuilt_and_the_table_equals_a_full_build(tmp_path: Path) -> None:
    for d in range(5):
        write_day(tmp_path, d, 30)
    runner = runner_for(tmp_path)
    first = steps(runner.run())
    assert "first build" in first["model:daily"].detail
    assert lake_rows(runner) == expected(tmp_path)
    table = DeltaTable(str(tmp_path / "lake" / "models" / "daily"))
    assert table.metadata().partition_columns == [PARTITION]
    files_before = set(table.file_uris())

    write_day(tmp_path, 5, 30)  # a new day only
    second = steps(runner.run())
    assert "partitions 2026-03-06: raw.events changed" in second["model:daily"].detail
    assert lake_rows(runner) == expected(tmp_path)
    files_after = set(DeltaTable(str(tmp_path / "lake" / "models" / "daily")).file_uris())
    assert len(files_before - files_after) == 0  # no old partition's file was rewritten
    assert "1 partition(s) replaced" in second["publish:daily"].detail
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        published = con.execute("select day, likes, views from daily order by day").fetchall()
    assert published == expected(tmp_path)


def test_late_rows_rebuild_their_partition_and_lookback_the_ones_before(tmp_path: Path) -> None:
    for d in range(4):
        write_day(tmp_path, d, 24)
    looking_back = model(inputs={"events": "raw.events"}, partition_by="day", event_time={"events": "ts"},
                         lookback=1, name="daily_back")(daily.fn)
    runner = runner_for(tmp_path, daily, looking_back)
    steps(runner.run())
    write_day(tmp_path, 9, 0, late=[(1, 5)])  # one late event on day 1, nothing on day 9
    built = steps(runner.run())
    assert "partitions 2026-03-02: raw.events changed" in built["model:daily"].detail
    assert "partitions 2026-03-01, 2026-03-02: raw.events changed" in built["model:daily_back"].detail
    assert lake_rows(runner) == lake_rows(runner, "daily_back") == expected(tmp_path)


def test_null_times_go_to_their_own_partition(tmp_path: Path) -> None:
    write_day(tmp_path, 0, 10, nulls=3)
    runner = runner_for(tmp_path)
    steps(runner.run())
    parts = Counter(runner.lake.read("models.daily").column(PARTITION).to_pylist())
    assert parts == {"2026-03-01": 1, NULL_PARTITION: 1}
    write_day(tmp_path, 1, 5, nulls=2)
    assert "2026-03-02" in steps(runner.run())["model:daily"].detail and lake_rows(runner) == expected(tmp_path)


def test_an_input_without_the_time_column_rebuilds_everything(tmp_path: Path) -> None:
    write_day(tmp_path, 0, 10)
    unmapped = model(inputs={"events": "raw.events"}, partition_by="day", name="unmapped")(daily.fn)
    runner = runner_for(tmp_path, unmapped)
    steps(runner.run())
    write_day(tmp_path, 1, 10)
    detail = steps(runner.run())["model:unmapped"].detail
    assert "input raw.events changed and has no column 'day': every partition rebuilt" in detail
    assert lake_rows(runner, "unmapped") == expected(tmp_path)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_partitioned_sql_model_reads_the_same_through_every_reader(tmp_path: Path, engine: str) -> None:
    for d in range(3):
        write_day(tmp_path, d, 20)
    sql = sql_model("daily_sql", DAILY_SQL, partition_by="day", event_time={"raw.events": "ts"})
    runner = runner_for(tmp_path, sql, sql_engine=engine)
    steps(runner.run())
    write_day(tmp_path, 3, 20)
    assert "partitions 2026-03-04" in steps(runner.run())["model:daily_sql"].detail
    want = expected(tmp_path)
    assert lake_rows(runner, "daily_sql") == want
    path = str(tmp_path / "lake" / "models" / "daily_sql")
    one = [r for r in want if r[0] == date(2026, 3, 2)]
    filtered = DeltaTable(path).to_pyarrow_table(filters=[(PARTITION, "=", "2026-03-02")])
    assert [(r["day"], r["likes"], r["views"]) for r in filtered.to_pylist()] == one
    polars_rows = pl.scan_delta(path).filter(pl.col(PARTITION) == "2026-03-02").select("day", "likes", "views")
    assert [tuple(r) for r in polars_rows.collect().iter_rows()] == one
    with duckdb.connect() as con:
        con.register("t", DeltaTable(path).to_pyarrow_dataset())
        assert con.execute(f"select day, likes, views from t where {PARTITION} = '2026-03-02'").fetchall() == one


def test_a_partition_build_that_returns_rows_of_other_partitions_fails(tmp_path: Path) -> None:
    for d in range(2):
        write_day(tmp_path, d, 10)

    @model(inputs={"events": "raw.events"}, partition_by="day", event_time={"events": "ts"})
    def shifted(events: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"day": [date(2020, 1, 1)], "n": [len(events)]})

    summary = runner_for(tmp_path, shifted).run(partition="2026-03-01")
    failed = next(s for s in summary.steps if s.name == "shifted")
    assert failed.status == "failed" and "returned 1 row(s) of other partitions (e.g. 2020-01-01)" in failed.detail


def test_backfill_equals_a_full_build_and_goes_on_where_a_dead_one_stopped(tmp_path: Path) -> None:
    for d in range(6):
        write_day(tmp_path, d, 12)
    runner = runner_for(tmp_path)
    steps(runner.run())
    plan = plan_backfill(runner, "daily", "2026-03-02", "2026-03-05")
    assert plan.todo == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    for p in plan.todo[:2]:  # a backfill that built two partitions, then died
        runner.build("daily", "dead-run", partitions=[p], backfill=plan.id)
    again = plan_backfill(runner, "daily", "2026-03-02", "2026-03-05")
    assert again.done == ["2026-03-02", "2026-03-03"] and again.todo == ["2026-03-04", "2026-03-05"]
    summary = backfill(runner_for(tmp_path), again, parallel=2)
    assert summary.ok, summary.error
    assert [s.name for s in summary.steps] == ["daily[2026-03-04]", "daily[2026-03-05]", "daily"]
    assert lake_rows(runner) == expected(tmp_path)
    assert plan_backfill(runner, "daily", "2026-03-02", "2026-03-05").todo == plan.todo  # done: starts over
    assert steps(runner_for(tmp_path).run())["model:daily"].status == "unchanged"  # the backfill kept the plan
    with pytest.raises(ConfigError, match="--from 2026-03-05 is after --to 2026-03-02"):
        plan_backfill(runner, "daily", "2026-03-05", "2026-03-02")
    plain = model(inputs={"events": "raw.events"}, name="plain")(daily.fn)
    with pytest.raises(ConfigError, match="model 'plain' is not partitioned"):
        plan_backfill(runner_for(tmp_path, plain), "plain", "2026-03-01", "2026-03-02")


def test_publish_replaces_only_the_rebuilt_partitions_on_postgres(tmp_path: Path, pg_url: str) -> None:
    for d in range(3):
        write_day(tmp_path, d, 15)
    runner = runner_for(tmp_path, warehouse=pg_url)
    steps(runner.run())
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a row a replace of day 3 must not touch: day 1 is not rebuilt
        conn.execute(sa.text("update daily set views = -1 where day = '2026-03-01'"))
    write_day(tmp_path, 9, 0, late=[(2, 3)])
    assert "1 partition(s) replaced" in steps(runner.run())["publish:daily"].detail
    with engine.connect() as conn:
        got = conn.execute(sa.text("select day, likes, views from daily order by day")).fetchall()
    engine.dispose()
    want = expected(tmp_path)
    assert [tuple(r) for r in got] == [(want[0][0], want[0][1], -1), *want[1:]]


def test_declaration_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="partition_by works with materialized='table' only"):
        model(inputs={"e": "raw.e"}, partition_by="day", materialized="incremental", name="m")(lambda e: e)
    with pytest.raises(ConfigError, match="partition grain 'week' is not known"):
        model(inputs={"e": "raw.e"}, partition_by="day", grain="week", name="m")(lambda e: e)
    with pytest.raises(ConfigError, match=r"event_time names \['x'\], which are not inputs"):
        model(inputs={"e": "raw.e"}, partition_by="day", event_time={"x": "ts"}, name="m")(lambda e: e)
    assert pa.types.is_string(pa.string())
