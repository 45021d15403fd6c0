"""`headwater backfill` and `headwater run --partition` through the real command line."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.lake import Lake
from tests.transform.test_partitions import expected, write_day

PIPELINE = '''
from engine import Pipeline, sources
from tests.transform.test_partitions import daily
events = sources.files("events", "events/*.jsonl", format="jsonl")
pipeline = Pipeline("days", sources=[events], models=[daily], models_dir=None)
'''


def invoke(root: Path, *args: str):  # noqa: ANN201
    return CliRunner().invoke(app, [*args, "--lake", str(root / "lake"), "--warehouse",
                                    f"duckdb:///{root / 'wh.duckdb'}", "--backend", "pandas"],
                              env={"COLUMNS": "160"})


def test_backfill_and_run_partition_rebuild_what_they_are_asked(tmp_path: Path) -> None:
    for d in range(4):
        write_day(tmp_path, d, 8)
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    pipeline = str(tmp_path / "pipeline.py")
    assert invoke(tmp_path, "run", pipeline).exit_code == 0
    write_day(tmp_path, 9, 0, late=[(0, 1), (2, 1)])
    assert invoke(tmp_path, "run", pipeline, "-s", "raw.events").exit_code == 0  # land only

    one = invoke(tmp_path, "run", pipeline, "-s", "daily", "--partition", "2026-03-01")
    assert one.exit_code == 0, one.output
    assert "partition(s) 2026-03-01 asked for" in one.output
    lake = Lake(str(tmp_path / "lake"))
    likes = {r["day"].isoformat(): r["likes"] for r in lake.read("models.daily").to_pylist()}
    want = {d.isoformat(): likes_ for d, likes_, _ in expected(tmp_path)}
    assert likes["2026-03-01"] == want["2026-03-01"]  # rebuilt with its late row
    assert likes["2026-03-03"] == want["2026-03-03"] - 1  # not asked for: its late row is not in yet

    filled = invoke(tmp_path, "backfill", pipeline, "-s", "daily", "--from", "2026-03-01", "--to", "2026-03-04",
                    "--parallel", "2")
    assert filled.exit_code == 0, filled.output
    assert "models.daily[2026-03-04]" in filled.output and "backfilled 4 partition(s) of daily" in filled.output
    likes = {r["day"].isoformat(): r["likes"] for r in lake.read("models.daily").to_pylist()}
    assert likes == want

    backwards = invoke(tmp_path, "backfill", pipeline, "-s", "daily", "--from", "2026-03-04", "--to", "2026-03-01")
    assert backwards.exit_code == 1 and "--from 2026-03-04 is after --to 2026-03-01" in backwards.output
    bad_date = invoke(tmp_path, "backfill", pipeline, "-s", "daily", "--from", "March", "--to", "2026-03-01")
    assert bad_date.exit_code == 1 and "'March' is not a date" in bad_date.output


def test_run_dry_run_writes_nothing_and_says_what_would_happen(tmp_path: Path) -> None:
    write_day(tmp_path, 0, 5)
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    pipeline = str(tmp_path / "pipeline.py")
    assert invoke(tmp_path, "run", pipeline).exit_code == 0
    lake = Lake(str(tmp_path / "lake"))
    before = {t: lake.version(t) for t in lake.tables()}
    write_day(tmp_path, 1, 5)
    dry = invoke(tmp_path, "run", pipeline, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1 new file(s) of 2" in dry.output and "nothing is written" in dry.output
    assert {t: lake.version(t) for t in lake.tables()} == before
