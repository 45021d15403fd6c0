"""`dry_run` (engine/runs/plan.py) predicts what a run does, step by step: each prediction is
checked against the real run that follows it, and the lake is unchanged by the dry run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine import Config, Pipeline, Runner, model, sources
from engine.runs.plan import RunPlan, dry_run
from tests.support.pipeline_folder import make_users, write_events


def views(events: pd.DataFrame) -> pd.DataFrame:
    return events[events["kind"] == "view"][["event_id", "user_id"]]


def enriched(events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    return events.merge(users[["id", "country"]], left_on="user_id", right_on="id")[["event_id", "country"]]


def countries(users: pd.DataFrame) -> pd.DataFrame:
    return users[["id", "country"]]


def pipeline(root: Path) -> Pipeline:
    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    users = sources.sql("users", f"sqlite:///{root}/users.sqlite", "users", cursor="updated",
                        primary_key="id", write="merge")
    return Pipeline("dry", sources=[events, users], models=[
        model(inputs={"events": "raw.events"}, materialized="incremental")(views),
        model(inputs={"events": "raw.events", "users": "raw.users"}, materialized="incremental",
              full_inputs=["users"])(enriched),
        model(inputs={"users": "raw.users"}, materialized="incremental")(countries),
    ])


def predicted_and_done(root: Path) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """{step id: (action, why)} of a dry run, then {step id: (status, detail)} of the run."""
    config = Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root / 'wh.duckdb'}",
                         backend="pandas")
    runner = Runner(pipeline(root), config)
    versions = {t: runner.lake.version(t) for t in runner.lake.tables(internal=True)}
    from engine.publish import published_versions

    plan = RunPlan.make(runner.pipeline)
    previews = dry_run(plan, runner.pipeline, runner.lake, lambda: published_versions(config.warehouse))
    assert {t: runner.lake.version(t) for t in runner.lake.tables(internal=True)} == versions
    summary = runner.run()
    assert summary.ok, summary.error
    return ({p.step.id: (p.action, p.why) for p in previews},
            {f"{s.kind}:{s.name}": (s.status, s.detail) for s in summary.steps})


def test_the_dry_run_predicts_each_step_of_the_run_that_follows(tmp_path: Path) -> None:
    write_events(tmp_path, 1, [(1, "view", 1), (2, "like", 2)])
    make_users(tmp_path, [(1, "fr", "a"), (2, "de", "a")])
    said, did = predicted_and_done(tmp_path)
    assert said["load:events"][0] == "land" and did["load:events"][0] == "landed"
    assert said["model:views"] == ("build", "first build") and did["model:views"][0] == "built"
    assert said["publish:views"] == ("publish", "models.views would be built")

    said, did = predicted_and_done(tmp_path)  # nothing new
    assert {a for a, _ in said.values()} == {"unchanged"}
    assert {s for s, _ in did.values()} == {"unchanged"}

    write_events(tmp_path, 2, [(3, "view", 2)])  # appended: incremental builds
    make_users(tmp_path, [(2, "it", "b")])  # merged: raw.users is rewritten
    said, did = predicted_and_done(tmp_path)
    assert said["load:events"] == ("land", "1 new file(s) of 2") and did["load:events"][0] == "landed"
    assert said["model:views"] == ("build", "raw.events would land new rows: incremental")
    assert did["model:views"][1].endswith("incremental, appended 1")
    assert said["model:enriched"][1].endswith(": incremental")  # users is read whole
    assert "incremental" in did["model:enriched"][1]
    assert said["model:countries"] == ("build", "raw.users would land new rows: full rebuild: raw.users would "
                                                "be rewritten")
    assert "rewritten since the last build: full rebuild" in did["model:countries"][1]
    assert said["publish:countries"] == ("publish", "models.countries would be rebuilt")
    assert did["publish:countries"][0] == "published"


def test_the_dry_run_of_a_partitioned_model_names_the_partitions(tmp_path: Path) -> None:
    def daily(orders: pd.DataFrame) -> pd.DataFrame:
        return orders.groupby("day").agg({"order_id": "count"}).reset_index()

    orders = sources.files("orders", f"{tmp_path}/orders/*.csv")
    p = Pipeline("parts", sources=[orders], models=[model(inputs={"orders": "raw.orders"}, partition_by="day")(daily)],
                 models_dir=None)
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "a.csv").write_text("order_id,day\n1,2026-03-01\n2,2026-03-02\n")
    config = Config.load(tmp_path, lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{tmp_path / 'wh.duckdb'}",
                         backend="pandas")
    assert Runner(p, config).run().ok
    (tmp_path / "orders" / "b.csv").write_text("order_id,day\n3,2026-03-02\n")

    def said() -> dict[str, tuple[str, str]]:
        runner = Runner(p, config)
        return {v.step.id: (v.action, v.why) for v in dry_run(RunPlan.make(p), p, runner.lake, lambda: {})}

    assert said()["model:daily"] == ("build", "raw.orders would land new rows: the partitions its inputs' new rows "
                                              "fall in")
    assert Runner(p, config).run(select="raw.orders").ok  # landed, the model not built
    assert said()["model:daily"] == ("build", "raw.orders changed since the last build (version 0 -> 1): "
                                              "partitions 2026-03-02: raw.orders changed")
    summary = Runner(p, config).run()
    assert [s.detail for s in summary.steps if s.kind == "model"][0].endswith("1 partition(s) replaced")
