"""Merge landing (engine/lake/merge.py) on real Delta tables: only the files holding a key of the
load are rewritten, the lake keeps plain strings (files an older delta-rs MERGE wrote as
string_view are rewritten plain when a merge touches them), one row per key, and tables the
lake's writer must not write to still merge through delta-rs."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.lake import Lake, merge
from tests.support.s3 import S3Server

SCHEMA = pa.schema([("id", pa.int64()), ("day", pa.date32()), ("title", pa.string())])
DAY = dt.date(2026, 1, 1)


def load(ids: range | list[int], title: str, schema: pa.Schema = SCHEMA) -> list[pa.RecordBatch]:
    rows = [{"id": i, "day": DAY + dt.timedelta(days=i % 3), "title": f"{title}{i}"} for i in ids]
    return pa.Table.from_pylist(rows, schema=schema).to_batches()


def files(lake: Lake, name: str) -> set[str]:
    return {Path(u).name for u in DeltaTable(lake.uri(name)).file_uris()}


def content(lake: Lake, name: str) -> dict[int, str]:
    rows = lake.read(name, columns=["id", "title"]).to_pylist()
    assert len(rows) == len({r["id"] for r in rows}), "one row per key"
    return {r["id"]: r["title"] for r in rows}


def test_only_files_holding_a_key_of_the_load_are_rewritten(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(str(tmp_path))
    for i, ids in enumerate([range(0, 100), range(100, 200), range(200, 300)]):  # one file each
        lake.land("raw.t", load(ids, "v0-"), run_id=f"a{i}", state={}, mode="append")
    before = files(lake, "raw.t")
    read_keys = []  # the files whose key column the merge reads: only those the log's bounds let in
    real = merge._members
    monkeypatch.setattr(merge, "_members", lambda keys, *rest: read_keys.append(keys.num_rows) or real(keys, *rest))
    commit = lake.land("raw.t", load([150, 160, 300, 301], "v1-"), run_id="m", state={"s": 1}, mode="merge",
                       primary_key=["id"])
    assert read_keys == [100, 100]  # ids 100-199 and 200-299: 0-99 is below the load's keys (150-301)
    assert (commit.rows, commit.inserted, commit.updated) == (4, 2, 2)
    after = files(lake, "raw.t")
    assert len(before - after) == 1  # the file of ids 100-199, by its key bounds and key column
    want = {i: f"v0-{i}" for i in range(300)} | {150: "v1-150", 160: "v1-160", 300: "v1-300", 301: "v1-301"}
    assert content(lake, "raw.t") == want
    newest = lake.history("raw.t", 1)[0]
    assert newest["operation"] == "WRITE" and newest["rows_added"] == "2 new, 2 updated"
    assert lake.state("raw.t") == {"s": 1}


def test_a_composite_key_and_a_new_column(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.t", load(range(6), "a"), run_id="r0", state={}, mode="merge", primary_key=["id", "day"])
    wider = pa.schema([*SCHEMA, ("note", pa.string())])
    rows = [{"id": 1, "day": DAY + dt.timedelta(days=1), "title": "b1", "note": "same key"},
            {"id": 1, "day": DAY, "title": "b1x", "note": "other day"}]
    commit = lake.land("raw.t", pa.Table.from_pylist(rows, schema=wider).to_batches(), run_id="r1", state={},
                       mode="merge", primary_key=["id", "day"], schema=wider)
    assert (commit.inserted, commit.updated) == (1, 1)
    got = sorted((r["id"], r["day"], r["title"], r["note"]) for r in lake.read("raw.t").to_pylist())
    assert got == sorted([(i, DAY + dt.timedelta(days=i % 3), f"a{i}", None) for i in range(6) if i != 1]
                         + [(1, DAY + dt.timedelta(days=1), "b1", "same key"), (1, DAY, "b1x", "other day")])


def test_string_view_files_of_an_older_merge_are_rewritten_plain(tmp_path: Path) -> None:
    uri = str(tmp_path / "raw" / "t")
    write_deltalake(uri, pa.Table.from_batches(load(range(10), "a")))
    table = DeltaTable(uri)
    source = pa.Table.from_batches(load([3, 4, 20], "b"))
    (table.merge(source, 't."id" = s."id"', source_alias="s", target_alias="t")  # what Headwater did before
     .when_matched_update_all().when_not_matched_insert_all().execute())
    lake = Lake(str(tmp_path))
    view = [Path(u).name for u in DeltaTable(uri).file_uris()
            if pa.types.is_string_view(pq.read_schema(u).field("title").type)]
    assert view  # delta-rs' MERGE wrote string_view
    with pytest.raises(pa.ArrowNotImplementedError, match="string_view"):
        DeltaTable(uri).to_pyarrow_dataset().to_table(filter=ds.field("title") == "b3")
    lake.land("raw.t", load([3, 20], "c"), run_id="r", state={}, mode="merge", primary_key=["id"])
    assert not any(pa.types.is_string_view(pq.read_schema(u).field("title").type)
                   for u in DeltaTable(uri).file_uris())
    got = DeltaTable(uri).to_pyarrow_dataset().to_table(filter=ds.field("title") >= "b").column("id").to_pylist()
    assert sorted(got) == [3, 4, 20]
    assert content(lake, "raw.t") == {i: f"a{i}" for i in range(10)} | {3: "c3", 4: "b4", 20: "c20"}


def test_rows_sharing_a_key_in_the_table_become_the_load_s_one_row(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.t", load([1, 1, 2], "a"), run_id="r0", state={}, mode="append")  # appended: 1 twice
    commit = lake.land("raw.t", load([1], "b"), run_id="r1", state={}, mode="merge", primary_key=["id"])
    assert (commit.inserted, commit.updated) == (0, 1)
    assert content(lake, "raw.t") == {1: "b1", 2: "a2"}


def test_a_partitioned_table_still_merges_through_delta_rs(tmp_path: Path) -> None:
    uri = str(tmp_path / "raw" / "t")
    write_deltalake(uri, pa.Table.from_batches(load(range(6), "a")), partition_by=["day"])
    lake = Lake(str(tmp_path))
    commit = lake.land("raw.t", load([2, 7], "b"), run_id="r", state={}, mode="merge", primary_key=["id"])
    assert (commit.inserted, commit.updated) == (1, 1)
    assert lake.history("raw.t", 1)[0]["operation"] == "MERGE"
    assert content(lake, "raw.t") == {i: f"a{i}" for i in range(6)} | {2: "b2", 7: "b7"}


def test_merge_on_an_s3_lake(s3_server: S3Server, s3_bucket: str) -> None:
    lake = Lake(f"s3://{s3_bucket}/lake", s3_server.env())
    lake.land("raw.t", load(range(50), "a"), run_id="r0", state={}, mode="merge", primary_key=["id"])
    commit = lake.land("raw.t", load(range(40, 60), "b"), run_id="r1", state={"n": 2}, mode="merge",
                       primary_key=["id"])
    assert (commit.inserted, commit.updated, commit.version) == (10, 10, 1)
    assert content(lake, "raw.t") == {i: f"a{i}" for i in range(40)} | {i: f"b{i}" for i in range(40, 60)}
    filtered = lake.dataset("raw.t").to_table(filter=ds.field("title") >= "b", columns=["id"])
    assert sorted(filtered.column("id").to_pylist()) == list(range(40, 60))


@pytest.mark.parametrize("kind", [pa.int32(), pa.string(), pa.date32(), pa.timestamp("us"),
                                  pa.timestamp("us", "UTC"), pa.decimal128(10, 2), pa.float64(), pa.bool_()])
def test_keys_of_every_type_find_their_rows(tmp_path: Path, kind: pa.DataType) -> None:
    """Files are pruned by their key bounds in the log (ints, strings, dates, times); a key of
    another type is looked for in every file."""
    def key(i: int) -> object:
        if pa.types.is_string(kind):
            return f"k{i:04d}"
        if pa.types.is_date32(kind):
            return DAY + dt.timedelta(days=i)
        if pa.types.is_timestamp(kind):  # sub-millisecond digits: the log's bounds are in milliseconds
            at = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i, microseconds=i)
            return at.replace(tzinfo=dt.timezone.utc) if kind.tz else at
        if pa.types.is_decimal(kind):
            return Decimal(i).scaleb(-2)
        if pa.types.is_floating(kind):
            return i + 0.5
        if pa.types.is_boolean(kind):
            return i % 2 == 0
        return i

    schema = pa.schema([("k", kind), ("v", pa.string())])
    lake = Lake(str(tmp_path))
    ids = range(2) if kind == pa.bool_() else range(30)
    for part in ([i for i in ids if i < len(ids) // 2], [i for i in ids if i >= len(ids) // 2]):  # two files
        rows = pa.Table.from_pylist([{"k": key(i), "v": f"a{i}"} for i in part], schema=schema)
        lake.land("raw.t", rows.to_batches(), run_id="r", state={}, mode="append")
    changed = [ids[-1], 1000] if kind != pa.bool_() else [1]
    rows = pa.Table.from_pylist([{"k": key(i), "v": f"b{i}"} for i in changed], schema=schema)
    before = files(lake, "raw.t")
    commit = lake.land("raw.t", rows.to_batches(), run_id="m", state={}, mode="merge", primary_key=["k"])
    assert (commit.inserted, commit.updated) == (len(changed) - 1, 1)
    assert len(before - files(lake, "raw.t")) == 1  # the file without the key is left as it was
    got = {r["k"]: r["v"] for r in lake.read("raw.t").to_pylist()}
    assert got == {key(i): f"a{i}" for i in ids} | {key(i): f"b{i}" for i in changed}
