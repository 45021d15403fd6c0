"""Checks inside runs: a failing error check keeps the model's previous version in the lake and
its previous table in the warehouse; warnings are reported and the build lands."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from engine import Config, HeadwaterError, Runner, load_pipeline
from engine.cli import app
from tests.support.pipeline_folder import pipeline_folder, write_events

PIPELINE = '''
from engine import Pipeline, model, sources

events = sources.files("events", "{root}/events/*.jsonl", format="jsonl")
users = sources.sql("users", "sqlite:///{root}/users.sqlite", "users", cursor="updated")

@model(inputs={{"events": "raw.events"}}, checks=[
    "unique(event_id)", "not_null(user_id)", "accepted_values(kind, ['view', 'like'])",
    "relationships(user_id, raw.users.id)", "warn: row_count(max=4)", "expression(event_id > 0)"])
def clean_events(events):
    return events[["event_id", "kind", "user_id"]]

pipeline = Pipeline("checked", sources=[events, users], models=[clean_events])
'''


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return pipeline_folder(tmp_path, PIPELINE)


def runner(root: Path) -> Runner:
    return Runner(load_pipeline(root / "pipeline.py"),
                  Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root}/wh.duckdb",
                              backend="pandas"))


def warehouse_ids(root: Path) -> list[int]:
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        return [r[0] for r in con.execute("select event_id from clean_events order by 1").fetchall()]


def test_passing_checks_are_listed_with_their_results(root: Path) -> None:
    summary = runner(root).run()
    assert summary.ok, summary.error
    step = next(s for s in summary.steps if s.kind == "model")
    assert [(c["name"], c["status"], c["failing_rows"]) for c in step.checks] == [
        ("unique(event_id)", "pass", 0), ("not_null(user_id)", "pass", 0),
        ("accepted_values(kind, ['view', 'like'])", "pass", 0), ("relationships(user_id, to=raw.users.id)", "pass", 0),
        ("row_count(max=4)", "pass", 0), ("expression(event_id > 0)", "pass", 0)]
    assert "6 checks: 6 passed" in step.detail


def test_a_failed_error_check_keeps_the_previous_lake_and_warehouse_versions(root: Path) -> None:
    first = runner(root).run()
    assert first.ok and warehouse_ids(root) == [1, 2, 3]
    version = runner(root).lake.version("models.clean_events")
    write_events(root, 2, [(3, "view", 2), (4, "share", 9)])  # a duplicate id, a bad kind, an unknown user
    r = runner(root)
    summary = r.run()
    assert not summary.ok
    step = next(s for s in summary.steps if s.kind == "model")
    assert step.status == "failed" and "3 check(s) failed" in step.detail
    failing = {c["name"]: c["failing_rows"] for c in step.checks if c["status"] == "fail"}
    assert failing == {"unique(event_id)": 2, "accepted_values(kind, ['view', 'like'])": 1,
                       "relationships(user_id, to=raw.users.id)": 1}
    warned = [c for c in step.checks if c["status"] == "warn"]
    assert [(c["name"], c["failing_rows"]) for c in warned] == [("row_count(max=4)", 1)]  # 5 rows, max 4
    assert r.lake.version("models.clean_events") == version  # nothing committed
    assert [(s.name, s.status, s.detail) for s in summary.steps if s.kind == "publish"] == [
        ("clean_events", "skipped", "upstream model 'clean_events' failed")]  # never published
    assert warehouse_ids(root) == [1, 2, 3]  # the warehouse still has the previous table


def test_the_cli_prints_every_check_and_fails_the_run(root: Path) -> None:
    write_events(root, 2, [(0, "view", 1)])
    out = CliRunner().invoke(app, ["run", str(root / "pipeline.py"), "--lake", str(root / "lake"),
                                   "--warehouse", f"duckdb:///{root}/wh.duckdb", "--backend", "pandas"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 1
    assert "expression(event_id > 0)" in out.output and "checks" in out.output
    assert "1 check(s) failed" in out.output


def test_a_bad_check_spec_fails_at_declaration(root: Path) -> None:
    (root / "pipeline.py").write_text(PIPELINE.format(root=root).replace('"unique(event_id)"', '"uniq(event_id)"'))
    with pytest.raises(HeadwaterError, match="model 'clean_events'"):
        load_pipeline(root / "pipeline.py")
