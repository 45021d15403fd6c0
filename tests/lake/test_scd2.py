"""SCD2 loads into the lake (engine/lake/scd2.py) on real Delta tables: the row hash is the
documented one, a load reads only files that may hold a current version of its keys and rewrites
only those holding a version it closes, repeated keys resolve by cursor then read order, each load
is one commit carrying its state, and a raced load commits nothing."""
from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from engine.errors import ConcurrentRunError
from engine.lake import Based, Lake, scd2
from engine.lake.history import History, row_hash, valid_at
from tests.support.history import COLUMNS, LOADED, expected_history, history_rows, land_snapshots
from tests.support.s3 import S3Server

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
SCHEMA = pa.schema([("id", pa.int64()), ("plan", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])


def rows(ids: range | list[int], plan: str, at: datetime = T0) -> list[pa.RecordBatch]:
    return pa.Table.from_pylist([{"id": i, "plan": plan, "at": at} for i in ids], schema=SCHEMA).to_batches()


def history(when: datetime, **options: Any) -> History:
    return History(["id"], when, **options)


def load(lake: Lake, batches: list[pa.RecordBatch], when: datetime, state: dict[str, Any] | None = None,
         **options: Any) -> Any:
    left_out: list[str] = []

    def settle(table: pa.Table, reasons: list[str]) -> int:
        left_out.extend(reasons)
        return 0

    commit = lake.land("raw.t", batches, run_id=when.isoformat(), state=state or {}, mode="scd2", schema=SCHEMA,
                       history=history(when, **options), settle=settle)
    return commit, left_out


def files(lake: Lake) -> set[str]:
    return {Path(u).name for u in DeltaTable(lake.uri("raw.t")).file_uris()}


def current(lake: Lake) -> dict[int, str]:
    return {r["id"]: r["plan"] for r in lake.read("raw.t").to_pylist() if r["_hw_valid_to"] is None}


def test_the_row_hash_is_blake2b_of_name_length_value_marks_with_nulls_left_out() -> None:
    table = pa.table({"b": ["x", None], "a": [12, 12], "t": pa.array([T0, None], pa.timestamp("us", tz="UTC"))})
    micros = int(T0.timestamp() * 1_000_000)
    first = f"a\x1f2\x1f12\x1fb\x1f1\x1fx\x1ft\x1f{len(str(micros))}\x1f{micros}\x1f"
    want = [hashlib.blake2b(text.encode(), digest_size=16).hexdigest() for text in (first, "a\x1f2\x1f12\x1f")]
    assert row_hash(table, ["b", "a", "t"]).to_pylist() == want  # columns in any order: sorted by name
    assert row_hash(table.select(["a"]), ["a"]).to_pylist() == [want[1], want[1]]  # a null adds nothing
    assert row_hash(pa.table({"a": ["1 2"]}), ["a"]) != row_hash(pa.table({"a": ["1"], "b": ["2"]}), ["a", "b"])


def test_a_load_reads_and_rewrites_only_files_that_hold_versions_of_its_keys(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    for ids in (range(0, 100), range(100, 200), range(200, 300)):  # a file per key range
        load(lake, rows(ids, "free"), T0, hard_deletes="ignore")
    table = tmp_path / "raw" / "t"
    before = files(lake)
    assert len(before) == 3
    # the files of ids 0-99 and 200-299 are moved away: a load of keys 150-160 must not open them
    outside = [f for f in files(lake) if _ids(table / f) != (100, 199)]
    for f in outside:
        shutil.move(table / f, tmp_path / f)
    commit, _ = load(lake, rows(range(150, 161), "pro", T0 + DAY), T0 + DAY, {"cursor": 1}, hard_deletes="ignore")
    for f in outside:
        shutil.move(tmp_path / f, table / f)
    assert (commit.rows, commit.inserted, commit.updated) == (11, 0, 11)
    assert len(files(lake) - before) == 2 and len(before - files(lake)) == 1  # ids 100-199 rewritten; new versions
    assert set(outside) <= files(lake)
    assert current(lake) == {i: "pro" if 150 <= i <= 160 else "free" for i in range(300)}
    assert lake.history("raw.t", 1)[0]["rows_added"] == "11 versions (0 new, 11 changed), 11 closed"
    assert lake.state("raw.t") == {"cursor": 1}


def _ids(path: Path) -> tuple[int, int]:
    import pyarrow.parquet as pq

    ids = pq.read_table(path, columns=["id"]).column("id")
    return pc.min(ids).as_py(), pc.max(ids).as_py()


def test_invalidate_skips_files_whose_versions_are_all_closed(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    load(lake, rows(range(0, 10), "free"), T0)
    load(lake, rows(range(10, 20), "free"), T0 + DAY)  # closes 0-9: their file now holds only closed versions
    table = tmp_path / "raw" / "t"
    closed = [f for f in files(lake) if _ids(table / f) == (0, 9)]
    assert len(closed) == 1
    shutil.move(table / closed[0], tmp_path / closed[0])  # the next load must not need it
    commit, _ = load(lake, rows(range(15, 25), "free"), T0 + 2 * DAY)
    shutil.move(tmp_path / closed[0], table / closed[0])
    assert (commit.inserted, commit.updated) == (5, 0) and "5 closed" in commit.detail
    ended = {r["id"]: r["_hw_valid_to"] for r in lake.read("raw.t").to_pylist()}
    assert ended == {**{i: T0 + DAY for i in range(10)}, **{i: T0 + 2 * DAY for i in range(10, 15)},
                     **{i: None for i in range(15, 25)}}


def test_repeated_keys_keep_the_last_by_cursor_then_the_last_read(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    read_order = [("a", T0 + DAY), ("b", T0), ("c", T0 + DAY), ("d", T0 - DAY)]  # c: last of the latest
    batches = pa.Table.from_pylist([{"id": 1, "plan": p, "at": at} for p, at in read_order], schema=SCHEMA)
    commit, left_out = load(lake, batches.to_batches(max_chunksize=1), T0 + 3 * DAY, cursor="at",
                            hard_deletes="ignore")
    assert commit.rows == 1 and len(left_out) == 3
    assert [(r["plan"], r["_hw_valid_from"]) for r in lake.read("raw.t").to_pylist()] == [("c", T0 + DAY)]
    commit, left_out = load(lake, batches.to_batches(max_chunksize=1), T0 + 3 * DAY)  # no cursor: the last read
    assert current(lake) == {1: "d"} and len(left_out) == 3


def test_a_load_raced_by_another_run_commits_nothing(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    load(lake, rows(range(5), "free"), T0)
    read_at = lake.based("raw.t")
    load(lake, rows(range(5), "pro"), T0 + DAY)  # another run, after this one read the table
    with pytest.raises(ConcurrentRunError, match="another run committed to it"):
        lake.land("raw.t", rows(range(5), "team"), run_id="late", state={}, mode="scd2", schema=SCHEMA,
                  history=history(T0 + 2 * DAY), settle=lambda table, reasons: 0, based_on=read_at)
    assert lake.version("raw.t") == 1 and current(lake) == dict.fromkeys(range(5), "pro")
    assert [c["operation"] for c in lake.history("raw.t")] == ["WRITE", "CREATE TABLE"]  # one commit a load
    assert isinstance(read_at, Based)


def test_history_files_hold_key_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scd2, "FILE_ROWS", 100)
    lake = Lake(str(tmp_path))
    shuffled = [(i * 37) % 500 for i in range(500)]
    load(lake, rows(shuffled, "free"), T0)
    bounds = sorted(_ids(tmp_path / "raw" / "t" / f) for f in files(lake))
    assert bounds == [(0, 99), (100, 199), (200, 299), (300, 399), (400, 499)]  # sorted chunks of 100 rows


def test_valid_at_filters_the_versions_valid_at_a_time(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    load(lake, rows(range(3), "free"), T0)
    load(lake, rows(range(1, 3), "pro"), T0 + DAY)  # 0 vanishes, 1 and 2 change
    load(lake, rows(range(0, 2), "team"), T0 + 2 * DAY)  # 0 back, 1 changes, 2 vanishes

    def at(when: datetime) -> dict[int, str]:
        return {r["id"]: r["plan"] for r in lake.dataset("raw.t").to_table(filter=valid_at(when)).to_pylist()}

    assert at(T0 - DAY) == {}
    assert at(T0) == at(T0 + DAY / 2) == {0: "free", 1: "free", 2: "free"}
    assert at(T0 + DAY) == {1: "pro", 2: "pro"}  # valid from its start, not at its end
    assert at(T0 + 5 * DAY) == {0: "team", 1: "team"}


def test_a_history_on_s3_equals_an_independent_computation(s3_server: S3Server, s3_bucket: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    lake = Lake(f"s3://{s3_bucket}/lake")
    land_snapshots(lake)  # created, then versions closed by rewriting files on S3
    assert history_rows(lake, "raw.customers", "id", COLUMNS) == expected_history(LOADED, columns=COLUMNS)
    stale = lake.based("raw.customers")
    land_snapshots(lake)  # the same snapshots again: the last one changes nothing, the others do
    with pytest.raises(ConcurrentRunError):
        lake.land("raw.customers", [], run_id="late", state={"moved": True}, mode="scd2",
                  schema=pa.schema([("id", pa.int64())]), history=history(T0), based_on=stale)
