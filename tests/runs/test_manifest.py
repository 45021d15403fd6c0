"""The run manifest, lineage and reproduction, on real Delta tables and a real git checkout."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import Config, HeadwaterError, Runner, load_pipeline
from engine.cli import app
from engine.runs.compare import differences
from engine.runs.manifest import find, runs
from engine.runs.reproduce import edges, label, reproduce, upstream
from engine.transform.backends import resolve
from tests.support.pipeline_folder import make_users, pipeline_folder, write_events

PIPELINE = '''
from engine import Pipeline, model, sources

events = sources.files("events", "{root}/events/*.jsonl", format="jsonl")
users = sources.sql("users", "sqlite:///{root}/users.sqlite", "users", cursor="updated",
                    primary_key="id", write="merge")

@model(inputs={{"events": "raw.events", "users": "raw.users"}}, publish=False)
def by_country(events, users):
    out = events.merge(users, left_on="user_id", right_on="id")
    return out.groupby("country", as_index=False).agg(events=("event_id", "count"))

@model(inputs={{"by_country": "by_country"}}, publish=False)
def top(by_country):
    return by_country.sort_values(["events", "country"], ascending=False).head(2).reset_index(drop=True)

pipeline = Pipeline("manifest", sources=[events, users], models=[by_country, top])
'''

cli = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return pipeline_folder(tmp_path, PIPELINE)


def run(root: Path):  # noqa: ANN201
    runner = Runner(load_pipeline(root / "pipeline.py"), Config.load(root, lake=str(root / "lake"), backend="pandas"))
    summary = runner.run()
    assert summary.ok, summary.error
    return runner, summary


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_every_run_records_code_data_versions_rows_and_timings(root: Path) -> None:
    git(root, "init", "-q")
    git(root, "add", "pipeline.py")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "p")
    runner, first = run(root)
    write_events(root, 2, [(4, "view", 2)])
    runner, second = run(root)
    recorded = runs(runner.lake)
    assert [r["run_id"] for r in recorded] == [second.run_id, first.run_id]
    newest = recorded[0]
    assert newest["status"] == "ok" and newest["backend"] == "pandas"
    assert newest["git_commit"] == git(root, "rev-parse", "HEAD") and newest["git_dirty"] is False
    assert newest["pipeline_file"] == str(root / "pipeline.py") and len(newest["pipeline_hash"]) == 64
    steps = {(s["kind"], s["name"]): s for s in newest["steps"]}
    model = steps[("model", "by_country")]
    assert model["version"] == runner.lake.version("models.by_country")
    meta = runner.lake.metadata("models.by_country")
    assert model["inputs"] == meta["inputs"] == {"raw.events": runner.lake.version("raw.events"),
                                                 "raw.users": runner.lake.version("raw.users")}
    assert steps[("load", "events")]["rows"] == 1 and steps[("load", "users")]["status"] == "unchanged"
    assert all(s["seconds"] >= 0 for s in newest["steps"])
    (root / "pipeline.py").write_text((root / "pipeline.py").read_text() + "\n# edited\n")
    write_events(root, 3, [(5, "view", 1)])
    runner, _ = run(root)
    assert runs(runner.lake)[0]["git_dirty"] is True


def test_lineage_is_the_tree_of_input_versions(root: Path) -> None:
    runner, _ = run(root)
    write_events(root, 2, [(4, "view", 2)])
    runner, _ = run(root)
    tree = upstream(runner.lake, "top")
    assert label(tree) == f"models.top@v{runner.lake.version('models.top')}"
    assert [label(n) for n in tree.inputs] == [f"models.by_country@v{runner.lake.version('models.by_country')}"]
    leaves = {label(n) for n in tree.inputs[0].inputs}
    assert leaves == {f"raw.events@v{runner.lake.version('raw.events')}",
                      f"raw.users@v{runner.lake.version('raw.users')}"}
    old = upstream(runner.lake, "models.top", 0)
    assert {label(n) for n in old.inputs[0].inputs} == {"raw.events@v0", "raw.users@v0"}
    out = cli.invoke(app, ["lineage", "models.top", "--format", "mermaid", "--lake", str(root / "lake")])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("graph LR") and out.output.count("-->") == len(edges(tree)) == 3
    dot = cli.invoke(app, ["lineage", "top", "--format", "dot", "--lake", str(root / "lake")])
    assert dot.output.startswith("digraph")
    assert '"raw.events@v1" -> "models.by_country@v1";' in dot.output  # users unchanged: still v0
    assert '"raw.users@v0" -> "models.by_country@v1";' in dot.output


def test_reproduce_rebuilds_a_past_run_value_for_value_after_the_inputs_changed(root: Path, tmp_path: Path) -> None:
    runner, first = run(root)
    write_events(root, 2, [(4, "view", 2), (5, "like", 2), (6, "view", 2)])
    make_users(root, [(1, "es", "b")])
    runner, _ = run(root)
    then = runner.lake.read("models.by_country", find(runner.lake, first.run_id)["steps"][2]["version"])
    assert differences(then, runner.lake.read("models.by_country"))  # the inputs really changed
    backend, _ = resolve("pandas")
    done = reproduce(runner.lake, runner.pipeline, backend, first.run_id[:-2], "by_country", tmp_path / "out")
    assert done.equal and done.rows == then.num_rows
    assert done.inputs == {"raw.events": 0, "raw.users": 0}
    from deltalake import DeltaTable
    assert not differences(DeltaTable(done.path).to_pyarrow_table(), then)
    out = cli.invoke(app, ["reproduce", first.run_id, "--table", "top", "--out", str(tmp_path / "cli"),
                           "--lake", str(root / "lake")])
    assert out.exit_code == 0, out.output
    assert "equal to models.top" in out.output


def test_reproduce_refuses_changed_code_and_unknown_runs(root: Path, tmp_path: Path) -> None:
    runner, first = run(root)
    (root / "pipeline.py").write_text(PIPELINE.format(root=root).replace('"count"', '"nunique"'))
    changed = load_pipeline(root / "pipeline.py")
    backend, _ = resolve("pandas")
    with pytest.raises(HeadwaterError, match="code changed") as info:
        reproduce(runner.lake, changed, backend, first.run_id, "by_country", tmp_path / "o")
    assert "--allow-code-change" in info.value.hint
    with pytest.raises(HeadwaterError, match="no recorded run"):
        reproduce(runner.lake, changed, backend, "19990101", "by_country", tmp_path / "o")
    with pytest.raises(HeadwaterError, match="did not build model 'nope'"):
        reproduce(runner.lake, changed, backend, first.run_id, "nope", tmp_path / "o")
    out = cli.invoke(app, ["runs", "--lake", str(root / "lake")])
    assert out.exit_code == 0 and first.run_id in out.output


def test_lineage_and_reproduce_look_through_a_commit_headwater_did_not_write(root: Path, tmp_path: Path) -> None:
    runner, first = run(root)
    write_events(root, 2, [(4, "view", 2)])
    run(root)  # a second file in models.by_country's history (overwrite), then compact it
    before = runner.lake.version("models.by_country")
    runner.lake.table("models.by_country").alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 60 days"})
    assert runner.lake.version("models.by_country") == before + 1  # a commit Headwater did not write
    runner, second = run(root)  # nothing new: the step records that version
    step = next(s for s in find(runner.lake, second.run_id)["steps"] if s["name"] == "by_country")
    assert step["status"] == "unchanged" and step["version"] == runner.lake.version("models.by_country")
    backend, _ = resolve("pandas")
    done = reproduce(runner.lake, runner.pipeline, backend, second.run_id, "by_country", tmp_path / "o")
    assert done.equal and done.inputs == {"raw.events": 1, "raw.users": 0}
    tree = upstream(runner.lake, "models.by_country")
    assert {label(n) for n in tree.inputs} == {"raw.events@v1", "raw.users@v0"}
