"""The bad-input corpus (tests/support/bad_corpus.py, bad_sql.py): no input crashes, hangs or
blocks a source. Every case survives its run, lands its good rows (by value), quarantines every
other row with a reason that names the source, the file and the column (rows in = landed +
quarantined, counted from what the case wrote), and a good input added later still lands.

Cases that crashed or hung a process before (pyarrow's JSON reader on `null`, deep nesting, a
named pipe, /dev/zero) are landed in a child process, and `headwater run` itself is run on all of
them at once: it must exit 0, not die by a signal."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bad_corpus import CASES
from tests.support.bad_inputs import Case, SqlCase, _write, in_child, judge, outcome, rows_in
from tests.support.bad_sql import SQL_CASES

REPO = Path(__file__).resolve().parents[2]


def test_the_corpus_is_large() -> None:
    assert len(CASES) + len(SQL_CASES) >= 100
    assert len({c.name for c in [*CASES, *SQL_CASES]}) == len(CASES) + len(SQL_CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_file(tmp_path: Path, case: Case) -> None:
    out = in_child(case.name, tmp_path) if case.isolate else outcome(case, tmp_path)
    verdict, problems = judge(case, out)
    assert verdict == "clear", problems
    entries = out["entries"]
    assert all(e["source"] == "s" and e["file"].startswith(str(tmp_path / "in")) for e in entries)
    assert all(case.reason in e["reason"] for e in entries), [e["reason"] for e in entries]
    assert all(e["line"] >= 1 for e in entries if e["kind"] == "row")
    assert out["runs"][0]["quarantined"] == len(entries)
    assert out["runs"][2]["status"] == "unchanged"  # a quarantined file is not read again


@pytest.mark.parametrize("case", SQL_CASES, ids=lambda c: c.name)
def test_bad_sql_rows(tmp_path: Path, case: SqlCase) -> None:
    out = outcome(case, tmp_path)
    verdict, problems = judge(case, out)
    assert verdict == "clear", problems
    if case.error:
        assert "source 's'" in out["runs"][0]["detail"]
        return
    assert all(e["source"] == "s" and e["file"] in ("table t", "query") for e in out["entries"])
    assert all(case.reason in e["reason"] for e in out["entries"]), [e["reason"] for e in out["entries"]]


def test_headwater_run_never_dies_by_a_signal(tmp_path: Path) -> None:
    """Every input that crashed or hung a process, in one source folder, through `headwater run`."""
    folder = tmp_path / "in"
    folder.mkdir()
    expected = 0
    for case in CASES:
        if not case.isolate:
            continue
        for name, data in case.files:
            _write(folder, f"{case.name}.{name}", data)
            expected += (rows_in(name, data) or 0) if isinstance(data, bytes) else 0
    (tmp_path / "pipeline.py").write_text(
        "from engine import Pipeline, sources\n"
        f"pipeline = Pipeline('p', sources=[sources.files('s', {str(folder)!r} + '/*', format='jsonl')])\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", "from tests.support.bad_inputs import limit_memory; limit_memory(); "
                           "from engine.cli import main; main()", "run", str(tmp_path / "pipeline.py"),
                           "--lake", str(tmp_path / "lake"), "--warehouse", f"duckdb:///{tmp_path}/wh.duckdb"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    from engine.lake import Lake

    lake = Lake(str(tmp_path / "lake"))
    landed = lake.read("raw.s").num_rows
    entries = lake.read("quarantine.s").to_pylist()
    rows = sum(1 for e in entries if e["kind"] == "row")
    files = {e["file"] for e in entries if e["kind"] == "file"}
    assert landed + rows == expected - sum(rows_in(n, d) or 0 for c in CASES if c.isolate
                                           for n, d in c.files if isinstance(d, bytes) and
                                           str(folder / f"{c.name}.{n}") in files)
    assert len(files) == sum(c.whole for c in CASES if c.isolate)
