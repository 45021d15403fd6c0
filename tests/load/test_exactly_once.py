"""Exactly once: a loader killed with SIGKILL anywhere in a load, then rerun, lands every source
row exactly once, because the state that says what was landed is in the same Delta commit as
the rows.

The loader is the real `headwater run` in a child process. It is killed at three points of its
second load:

* `before_commit`: every row handed to the writer, no log entry (`HEADWATER_FAULT`, see
  engine/lake/faults.py; for an append, data files of the load are already on disk);
* `mid_write`: killed from here the moment the first new data file of the load appears in the
  table's folder, with the log entry not written (no hook: the test watches the folder);
* `after_commit`: the commit is in the log, the process dies before doing anything else
  (`HEADWATER_FAULT`).

The table's `delta.targetFileSize` is set small so that a load writes many data files, one after
another, as a big load would. An SCD2 load (write="scd2") is killed at the same points: it rewrites
the file holding the versions it closes, then writes its new versions, all in one commit.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from engine.lake import Lake
from tests.support.history import expected_history

REPO = Path(__file__).resolve().parents[2]
PIPELINE = '''
from engine import Pipeline, sources
pipeline = Pipeline("crash", sources=[sources.files("items", "{root}/in/*.parquet", {args})])
'''
ROWS_PER_FILE = 60_000
FILES = 4
TARGET_FILE_SIZE = 200_000  # bytes: a load of FILES files writes dozens of data files


def loader(root: Path, fault: str | None = None) -> subprocess.Popen[str]:
    """`headwater run` of the pipeline in `root` in a child process (HEADWATER_FAULT=`fault`)."""
    env = {k: v for k, v in os.environ.items() if k != "HEADWATER_FAULT"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if fault:
        env["HEADWATER_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(root / "pipeline.py"),
                             "--lake", str(root / "lake"), "--warehouse", f"duckdb:///{root}/wh.duckdb"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_end(root: Path) -> None:
    child = loader(root)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0, out


def data_files(table: Path) -> set[str]:
    return {p.name for p in table.glob("*.parquet")}


def kill_at(root: Path, point: str) -> None:
    """Run the loader and see it die by SIGKILL at `point` of its load."""
    table = root / "lake" / "raw" / "items"
    if point != "mid_write":
        child = loader(root, point)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == -signal.SIGKILL, out
        return
    before = data_files(table)
    child = loader(root)
    deadline = time.monotonic() + 120
    while not data_files(table) - before:
        assert child.poll() is None, "the load ended before any data file appeared"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, out


def write_file(root: Path, i: int, ids: np.ndarray, value: str) -> None:
    pq.write_table(pa.table({"id": ids, "v": [f"{value}-{k}" for k in ids.tolist()],
                             "x": np.random.default_rng(i).random(len(ids))}),
                   root / "in" / f"{i:03d}.parquet")


def setup(root: Path, args: str) -> DeltaTable:
    """A first load already landed (ids 0..999), the table set to write small files."""
    (root / "in").mkdir()
    (root / "pipeline.py").write_text(PIPELINE.format(root=root, args=args))
    write_file(root, 0, np.arange(1000), "first")
    run_to_end(root)
    dt = DeltaTable(str(root / "lake" / "raw" / "items"))
    dt.alter.set_table_properties({"delta.targetFileSize": str(TARGET_FILE_SIZE)})
    return dt


def committed(root: Path) -> list[int]:
    return sorted(int(p.stem) for p in (root / "lake" / "raw" / "items" / "_delta_log").glob("*.json"))


@pytest.mark.parametrize("point", ["before_commit", "mid_write", "after_commit"])
def test_files_append_killed_then_rerun_lands_each_file_once(tmp_path: Path, point: str) -> None:
    setup(tmp_path, "")
    versions = committed(tmp_path)
    for i in range(1, FILES + 1):
        write_file(tmp_path, i, np.arange(1000 + (i - 1) * ROWS_PER_FILE, 1000 + i * ROWS_PER_FILE), "new")
    table = tmp_path / "lake" / "raw" / "items"
    before = data_files(table)  # all referenced by the log: nothing was killed yet

    kill_at(tmp_path, point)
    after_kill = committed(tmp_path)
    if point == "after_commit":
        assert after_kill == versions + [versions[-1] + 1]
    else:
        assert after_kill == versions  # no log entry
        assert data_files(table) - before  # but data files of the load are on disk

    run_to_end(tmp_path)
    assert len(committed(tmp_path)) == len(versions) + 1  # the second load: one commit, whoever made it
    ids = Lake(str(tmp_path / "lake")).read("raw.items", columns=["id"]).column("id").to_numpy()
    counts = Counter(ids.tolist())
    assert len(ids) == 1000 + FILES * ROWS_PER_FILE
    assert set(counts) == set(range(1000 + FILES * ROWS_PER_FILE)) and set(counts.values()) == {1}


@pytest.mark.parametrize("point", ["before_commit", "mid_write", "after_commit"])
def test_merge_killed_then_rerun_holds_each_key_once_with_its_last_value(tmp_path: Path, point: str) -> None:
    setup(tmp_path, 'write="merge", primary_key="id"')
    versions = committed(tmp_path)
    total = 1000 + ROWS_PER_FILE * FILES
    # the second load: every other old id edited, new ids, and ids repeated inside the load
    write_file(tmp_path, 1, np.arange(0, total, 2), "stale")
    write_file(tmp_path, 2, np.arange(0, 1000, 2), "edited")
    write_file(tmp_path, 3, np.arange(1000, total), "new")

    kill_at(tmp_path, point)
    assert committed(tmp_path) == versions + ([versions[-1] + 1] if point == "after_commit" else [])

    run_to_end(tmp_path)
    assert len(committed(tmp_path)) == len(versions) + 1
    rows = Lake(str(tmp_path / "lake")).read("raw.items", columns=["id", "v"]).to_pydict()
    assert Counter(Counter(rows["id"]).values()) == {1: total}
    want = {k: f"first-{k}" for k in range(1000)} | {k: f"edited-{k}" for k in range(0, 1000, 2)} \
        | {k: f"new-{k}" for k in range(1000, total)}
    assert dict(zip(rows["id"], rows["v"])) == want


def write_snapshot(root: Path, i: int, values: dict[int, str]) -> None:
    pq.write_table(pa.table({"id": list(values), "v": list(values.values())}), root / "in" / f"{i:03d}.parquet")


@pytest.mark.parametrize("point", ["before_commit", "mid_write", "after_commit"])
def test_scd2_killed_then_rerun_keeps_each_version_once(tmp_path: Path, point: str) -> None:
    """An SCD2 load (closing changed and vanished keys, adding versions) killed anywhere, then run
    again: one commit for the load, and the history an independent computation gives."""
    (tmp_path / "in").mkdir()
    (tmp_path / "pipeline.py").write_text(PIPELINE.format(root=tmp_path, args='write="scd2", primary_key="id"'))
    first = {k: f"first-{k}" for k in range(1000)}
    write_snapshot(tmp_path, 0, first)
    run_to_end(tmp_path)
    versions = committed(tmp_path)
    total = 1000 + 2 * ROWS_PER_FILE  # a snapshot big enough to write several files of new versions
    # the next snapshot: 0-499 deleted, even ids of 500-999 edited, odd ones as they were, new ids
    second = {k: f"edited-{k}" if k < 1000 and k % 2 == 0 else first.get(k, f"new-{k}") for k in range(500, total)}
    write_snapshot(tmp_path, 1, second)

    kill_at(tmp_path, point)
    assert committed(tmp_path) == versions + ([versions[-1] + 1] if point == "after_commit" else [])
    run_to_end(tmp_path)
    assert len(committed(tmp_path)) == len(versions) + 1

    rows = Lake(str(tmp_path / "lake")).read("raw.items").to_pylist()
    loads = sorted({r["_hw_valid_from"] for r in rows})
    assert len(loads) == 2  # the two loads' times, named here by their order
    named = {None: None, loads[0]: "load 1", loads[1]: "load 2"}
    got = sorted(((r["id"], r["v"], named[r["_hw_valid_from"]], named[r["_hw_valid_to"]]) for r in rows), key=repr)
    snapshots = [(name, {k: {"v": v} for k, v in values.items()}) for name, values in (("load 1", first),
                                                                                       ("load 2", second))]
    assert got == expected_history(snapshots, columns=["v"])
