"""One failure policy for a whole run (engine/runs/plan.py): a failed step skips only what
depends on it, independent models still build and publish, the summary lists every step, the
error names the user's file and line, and the runs table keeps the user's traceback."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from engine import Config, Runner, load_pipeline
from engine.cli import app
from engine.lake import Lake
from engine.runs import manifest

PIPELINE = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", {orders!r})
broken = sources.files("broken", {broken!r})


@model(inputs={{"orders": "raw.orders"}})
def boom(orders):
    ids = orders.set_index("order_id")
    return ids.loc[:, ["photoid"]]  # no such column: KeyError, raised in pandas


@model(inputs={{"boom": "boom"}})
def after_boom(boom):
    return boom


@model(inputs={{"orders": "raw.orders"}})
def fine(orders):
    return orders[["order_id", "amount"]]


@model(inputs={{"broken": "raw.broken"}})
def from_broken(broken):
    return broken


pipeline = Pipeline("half", sources=[orders, broken], models=[boom, after_boom, fine, from_broken])
'''
ORDERS = [(1, 10.0), (2, 25.5), (3, 40.0)]


@pytest.fixture
def half(tmp_path: Path) -> Path:
    """A pipeline file where `boom` raises, `after_boom` reads it, `fine` reads only the good
    source, and `from_broken` reads a source whose only file has a format nobody can read."""
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "a.csv").write_text("order_id,amount\n" + "".join(f"{i},{a}\n" for i, a in ORDERS))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.data").write_text("a,b\n1,2\n")
    path = tmp_path / "half.py"
    path.write_text(PIPELINE.format(orders=str(tmp_path / "orders" / "*.csv"),
                                    broken=str(tmp_path / "broken" / "*.data")))
    return path


def config(root: Path) -> Config:
    return Config.load(root, lake=str(root / "lake"), warehouse=f"duckdb:///{root}/wh.duckdb", backend="pandas")


def boom_line(path: Path) -> int:
    """The line of `boom` that raises, counted in the file as written."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if '["photoid"]' in line)


def statuses(summary: object) -> dict[tuple[str, str], tuple[str, str]]:
    return {(s.kind, s.name): (s.status, s.detail) for s in summary.steps}  # type: ignore[attr-defined]


def test_a_failed_step_skips_only_what_depends_on_it(half: Path) -> None:
    summary = Runner(load_pipeline(half), config(half.parent)).run()
    got = statuses(summary)
    assert got["load", "orders"][0] == "landed"
    assert got["load", "broken"][0] == "failed" and "cannot tell the format" in got["load", "broken"][1]
    assert got["model", "boom"] == ("failed", f"half.py:{boom_line(half)} in boom: KeyError: \"None of "
                                              "[Index(['photoid'], dtype='str')] are in the [columns]\"")
    assert got["model", "after_boom"] == ("skipped", "upstream model 'boom' failed")
    assert got["publish", "boom"] == ("skipped", "upstream model 'boom' failed")
    assert got["publish", "after_boom"] == ("skipped", "upstream model 'boom' failed")  # the root, not after_boom
    assert got["model", "from_broken"] == ("skipped", "upstream load 'broken' failed")
    assert got["publish", "from_broken"] == ("skipped", "upstream load 'broken' failed")
    assert got["model", "fine"][0] == "built" and got["publish", "fine"][0] == "published"
    assert len(summary.steps) == 2 + 4 + 4  # every step of the plan is in the summary
    with duckdb.connect(str(half.parent / "wh.duckdb"), read_only=True) as con:
        assert sorted(con.execute("select order_id, amount from fine").fetchall()) == ORDERS
    assert not summary.ok and summary.error.startswith("load 'broken' failed: ")
    assert "(1 more step(s) failed; 5 skipped)" in summary.error


def test_the_runs_table_keeps_the_users_traceback(half: Path) -> None:
    summary = Runner(load_pipeline(half), config(half.parent)).run()
    (recorded,) = [r for r in manifest.runs(Lake(str(half.parent / "lake"))) if r["run_id"] == summary.run_id]
    assert recorded["status"] == "failed"
    boom = next(s for s in recorded["steps"] if s["kind"] == "model" and s["name"] == "boom")
    assert boom["traceback"].startswith("Traceback (most recent call last):")
    assert f'half.py", line {boom_line(half)}, in boom' in boom["traceback"]
    assert "engine/" not in boom["traceback"].split("pandas")[0]  # from the user's frame down, not the engine's
    assert boom["traceback"].rstrip().endswith("are in the [columns]\"")
    assert "error" not in boom and json.dumps(recorded["steps"])  # the exception itself is not stored


def test_fail_fast_stops_at_the_first_failure(half: Path) -> None:
    summary = Runner(load_pipeline(half), config(half.parent)).run(fail_fast=True)
    got = statuses(summary)
    assert got["load", "broken"][0] == "failed"  # the second step of the plan
    stopped = "not run: --fail-fast stopped the run after load 'broken' failed"
    assert got["model", "fine"] == ("skipped", stopped) and got["model", "boom"] == ("skipped", stopped)
    assert [s.status for s in summary.steps].count("skipped") == len(summary.steps) - 2


def test_the_cli_names_the_users_file_and_line_and_exits_non_zero(half: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(half.parent)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    only_boom = ["run", str(half), "--exclude", "raw.broken+"]  # boom is the one step that fails
    result = CliRunner().invoke(app, only_boom)
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error == (f"error: model 'boom' failed: half.py:{boom_line(half)} in boom: KeyError: \"None of "
                     "[Index(['photoid'], dtype='str')] are in the [columns]\" "
                     "(3 skipped; HEADWATER_DEBUG=1 prints the traceback)")
    assert "skipped" in result.output and "fine" in result.output  # the summary lists every step

    monkeypatch.setenv("HEADWATER_DEBUG", "1")
    debug = CliRunner().invoke(app, only_boom)
    assert debug.exit_code == 1
    trace = debug.output.split("Traceback (most recent call last):", 1)[1]
    assert f'half.py", line {boom_line(half)}, in boom' in trace
    assert "engine/cli" not in trace and "engine/runs" not in trace  # the user's frames, not the CLI's


def test_a_bad_warehouse_url_fails_the_run_before_anything_lands(half: Path) -> None:
    """The warehouse is checked before the first step (issue 16: found only after every load and
    build, it wasted the run); a run that publishes nothing does not need it."""
    bad = Config.load(half.parent, lake=str(half.parent / "lake"), warehouse="nosuchdb://host/db", backend="pandas")
    summary = Runner(load_pipeline(half), bad).run(exclude="raw.broken+")
    assert summary.steps == [] and summary.error is not None
    assert summary.error.startswith("no driver for warehouse URL nosuchdb://host/db")
    assert Lake(str(half.parent / "lake")).tables() == []  # nothing landed or built
    lake_only = Runner(load_pipeline(half), bad).run(select="raw.orders")
    assert lake_only.ok and statuses(lake_only) == {("load", "orders"): ("landed", "1 new file(s) of 1")}
