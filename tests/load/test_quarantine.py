"""Quarantine and schema contracts: where a quarantined row says it came from, how a contract
changes the table, and quarantine beside widening and merges. The corpus of bad inputs is in
test_bad_inputs.py."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import Config
from engine.errors import HeadwaterError
from engine.pipeline import Pipeline
from engine.runs.runner import Runner
from engine.sources import files

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
HEAD = b"id,name,score\n"
GOOD_JSON = b'{"id": 1, "name": "ann", "dev": {"os": "ios"}, "tags": ["a"]}\n{"id": 2, "name": "bob"}\n'


def run_source(tmp_path: Path, source) -> tuple[Runner, object]:  # type: ignore[no-untyped-def]
    runner = Runner(Pipeline("t", sources=[source]), Config(lake=str(tmp_path / "lake")))
    return runner, runner.load(source.name, "run1", NOW)


def test_quarantine_rows_say_where_and_what(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(HEAD + b"1,ann,1.5\n2,bob\n3,cy,x\n4,di,4.5\n")
    runner, step = run_source(tmp_path, files("s", str(tmp_path / "in"), schema={"score": "float64"}))
    rows = sorted(runner.lake.read("quarantine.s").to_pylist(), key=lambda e: e["line"])
    assert [(e["line"], e["raw"], e["file"]) for e in rows] == [
        (3, "2,bob\n", str(tmp_path / "in" / "a.csv")), (4, "3,cy,x\n", str(tmp_path / "in" / "a.csv"))]
    assert "Expected 3 columns, got 2" in rows[0]["reason"] and "double" in rows[1]["reason"]
    assert step.rows == 2 and step.quarantined == 2 and "2 quarantined" in step.detail
    assert sorted(r["id"] for r in runner.lake.read("raw.s").to_pylist()) == [1, 4]


def test_evolve_adds_columns_and_widens_types(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(b'{"id": 1, "v": 1}\n')
    runner, _ = run_source(tmp_path, files("s", str(folder)))
    (folder / "2.jsonl").write_bytes(b'{"id": 2, "v": 2.5, "extra": "e"}\n')
    step = runner.load("s", "run2", NOW)
    assert "widened v int64 -> double" in step.detail and "added extra" in step.detail
    table = runner.lake.read("raw.s")
    assert table.schema.field("v").type == pa.float64()
    assert sorted((r["id"], r["v"], r["extra"]) for r in table.to_pylist()) == [(1, 1.0, None), (2, 2.5, "e")]


def test_freeze_names_column_file_and_types(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(b'{"id": 1, "v": 1}\n')
    runner, _ = run_source(tmp_path, files("s", str(folder), contract="freeze"))
    (folder / "2.jsonl").write_bytes(b'{"id": 2, "v": 2.5}\n')
    step = runner.load("s", "run2", NOW)
    assert step.status == "failed"
    assert "column 'v' is double, the table has int64" in step.detail and "2.jsonl" in step.detail
    (folder / "2.jsonl").write_bytes(b'{"id": 2, "v": 2, "new": 1}\n')
    assert "new column 'new'" in runner.load("s", "run3", NOW).detail
    with pytest.raises(HeadwaterError, match="unknown contract"):
        files("s", str(folder), contract="loose")


def test_discard_columns_drops_and_counts(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.csv").write_bytes(b"id\n1\n")
    runner, _ = run_source(tmp_path, files("s", str(folder), contract="discard_columns"))
    (folder / "2.csv").write_bytes(b"id,a,b\n2,x,y\n")
    step = runner.load("s", "run2", NOW)
    assert step.status == "landed" and "dropped 2 new column(s): a, b" in step.detail
    assert runner.lake.read("raw.s").column_names == ["id", "_hw_source_file", "_hw_loaded_at", "_hw_run_id"]


def test_schema_union_is_planned_before_the_stream(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()  # one run, one commit: the second file's new column must be known up front
    (folder / "1.jsonl").write_bytes(b'{"id": 1}\n')
    (folder / "2.jsonl").write_bytes(b'{"id": 2, "user": {"name": "z"}}\n')
    runner, step = run_source(tmp_path, files("s", str(folder)))
    assert step.rows == 2 and runner.lake.version("raw.s") == 0
    assert sorted((r["id"], r["user__name"]) for r in runner.lake.read("raw.s").to_pylist()) == [
        (1, None), (2, "z")]


def test_headwater_show_quarantine(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(GOOD_JSON + b"[1, 2]\n")
    runner, _ = run_source(tmp_path, files("s", str(tmp_path / "in")))
    shown = CliRunner().invoke(app, ["show", "quarantine.s", "--lake", str(tmp_path / "lake")])
    assert shown.exit_code == 0, shown.output
    assert "quarantine.s @ version 0 (first 1 rows)" in shown.output and "reason" in shown.output
    assert "quarantine.s" in runner.lake.tables()


def test_parquet_structs_stay_structs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    table = pa.table({"id": [1, 2], "dev": [{"os": "ios"}, {"os": "android"}]})
    pq.write_table(table, tmp_path / "in" / "a.parquet")
    runner, step = run_source(tmp_path, files("s", str(tmp_path / "in")))
    assert (step.rows, step.quarantined) == (2, 0)
    assert sorted(r["dev"]["os"] for r in runner.lake.read("raw.s").to_pylist()) == ["android", "ios"]


def test_field_first_seen_after_the_sample_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    lines = [json.dumps({"id": i}) for i in range(120_000)]  # > 1 MB: the plan samples the first MB
    lines.insert(100_000, json.dumps({"id": -1, "late": "x"}))
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    runner, step = run_source(tmp_path, files("s", str(tmp_path / "in")))
    (entry,) = runner.lake.read("quarantine.s").to_pylist()
    assert (step.rows, step.quarantined, entry["line"]) == (120_000, 1, 100_001)
    assert "field 'late' is not in the planned schema" in entry["reason"] and '"late"' in entry["raw"]


def test_widening_rewrite_and_quarantine_in_one_run(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(b'{"id": 1, "v": 1}\n{"id": 2, "v": 2}\n')
    runner, _ = run_source(tmp_path, files("s", str(folder)))
    (folder / "2.jsonl").write_bytes(b'{"id": 3, "v": 3.5}\nnot json\n')
    step = runner.load("s", "run2", NOW)
    assert (step.rows, step.quarantined, step.version) == (1, 1, 1)  # rows landed in this run
    assert sorted((r["id"], r["v"]) for r in runner.lake.read("raw.s").to_pylist()) == [(1, 1.0), (2, 2.0), (3, 3.5)]
    assert runner.lake.history("raw.s", 1)[0]["quarantine"]["version_if_any"] == 0
    assert runner.lake.read("quarantine.s").column("line").to_pylist() == [2]


def test_lines_after_a_parse_error_keep_their_own_numbers(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1, "n": 5}\n[1, 2]\n{"id": 3, "n": 7}\n{"id": 4, "n": "abc"}\n')
    runner, step = run_source(tmp_path, files("s", str(tmp_path / "a.jsonl"), schema={"n": "int64"}))
    entries = sorted((e["line"], e["raw"]) for e in runner.lake.read("quarantine.s").to_pylist())
    assert entries == [(2, "[1, 2]\n"), (4, '{"id": 4, "n": "abc"}\n')]
    assert sorted(r["id"] for r in runner.lake.read("raw.s").to_pylist()) == [1, 3]


def test_a_merge_load_that_is_all_quarantined_is_still_recorded(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(b'{"id": 1, "v": 1}\n')
    source = files("s", str(folder), write="merge", primary_key="id")
    runner, _ = run_source(tmp_path, source)
    (folder / "2.jsonl").write_bytes(b"not json\n")
    step = runner.load("s", "run2", NOW)
    assert step.quarantined == 1 and str(folder / "2.jsonl") in runner.lake.state("raw.s")["files"]
    again = runner.load("s", "run3", NOW)
    assert again.status == "unchanged" and runner.lake.read("quarantine.s").num_rows == 1


def test_freeze_holds_for_replace_sources_too(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.csv").write_bytes(b"id,v\n1,1\n")
    runner, _ = run_source(tmp_path, files("s", str(folder), write="replace", contract="freeze"))
    (folder / "2.csv").write_bytes(b"id,v,extra\n2,2,x\n")
    step = runner.load("s", "run2", NOW)
    assert step.status == "failed" and "new column 'extra'" in step.detail
    assert runner.lake.read("raw.s").column_names[:2] == ["id", "v"]
    assert "extra" not in runner.lake.read("raw.s").column_names


def test_widening_under_merge_keeps_state_and_merges(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.jsonl").write_bytes(b'{"id": 1, "v": 1}\n{"id": 2, "v": 2}\n')
    runner, _ = run_source(tmp_path, files("s", str(folder), write="merge", primary_key="id"))
    (folder / "2.jsonl").write_bytes(b'{"id": 2, "v": 2.5}\n{"id": 3, "v": 3.5}\n')
    step = runner.load("s", "run2", NOW)
    assert step.status == "landed", step.detail
    table = runner.lake.read("raw.s")
    assert table.schema.field("v").type == pa.float64()
    assert sorted((r["id"], r["v"]) for r in table.to_pylist()) == [(1, 1.0), (2, 2.5), (3, 3.5)]
    assert sorted(runner.lake.state("raw.s")["files"]) == [str(folder / "1.jsonl"), str(folder / "2.jsonl")]
    assert runner.load("s", "run3", NOW).status == "unchanged"
