"""Materializations on real Delta tables: table, incremental (append) and merge (upsert).

Each incremental result is compared with a `table` model computing the same thing from all
rows: an incremental build is only right if it ends where a full rebuild would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from engine import Config, HeadwaterError, Pipeline, Runner, model, sources
from engine.runs.compare import differences
from tests.support.pipeline_folder import make_users, write_events

SEEN: dict[str, list[tuple[bool, int]]] = {}  # model -> (is_incremental, rows of its first input) per build


def note(name: str, ctx: Any, frame: pd.DataFrame) -> None:
    SEEN.setdefault(name, []).append((ctx.is_incremental, len(frame)))


def views(events: pd.DataFrame, ctx: Any) -> pd.DataFrame:
    note("views", ctx, events)
    return events[events["kind"] == "view"][["event_id", "user_id"]].reset_index(drop=True)


def enriched(events: pd.DataFrame, users: pd.DataFrame, ctx: Any) -> pd.DataFrame:
    note("enriched", ctx, events)
    out = events.merge(users[["id", "country"]], left_on="user_id", right_on="id", how="left")
    return out[["event_id", "user_id", "country"]]


def per_user(events: pd.DataFrame, ctx: Any) -> pd.DataFrame:
    """Events per user, kept up to date by merging the new counts into the previous ones."""
    note("per_user", ctx, events)
    counts = events.groupby("user_id", as_index=False).agg(events=("event_id", "count"))
    previous = ctx.previous() if ctx.is_incremental and ctx.previous else None
    if previous is not None:
        counts = counts.merge(previous, on="user_id", how="left", suffixes=("", "_before"))
        counts["events"] = counts["events"] + counts["events_before"].fillna(0).astype("int64")
        counts = counts[["user_id", "events"]]
    return counts


def per_user_full(events: pd.DataFrame) -> pd.DataFrame:
    return events.groupby("user_id", as_index=False).agg(events=("event_id", "count"))


def views_full(events: pd.DataFrame) -> pd.DataFrame:
    return events[events["kind"] == "view"][["event_id", "user_id"]].reset_index(drop=True)


def pipeline(root: Path, incremental: Any = views) -> Pipeline:
    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    users = sources.sql("users", f"sqlite:///{root}/users.sqlite", "users", cursor="updated",
                        primary_key="id", write="merge")
    return Pipeline("mat", sources=[events, users], models=[
        model(inputs={"events": "raw.events"}, materialized="incremental", publish=False, name="views")(incremental),
        model(inputs={"events": "raw.events"}, publish=False)(views_full),
        model(inputs={"events": "raw.events", "users": "raw.users"}, materialized="incremental",
              full_inputs=["users"], publish=False)(enriched),
        model(inputs={"events": "raw.events"}, materialized="merge", primary_key="user_id", publish=False)(per_user),
        model(inputs={"events": "raw.events"}, publish=False)(per_user_full),
    ])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    SEEN.clear()
    write_events(tmp_path, 1, [(1, "view", 1), (2, "like", 1), (3, "view", 2)])
    write_events(tmp_path, 2, [(4, "view", 3), (5, "view", 1)])
    make_users(tmp_path, [(1, "fr", "a"), (2, "de", "a"), (3, "it", "a")])
    return tmp_path


def run(root: Path, p: Pipeline | None = None, **kw: Any):  # noqa: ANN201
    runner = Runner(p or pipeline(root), Config.load(root, lake=str(root / "lake"), backend="pandas"))
    summary = runner.run(**kw)
    assert summary.ok, summary.error
    return runner, {s.name: s for s in summary.steps if s.kind == "model"}


def table(runner: Runner, name: str) -> pd.DataFrame:
    return runner.lake.read(f"models.{name}").to_pandas()


def test_incremental_models_see_only_new_rows_and_end_where_a_full_rebuild_does(root: Path) -> None:
    runner, steps = run(root)
    assert SEEN["views"] == [(False, 5)] and SEEN["per_user"] == [(False, 5)]
    write_events(root, 3, [(6, "view", 2), (7, "like", 3), (8, "view", 4)])
    runner, steps = run(root)
    assert SEEN["views"][-1] == (True, 3)  # only day 3's rows
    assert SEEN["per_user"][-1] == (True, 3)
    assert "appended 2" in steps["views"].detail
    assert not differences(runner.lake.read("models.views"), runner.lake.read("models.views_full"))
    assert not differences(runner.lake.read("models.per_user"), runner.lake.read("models.per_user_full"))
    assert "merged: 1 new, 2 updated" in steps["per_user"].detail  # users 2, 3 updated; user 4 new


def test_an_unchanged_run_builds_nothing_and_a_run_with_no_new_rows_appends_none(root: Path) -> None:
    run(root)
    runner, steps = run(root)
    assert {s.status for s in steps.values()} == {"unchanged"}
    assert len(SEEN["views"]) == 1
    assert steps["views"].rows == table(runner, "views").shape[0]


def test_full_inputs_are_read_whole_while_the_rest_is_incremental(root: Path) -> None:
    run(root)
    write_events(root, 3, [(6, "view", 3)])
    runner, _ = run(root)
    assert SEEN["enriched"][-1] == (True, 1)
    out = table(runner, "enriched").set_index("event_id")["country"].to_dict()
    assert out == {1: "fr", 2: "fr", 3: "de", 4: "it", 5: "fr", 6: "it"}  # user 3 read from all users


def test_full_refresh_rebuilds_from_all_rows(root: Path) -> None:
    run(root)
    write_events(root, 3, [(6, "view", 2)])
    runner, steps = run(root, full_refresh=True)
    assert SEEN["views"][-1] == (False, 6) and steps["views"].detail.endswith("full refresh")
    assert not differences(runner.lake.read("models.views"), runner.lake.read("models.views_full"))


def test_a_code_change_rebuilds_in_full(root: Path) -> None:
    run(root)

    def views(events: pd.DataFrame, ctx: Any) -> pd.DataFrame:  # same output, new code
        note("views", ctx, events)
        return events[events["kind"] == "view"][["event_id", "user_id"]].reset_index(drop=True).copy()

    write_events(root, 3, [(6, "view", 2)])
    runner, steps = run(root, pipeline(root, views))
    assert SEEN["views"][-1] == (False, 6) and "code changed" in steps["views"].detail
    assert not differences(runner.lake.read("models.views"), runner.lake.read("models.views_full"))


def test_a_rewritten_input_rebuilds_incremental_and_merge_models(root: Path) -> None:
    users = sources.sql("users", f"sqlite:///{root}/users.sqlite", "users", cursor="updated",
                        primary_key="id", write="merge")

    def countries(users: pd.DataFrame, ctx: Any) -> pd.DataFrame:
        note("countries", ctx, users)
        return users[["id", "country"]]

    p = Pipeline("rw", sources=[users], models=[
        model(inputs={"users": "raw.users"}, materialized="incremental", publish=False, name="appended")(countries),
        model(inputs={"users": "raw.users"}, materialized="merge", primary_key="id", publish=False,
              name="merged")(countries),
    ])
    run(root, p)
    make_users(root, [(2, "at", "b")])  # an edit: the merge load rewrites the file holding user 2
    runner, steps = run(root, p)
    for name in ("appended", "merged"):
        assert "rewritten" in steps[name].detail
    assert SEEN["countries"][-2:] == [(False, 3), (False, 3)]  # both read every row again
    expected = {1: "fr", 2: "at", 3: "it"}
    for name in ("appended", "merged"):
        assert table(runner, name).set_index("id")["country"].to_dict() == expected


def test_selection_runs_only_the_chosen_models_and_their_sources(root: Path) -> None:
    runner, steps = run(root, select=["views+"])
    assert set(steps) == {"views"}
    assert runner.lake.exists("raw.events") and not runner.lake.exists("raw.users")
    runner, steps = run(root, select=["raw.events+"], exclude=["enriched"])
    assert set(steps) == {"views", "views_full", "per_user", "per_user_full"}
    assert not runner.lake.exists("models.enriched")


def test_new_input_rows_that_yield_no_output_record_the_versions_read(root: Path) -> None:
    runner, _ = run(root)
    before = table(runner, "views").shape[0]
    write_events(root, 3, [(6, "like", 2)])  # nothing for `views`
    runner, steps = run(root)
    assert steps["views"].status == "built" and steps["views"].detail.endswith("no new rows")
    assert table(runner, "views").shape[0] == before
    assert runner.lake.metadata("models.views")["inputs"] == {"raw.events": runner.lake.version("raw.events")}
    runner, steps = run(root)
    assert steps["views"].status == "unchanged" and steps["views"].rows == before


def test_incremental_models_publish_only_their_new_rows(root: Path) -> None:
    import duckdb

    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    p = Pipeline("pub", sources=[events], models=[
        model(inputs={"events": "raw.events"}, materialized="incremental", name="views")(views),
        model(inputs={"events": "raw.events"}, materialized="merge", primary_key="user_id")(per_user),
    ])
    cfg = Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root}/wh.duckdb", backend="pandas")

    def publish_steps(**kw: Any) -> dict[str, str]:
        summary = Runner(p, cfg).run(**kw)
        assert summary.ok, summary.error
        return {s.name: s.detail for s in summary.steps if s.kind == "publish"}

    def same_as_lake(runner: Runner) -> None:
        with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
            for name in ("views", "per_user"):
                published = pa.Table.from_pandas(con.execute(f"select * from {name}").df(), preserve_index=False)
                assert not differences(runner.lake.read(f"models.{name}"), published), name

    assert publish_steps() == {"views": "to duckdb", "per_user": "to duckdb"}
    write_events(root, 3, [(6, "view", 2), (7, "view", 9)])
    assert publish_steps() == {"views": "to duckdb, append", "per_user": "to duckdb, merge"}
    same_as_lake(Runner(p, cfg))
    write_events(root, 4, [(8, "view", 1)])
    assert publish_steps(full_refresh=True) == {"views": "to duckdb", "per_user": "to duckdb"}  # replaced
    same_as_lake(Runner(p, cfg))


def test_columns_limits_what_a_model_reads_on_full_and_incremental_builds(root: Path) -> None:
    seen: list[list[str]] = []

    def kinds(events: pd.DataFrame) -> pd.DataFrame:
        seen.append(list(events.columns))
        return events.groupby("kind", as_index=False).size()

    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    p = Pipeline("cols", sources=[events], models=[
        model(inputs={"events": "raw.events"}, columns={"events": ["kind"]}, publish=False)(kinds),
        model(inputs={"events": "raw.events"}, columns={"events": ["kind"]}, materialized="incremental",
              publish=False, name="kinds_inc")(kinds)])
    runner, _ = run(root, p)
    write_events(root, 3, [(6, "view", 2)])
    runner, _ = run(root, p)
    assert seen == [["kind"]] * 4  # no load columns, no other fields, on every path
    bad = Pipeline("bad", sources=[events], models=[
        model(inputs={"events": "raw.events"}, columns={"events": ["nope"]}, publish=False)(kinds)])
    summary = Runner(bad, Config.load(root, lake=str(root / "lake"), backend="pandas")).run()
    assert not summary.ok and "columns ['nope'] of input 'events'" in summary.error
    with pytest.raises(HeadwaterError, match="not inputs"):
        model(inputs={"events": "raw.events"}, columns={"evnts": ["kind"]})(kinds)


def test_compacting_an_input_rebuilds_instead_of_counting_its_rows_twice(root: Path) -> None:
    run(root)
    write_events(root, 3, [(6, "view", 2)])
    runner, _ = run(root)  # raw.events now has two files
    metrics = runner.lake.table("raw.events").optimize.compact()  # their rows move into one new file
    assert metrics["numFilesRemoved"] == 2
    write_events(root, 4, [(7, "like", 3)])
    runner, steps = run(root)
    assert "rewritten" in steps["per_user"].detail
    assert not differences(runner.lake.read("models.per_user"), runner.lake.read("models.per_user_full"))
    assert not differences(runner.lake.read("models.views"), runner.lake.read("models.views_full"))


def test_an_input_read_twice_is_checked_for_rewrites_on_the_incremental_side(root: Path) -> None:
    def new_views(everything: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
        return new[new["kind"] == "view"][["event_id"]]

    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    p = Pipeline("twice", sources=[events], models=[model(
        inputs={"everything": "raw.events", "new": "raw.events"}, full_inputs=["everything"],
        materialized="incremental", publish=False)(new_views)])
    run(root, p)
    write_events(root, 3, [(6, "view", 2)])
    runner, _ = run(root, p)
    assert runner.lake.table("raw.events").optimize.compact()["numFilesRemoved"] == 2
    write_events(root, 4, [(7, "view", 2)])
    runner, steps = run(root, p)
    assert "rewritten" in steps["new_views"].detail
    assert sorted(table(runner, "new_views")["event_id"]) == [1, 3, 4, 5, 6, 7]


def test_a_full_build_of_a_merge_model_keeps_the_last_row_per_key(root: Path) -> None:
    def last_event(events: pd.DataFrame) -> pd.DataFrame:
        return events.sort_values("event_id")[["user_id", "event_id"]]  # several rows per user

    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    p = Pipeline("dupes", sources=[events], models=[model(
        inputs={"events": "raw.events"}, materialized="merge", primary_key="user_id", publish=False)(last_event)])
    runner, _ = run(root, p)
    assert len(table(runner, "last_event")) == 3
    assert table(runner, "last_event").set_index("user_id")["event_id"].to_dict() == {1: 5, 2: 3, 3: 4}
    write_events(root, 3, [(6, "view", 1), (7, "view", 1)])
    runner, _ = run(root, p)
    assert table(runner, "last_event").set_index("user_id")["event_id"].to_dict() == {1: 7, 2: 3, 3: 4}


def test_a_build_that_another_run_overtook_commits_nothing(root: Path) -> None:
    lake_path = str(root / "lake")

    def racy(events: pd.DataFrame) -> pd.DataFrame:
        from engine import Lake

        lake = Lake(lake_path)
        if lake.exists("models.racy"):  # another run commits to this model while we compute
            lake.write_append("models.racy", lake.read("models.racy").slice(0, 0), run_id="other", meta={})
        return events[["event_id"]]

    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    p = Pipeline("race", sources=[events], models=[model(
        inputs={"events": "raw.events"}, materialized="incremental", publish=False)(racy)])
    runner, _ = run(root, p)
    write_events(root, 3, [(6, "view", 2)])
    summary = Runner(p, Config.load(root, lake=lake_path, backend="pandas")).run()
    assert not summary.ok and "another run committed to it since this run read it" in summary.error
    assert sorted(Runner(p, Config.load(root, lake=lake_path)).lake.read("models.racy")
                  .column("event_id").to_pylist()) == [1, 2, 3, 4, 5]  # day 3 not appended
