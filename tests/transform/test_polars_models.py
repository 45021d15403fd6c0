"""polars models (`@model(frame="polars")`): LazyFrames of the lake's files in, a LazyFrame or
DataFrame out, run by polars' streaming engine on this CPU; the same materializations, checks
and errors as every model. Expected values are computed in plain Python."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from engine import Config, Pipeline, Runner, model
from engine.errors import ConfigError
from engine.transform.backends.kinds import cudf_polars_problem
from tests.support import sql_models

PLANS: list[str] = []  # what the models saw, for the pushdown test


@model(inputs={"events": "raw.events"}, frame="polars")
def likes(events: pl.LazyFrame) -> pl.LazyFrame:
    query = events.filter(pl.col("kind") == "like").group_by("user_id").agg(pl.len().alias("likes"))
    PLANS.append(query.explain())
    return query


@model(inputs={"events": "raw.events", "users": "raw.users"}, frame="polars", checks=["unique(country)"])
def per_country(events: pl.LazyFrame, users: pl.LazyFrame) -> pl.DataFrame:
    joined = events.join(users, left_on="user_id", right_on="id")
    return joined.group_by("country").agg(pl.len().alias("events")).collect()  # a DataFrame is fine too


@model(inputs={"events": "raw.events"}, frame="polars", materialized="merge", primary_key="user_id")
def running_total(events: pl.LazyFrame, ctx: Any) -> pl.LazyFrame:
    """Events per user, added to the previous counts: the incremental inputs hold only new rows."""
    assert ctx.xp is pl and ctx.backend == "polars"
    counts = events.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("events"))
    if ctx.is_incremental and ctx.previous is not None:
        before = ctx.previous().select("user_id", pl.col("events").alias("before"))
        counts = counts.join(before, on="user_id", how="left").select(
            "user_id", (pl.col("events") + pl.col("before").fill_null(0)).alias("events"))
    return counts


def pipeline(root: Path, *models: Any) -> Pipeline:
    base = sql_models.pipeline(root, ["likes_per_user"])
    return Pipeline("polars", sources=base.sources, models=list(models), models_dir=None)


def run(root: Path, p: Pipeline) -> Runner:
    runner = Runner(p, Config.load(root, lake=str(root / "lake"), backend="pandas"))
    summary = runner.run()
    assert summary.ok, [(s.name, s.error) for s in summary.steps if s.status == "failed"]
    return runner


def rows(runner: Runner, name: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in runner.lake.read(f"models.{name}").to_pylist())


def test_polars_models_get_lazy_scans_with_filters_pushed_into_the_parquet_scan(tmp_path: Path) -> None:
    PLANS.clear()
    sql_models.write_inputs(tmp_path)
    runner = run(tmp_path, pipeline(tmp_path, likes, per_country))
    events, users = sql_models.EVENTS, sql_models.USERS
    assert rows(runner, "likes") == sorted(Counter(u for _, k, u in events if k == "like").items())
    country = {u: c for u, c, _ in users}
    assert rows(runner, "per_country") == sorted(Counter(country[u] for _, _, u in events if u in country).items())
    plan = PLANS[-1]
    assert "Parquet SCAN" in plan and "SELECTION" in plan  # the filter is applied in the scan, not after it
    assert runner.lake.history("models.likes")[0]["backend"] == "polars"


def test_a_merge_polars_model_adds_new_rows_to_its_previous_output(tmp_path: Path) -> None:
    sql_models.write_inputs(tmp_path, days=1)
    p = pipeline(tmp_path, running_total)
    runner = run(tmp_path, p)
    sql_models.write_inputs(tmp_path, days=2)
    runner = run(tmp_path, p)
    step = runner.lake.history("models.running_total")[0]
    assert step["incremental"] is True
    assert rows(runner, "running_total") == sorted(Counter(u for _, _, u in sql_models.EVENTS).items())


def test_a_polars_model_that_returns_no_frame_says_what_it_returned(tmp_path: Path) -> None:
    @model(inputs={"events": "raw.events"}, frame="polars")
    def wrong(events: pl.LazyFrame) -> Any:
        return [1, 2]

    sql_models.write_inputs(tmp_path)
    summary = Runner(pipeline(tmp_path, wrong), Config.load(tmp_path, lake=str(tmp_path / "lake"))).run()
    step = next(s for s in summary.steps if s.name == "wrong")
    assert step.status == "failed"
    assert "polars model 'wrong' returned list, not a polars LazyFrame or DataFrame" in str(step.error)


def test_an_error_in_a_polars_model_names_the_users_line(tmp_path: Path) -> None:
    @model(inputs={"events": "raw.events"}, frame="polars")
    def broken(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.select(pl.col("no_such_column"))

    sql_models.write_inputs(tmp_path)
    summary = Runner(pipeline(tmp_path, broken), Config.load(tmp_path, lake=str(tmp_path / "lake"))).run()
    step = next(s for s in summary.steps if s.name == "broken")
    assert step.status == "failed" and "model 'broken' failed" in str(step.error)
    assert "no_such_column" in str(step.error)


def test_columns_limits_what_a_polars_model_sees(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    @model(inputs={"events": "raw.events"}, frame="polars", columns={"events": ["user_id", "kind"]})
    def narrow(events: pl.LazyFrame) -> pl.LazyFrame:
        seen.append(events.collect_schema().names())
        return events.group_by("user_id").agg(pl.len().alias("n"))

    sql_models.write_inputs(tmp_path)
    run(tmp_path, pipeline(tmp_path, narrow))
    assert seen == [["user_id", "kind"]]


def test_an_unknown_frame_is_refused_at_declaration() -> None:
    with pytest.raises(ConfigError, match="unknown frame 'arrow'.*sql_model"):
        model(inputs={}, frame="arrow", name="m")(lambda: None)


def test_sql_on_polars_and_polars_models_read_a_lake_on_s3(
        s3_server: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """polars scans the lake's files on S3 itself (scan_parquet), with the lake's credentials."""
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    sql_models.write_inputs(tmp_path)
    p = sql_models.pipeline(tmp_path, ["likes_per_user"])
    runner = Runner(Pipeline("s3", sources=p.sources, models=[*p.models, likes], models_dir=None),
                    Config.load(tmp_path, lake=f"s3://{s3_bucket}/lake", backend="pandas", sql_engine="polars"))
    summary = runner.run()
    assert summary.ok, [(s.name, s.error) for s in summary.steps if s.status == "failed"]
    expected = sorted(Counter(u for _, k, u in sql_models.EVENTS if k == "like").items())
    assert rows(runner, "likes_per_user") == rows(runner, "likes") == expected


NO_GPU = cudf_polars_problem()


@pytest.mark.gpu
@pytest.mark.skipif(bool(NO_GPU), reason=f"{NO_GPU} (pip install 'headwater[gpu]' on a GPU machine)")
def test_polars_models_on_cudf_polars_equal_the_python_answer(tmp_path: Path) -> None:
    """On the GPU with raise_on_fail: what cudf-polars cannot run fails instead of running on the CPU."""
    from engine.transform.backends.polars import PolarsEngine

    sql_models.write_inputs(tmp_path)
    runner = Runner(pipeline(tmp_path, likes, per_country),
                    Config.load(tmp_path, lake=str(tmp_path / "lake"), backend="cudf"))
    runner._engines["polars"] = (PolarsEngine(gpu=True, raise_on_fail=True), "test: GPU, raise_on_fail")
    assert runner.run().ok
    events, users = sql_models.EVENTS, sql_models.USERS
    assert rows(runner, "likes") == sorted(Counter(u for _, k, u in events if k == "like").items())
    country = {u: c for u, c, _ in users}
    assert rows(runner, "per_country") == sorted(Counter(country[u] for _, _, u in events if u in country).items())
    assert runner.lake.history("models.likes")[0]["backend"] == "polars-gpu"
