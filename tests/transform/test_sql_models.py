"""SQL models: declaring them (in Python and as .sql files), the errors bad SQL gets, and
everything other models have (materializations, checks, selection, lineage, publish, a Python
model reading a SQL model and back), on real Delta tables and a DuckDB warehouse."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from engine import Config, HeadwaterError, Pipeline, Runner, load_pipeline, model, sources, sql_model
from engine.errors import ConfigError
from engine.graph import TableRef
from engine.runs.lineage import graph
from engine.transform.sql import header, references
from tests.support import sql_models
from tests.support.pipeline_folder import write_events


def runner_for(root: Path, p: Pipeline, **config: str) -> Runner:
    return Runner(p, Config.load(root, lake=str(root / "lake"), backend="pandas",
                                 warehouse=f"duckdb:///{root}/wh.duckdb", **config))


def rows(runner: Runner, name: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in runner.lake.read(f"models.{name}").to_pylist())


# -- declaring ---------------------------------------------------------------------------------
def test_inputs_are_the_tables_the_sql_names_and_not_its_ctes() -> None:
    m = sql_model("m", """
        with recent as (select * from raw.events where event_id > 3)
        select r.user_id, t.n from recent r
        join "models"."totals" t on t.user_id = r.user_id
        join other_model o on o.user_id = r.user_id
        where r.user_id in (select id from raw.users)""")
    assert m.kind == "sql" and m.fn is None
    assert set(m.inputs.values()) == {TableRef.raw("events"), TableRef.model("totals"),
                                      TableRef.model("other_model"), TableRef.raw("users")}


def test_sql_that_does_not_parse_names_the_model_line_and_column() -> None:
    with pytest.raises(ConfigError,
                       match=r"SQL model 'bad' does not parse at line 2, column 13: syntax error at or near \"\.\""):
        sql_model("bad", "select user_id\nfrom frm raw.events")


@pytest.mark.parametrize("sql, message", [
    ("create table x as select 1", "is not one SELECT statement"),
    ("select 1; select 2", "holds 2 statements"),
    ("select * from main.events", "table main.events is not a lake table"),
    ("   ", "has no SQL"),
])
def test_what_is_not_one_select_over_lake_tables_is_refused(sql: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sql_model("m", sql)


def test_an_unknown_table_lists_the_tables_that_exist(tmp_path: Path) -> None:
    events = sources.files("events", f"{tmp_path}/*.jsonl", format="jsonl")
    ok = sql_model("counts", "select count(*) as n from raw.events")
    with pytest.raises(ConfigError, match=r"table 'models.evnts' is neither a model nor a raw table.*"
                                          r"tables of this pipeline are raw.events, counts, typo"):
        Pipeline("p", sources=[events], models=[ok, sql_model("typo", "select * from evnts")])
    with pytest.raises(ConfigError, match=r"table 'raw.evnts' names no source"):
        Pipeline("p", sources=[events], models=[sql_model("typo", "select * from raw.evnts")])


def test_a_sql_file_header_gives_the_options() -> None:
    text = ("-- A comment that is not an option\n-- materialized: merge\n-- primary_key: user_id, day\n"
            "-- checks:\n--   - unique(user_id, day)\n--   - accepted_values(kind, ['a', 'b'])\n"
            "-- publish: false\n-- tags: daily, users\nselect 1 as user_id")
    assert header(text, "x.sql") == {"materialized": "merge", "primary_key": ["user_id", "day"],
                                     "checks": ["unique(user_id, day)", "accepted_values(kind, ['a', 'b'])"],
                                     "publish": False, "tags": ["daily", "users"]}
    with pytest.raises(ConfigError, match=r"x.sql:1: unknown option 'materialised'.*options are materialized"):
        header("-- materialised: table\nselect 1", "x.sql")


def test_sql_files_beside_the_pipeline_file_are_its_models(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "likes.sql").write_text(
        "-- checks: not_null(user_id)\nselect user_id, count(*) as likes from raw.events "
        "where kind = 'like' group by user_id\n")
    (tmp_path / "models" / "top.sql").write_text("select * from likes where likes >= 2\n")
    (tmp_path / "pipeline.py").write_text(
        "from engine import Pipeline, sources\n"
        f"pipeline = Pipeline('p', sources=[sources.files('events', '{tmp_path}/events/*.jsonl', format='jsonl')])\n")
    write_events(tmp_path, 1, [(1, "like", 1), (2, "like", 1), (3, "view", 2), (4, "like", 2)])
    p = load_pipeline(tmp_path / "pipeline.py")
    assert [m.name for m in p.ordered_models] == ["likes", "top"]
    assert p.model("likes").path == str(tmp_path / "models" / "likes.sql")
    runner = runner_for(tmp_path, p)
    assert runner.run().ok
    assert rows(runner, "likes") == [(1, 2), (2, 1)] and rows(runner, "top") == [(1, 2)]
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:  # published like any model
        assert con.execute("select * from top").fetchall() == [(1, 2)]


def test_a_models_dir_that_is_not_there_is_an_error_only_when_asked_for(tmp_path: Path) -> None:
    assert Pipeline("p").models == []  # the default: a missing models/ folder is no SQL models
    with pytest.raises(ConfigError, match=r"models_dir '.*sqls' is not a folder"):
        Pipeline("p", models_dir=tmp_path / "sqls")


# -- running ----------------------------------------------------------------------------------
def test_a_sql_error_fails_that_model_only_and_names_it(tmp_path: Path) -> None:
    sql_models.write_inputs(tmp_path)
    p = sql_models.pipeline(tmp_path, ["likes_per_user"])
    broken = sql_model("broken", "select no_such_column from raw.events")
    runner = runner_for(tmp_path, Pipeline("p", sources=p.sources, models=[*p.models, broken], models_dir=None))
    summary = runner.run()
    steps = {s.name: s for s in summary.steps if s.kind == "model"}
    assert steps["likes_per_user"].status == "built"
    assert steps["broken"].status == "failed"
    assert "model 'broken' failed" in str(steps["broken"].error) and "no_such_column" in str(steps["broken"].error)


def test_output_columns_without_unique_names_are_refused(tmp_path: Path) -> None:
    sql_models.write_inputs(tmp_path)
    p = sql_models.pipeline(tmp_path, ["likes_per_user"])
    twice = sql_model("twice", "select user_id, event_id as user_id from raw.events")
    summary = runner_for(tmp_path, Pipeline("p", sources=p.sources, models=[twice], models_dir=None)).run()
    failed = next(s for s in summary.steps if s.name == "twice")
    assert failed.status == "failed"
    assert "['user_id'] appear more than once" in str(failed.error) and "unique name" in str(failed.error)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_incremental_and_merge_sql_models_end_where_a_full_rebuild_does(tmp_path: Path, engine: str) -> None:
    sql_models.write_inputs(tmp_path, days=1)
    p = sql_models.pipeline(tmp_path, ["likes_per_user"])
    new_likes = sql_model("new_likes", "select event_id, user_id from raw.events where kind = 'like'",
                          materialized="incremental")
    seen = sql_model("last_seen", "select user_id, max(event_id) as last_event from raw.events group by user_id",
                     materialized="merge", primary_key="user_id")
    pipe = Pipeline("p", sources=p.sources, models=[new_likes, seen], models_dir=None)
    runner = runner_for(tmp_path, pipe, sql_engine=engine)
    assert runner.run().ok
    sql_models.write_inputs(tmp_path, days=2)
    steps = {s.name: s for s in runner.run().steps if s.kind == "model"}
    assert "incremental" in steps["new_likes"].detail and "appended" in steps["new_likes"].detail
    assert "merged" in steps["last_seen"].detail
    events = sql_models.DAY1 + sql_models.DAY2
    assert rows(runner, "new_likes") == sorted((e, u) for e, k, u in events if k == "like")
    last: dict[int, int] = {}
    for e, _, u in events:
        last[u] = max(last.get(u, 0), e)
    assert rows(runner, "last_seen") == sorted(last.items())


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_an_incremental_sql_model_reads_its_full_inputs_whole(tmp_path: Path, engine: str) -> None:
    sql_models.write_inputs(tmp_path, days=1)
    base = sql_models.pipeline(tmp_path, ["likes_per_user"])
    enriched = sql_model("enriched", """
        select e.event_id, u.country from raw.events e left join raw.users u on u.id = e.user_id""",
                         materialized="incremental", full_inputs=["raw.users"])
    runner = runner_for(tmp_path, Pipeline("p", sources=base.sources, models=[enriched], models_dir=None),
                        sql_engine=engine)
    assert runner.run().ok
    sql_models.write_inputs(tmp_path, days=2)
    step = next(s for s in runner.run().steps if s.name == "enriched")
    assert "incremental" in step.detail and f"appended {len(sql_models.DAY2)}" in step.detail
    country = {u: c for u, c, _ in sql_models.USERS}
    assert rows(runner, "enriched") == sorted((e, country.get(u)) for e, _, u in sql_models.EVENTS)
    with pytest.raises(ConfigError, match=r"full_inputs \['raw.nope'\] are not tables it reads"):
        sql_model("x", "select * from raw.events", full_inputs=["raw.nope"])


def test_checks_run_on_sql_models_and_a_failure_commits_nothing(tmp_path: Path) -> None:
    sql_models.write_inputs(tmp_path)
    p = sql_models.pipeline(tmp_path)
    dupes = sql_model("dupes", "select user_id from raw.events", checks=["unique(user_id)"])
    runner = runner_for(tmp_path, Pipeline("p", sources=p.sources, models=[dupes], models_dir=None))
    step = next(s for s in runner.run().steps if s.name == "dupes")
    assert step.status == "failed" and "unique(user_id)" in str(step.error)
    assert not runner.lake.exists("models.dupes")
    counted = Counter(u for _, _, u in sql_models.EVENTS)
    assert step.checks[0]["failing_rows"] == sum(n for n in counted.values() if n > 1)


def test_python_and_sql_models_read_each_other_and_select_and_lineage_see_the_sql_edges(tmp_path: Path) -> None:
    sql_models.write_inputs(tmp_path)
    base = sql_models.pipeline(tmp_path, ["likes_per_user"])

    @model(inputs={"likes": "likes_per_user"})
    def doubled(likes: pd.DataFrame) -> pd.DataFrame:
        return likes.assign(likes=likes["likes"] * 2)

    top = sql_model("top_doubled", "select user_id, likes from models.doubled where likes >= 8")
    pipe = Pipeline("p", sources=base.sources, models=[*base.models, doubled, top], models_dir=None)
    runner = runner_for(tmp_path, pipe)
    summary = runner.run(select=["+top_doubled"])
    assert summary.ok
    assert [s.name for s in summary.steps if s.kind == "model"] == ["likes_per_user", "doubled", "top_doubled"]
    likes = Counter(u for _, k, u in sql_models.EVENTS if k == "like")
    assert rows(runner, "top_doubled") == sorted((u, 2 * n) for u, n in likes.items() if 2 * n >= 8)
    nodes, edges = graph(pipe)
    label = {n.id: n.label for n in nodes}
    named = {(label[a], label[b]) for a, b in edges}
    assert {("models.doubled", "models.top_doubled"), ("raw.events", "models.likes_per_user")} <= named
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert sorted(con.execute("select * from top_doubled").fetchall()) == rows(runner, "top_doubled")


def test_changing_the_sql_rebuilds_and_the_reference_positions_are_exact() -> None:
    sql = 'select * from raw.events e join  "models" . "x" on true'
    refs = references(sql)
    assert [sql[r.start:r.end] for r in refs] == ["raw.events", '"models" . "x"']
    a, b = sql_model("m", "select 1 as x from raw.e"), sql_model("m", "select 2 as x from raw.e")
    assert a.code_hash != b.code_hash


def test_a_sql_model_is_not_callable() -> None:
    with pytest.raises(TypeError, match="is a SQL model"):
        sql_model("m", "select 1 as x")()
    with pytest.raises(HeadwaterError):
        sql_model("bad name", "select 1")


@pytest.mark.parametrize("kind", ["sql", "polars"])
def test_reproduce_rebuilds_a_sql_or_polars_model_from_the_versions_a_past_run_read(
        tmp_path: Path, kind: str) -> None:
    from engine.runs.reproduce import reproduce

    sql_models.write_inputs(tmp_path, days=1)
    if kind == "sql":
        built = sql_model("likes", sql_models.SQL_MODELS["likes_per_user"][0])
    else:
        import polars as pl

        @model(inputs={"events": "raw.events"}, frame="polars", name="likes")
        def built(events: pl.LazyFrame) -> pl.LazyFrame:
            return events.filter(pl.col("kind") == "like").group_by("user_id").agg(pl.len().alias("likes"))

    base = sql_models.pipeline(tmp_path, ["likes_per_user"])
    p = Pipeline("p", sources=base.sources, models=[built], models_dir=None)
    runner = runner_for(tmp_path, p)
    first = runner.run()
    sql_models.write_inputs(tmp_path, days=2)
    assert runner.run().ok and rows(runner, "likes") == sql_models.expected("likes_per_user", days=2)
    with Runner(p, runner.config) as again:
        done = reproduce(runner.lake, p, again.engine_for(built), first.run_id, "likes", tmp_path / "out")
    assert done.equal and done.inputs["raw.events"] == 0
    assert done.rows == len(sql_models.expected("likes_per_user", days=1))
