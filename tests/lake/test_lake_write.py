"""The lake's parallel writer (engine/lake/write.py): pyarrow writes the data files in threads,
delta-rs commits them. These tests read what it wrote back through Delta and through the
Parquet footers, and compare its statistics with the ones delta-rs writes for the same rows."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.lake import Lake
from engine.lake import write as lake_write

US = dt.timedelta(microseconds=1)


def mixed(n: int, offset: int = 0, nan: bool = True) -> pa.Table:
    """`n` rows of every kind of column the lake stores, with nulls, NaN (else nulls in its place),
    long strings and sub-millisecond times."""
    i = np.arange(offset, offset + n)
    base = dt.datetime(2024, 3, 1, 12, 0, 0, 123_456)
    return pa.table({
        "id": pa.array(i, pa.int64()),
        "small": pa.array([None if k % 7 == 0 else k % 100 for k in i.tolist()], pa.int32()),
        "x": pa.array(np.where(i % 11 == 0, np.nan, i * 0.5), mask=None if nan else i % 11 == 0),
        "s": pa.array([None if k % 5 == 0 else f"v{k:06d}" for k in i.tolist()]),
        "long": pa.array(["z" * 40 + str(k) for k in i.tolist()]),
        "d": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=int(k % 400)) for k in i.tolist()]),
        "naive": pa.array([base + k * US * 1001 for k in i.tolist()], pa.timestamp("us")),
        "aware": pa.array([base + k * US * 999 for k in i.tolist()], pa.timestamp("us", tz="UTC")),
        "flag": pa.array(i % 3 == 0),
        "price": pa.array([None if k % 4 == 0 else k for k in i.tolist()], pa.int64()).cast(pa.decimal128(22, 2)),
        "tags": pa.array([[int(k)] for k in i.tolist()]),
        "empty": pa.nulls(n, pa.string()),
    })


def stats(table_dir: Path) -> list[dict]:
    """The parsed `stats` of every add action in the table's log."""
    out = []
    for log in sorted((table_dir / "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                out.append(json.loads(action["add"]["stats"]))
    return out


def writers(table_dir: Path) -> set[str]:
    """Which library wrote the table's data files (from their footers)."""
    return {pq.read_metadata(p).created_by.split(" version")[0] for p in table_dir.glob("*.parquet")}


def test_stats_agree_with_delta_rs_and_bound_every_value(tmp_path: Path) -> None:
    data = mixed(5_000)
    lake = Lake(str(tmp_path / "lake"))
    lake.land("raw.m", data.to_batches(max_chunksize=1_000), run_id="r", state={})
    write_deltalake(str(tmp_path / "ref"), data)  # delta-rs' own writer, same rows
    ours, theirs = stats(tmp_path / "lake" / "raw" / "m"), stats(tmp_path / "ref")
    assert writers(tmp_path / "lake" / "raw" / "m") == {"parquet-cpp-arrow"}  # the parallel path ran
    assert len(ours) == len(theirs) == 1
    ours, theirs = ours[0], theirs[0]
    assert ours["numRecords"] == theirs["numRecords"] == data.num_rows
    for col in ("id", "small", "x", "s", "long", "d", "naive", "aware", "flag", "price", "empty"):
        assert ours["nullCount"][col] == theirs["nullCount"][col], col
    for col in ("id", "small", "x", "s", "d", "flag"):  # exact bounds: the same as delta-rs'
        assert (ours["minValues"][col], ours["maxValues"][col]) == \
               (theirs["minValues"][col], theirs["maxValues"][col]), col
    assert ours["minValues"]["naive"] == theirs["minValues"]["naive"]  # both floor to the millisecond
    # the max of a column with sub-millisecond digits is rounded up, so it bounds the true max
    # (delta-rs truncates it, and its reader adds the millisecond back)
    true_max = pc.max(data["naive"]).as_py()
    assert dt.datetime.fromisoformat(ours["maxValues"]["naive"]) >= true_max
    assert dt.datetime.fromisoformat(ours["maxValues"]["naive"]) - true_max < dt.timedelta(milliseconds=1)
    assert dt.datetime.fromisoformat(ours["maxValues"]["aware"]) >= pc.max(data["aware"]).as_py()
    assert ours["minValues"]["aware"].endswith("Z")
    # long strings are cut to 32 characters: the min to a prefix, the max to a prefix raised by one
    low, high = pc.min_max(data["long"]).values()
    assert len(ours["minValues"]["long"]) == len(ours["maxValues"]["long"]) == 32
    assert ours["minValues"]["long"] <= low.as_py() and ours["maxValues"]["long"] > high.as_py()
    low, high = pc.min_max(data["price"]).values()
    assert ours["minValues"]["price"] <= low.as_py() and ours["maxValues"]["price"] >= high.as_py()
    for col in ("tags", "empty"):  # nested: no bounds; all null: only the null count
        assert col not in ours["minValues"] and col not in ours["maxValues"]
        assert col not in theirs["minValues"] and col not in theirs["maxValues"]


@pytest.mark.parametrize("column", ["id", "small", "x", "s", "long", "d", "naive", "aware", "flag", "price"])
def test_filtered_reads_return_exactly_the_matching_rows(tmp_path: Path, column: str) -> None:
    """Delta readers skip files by these stats: a bound that is wrong, or missing, loses rows.
    (NaN is left out: Parquet's float bounds ignore it, so delta-rs' reader keeps NaN rows of a
    file inside `x >= cut`, whichever writer wrote the file.)"""
    lake = Lake(str(tmp_path))
    loads = [mixed(3_000, offset, nan=False) for offset in (0, 3_000, 6_000)]
    for i, load in enumerate(loads):
        lake.land("raw.m", load.to_batches(max_chunksize=700), run_id=f"r{i}", state={})
    everything = pa.concat_tables(loads)
    # a cut at the maximum of the middle load: rows equal to it must not be skipped
    cut = pc.max(pc.drop_null(loads[1][column])).as_py()
    for expr in (ds.field(column) >= cut, ds.field(column) <= cut, ds.field(column) == cut):
        got = lake.dataset("raw.m").to_table(filter=expr, columns=["id"]).column("id").to_pylist()
        want = everything.filter(expr).column("id").to_pylist()
        assert sorted(got) == sorted(want) and want, (column, str(expr))


def test_a_big_load_is_written_by_several_writers_each_row_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lake_write, "CHUNK_BYTES", 64 << 10)  # many chunks from a small load
    monkeypatch.setattr(lake_write, "writer_count", lambda: 3)
    lake = Lake(str(tmp_path))
    data = mixed(40_000)
    lake.land("raw.m", data.to_batches(max_chunksize=2_000), run_id="r", state={})
    DeltaTable(lake.uri("raw.m")).alter.set_table_properties({"delta.targetFileSize": str(200 << 10)})
    lake.land("raw.m", mixed(40_000, 40_000).to_batches(max_chunksize=2_000), run_id="r2", state={})
    table_dir = tmp_path / "raw" / "m"
    files = list(table_dir.glob("*.parquet"))
    first_load = {Path(u).name for u in DeltaTable(str(table_dir), version=0).file_uris()}
    assert {p.name.split("-")[1] for p in files if p.name in first_load} == {"00000", "00001", "00002"}
    second = [p for p in files if p.name not in first_load]
    assert len(second) > 3  # rolled at the small target size
    assert all(p.stat().st_size < (200 << 10) + (400 << 10) for p in second)  # target + at most a chunk
    ids = Counter(lake.read("raw.m", columns=["id"]).column("id").to_pylist())
    assert set(ids) == set(range(80_000)) and set(ids.values()) == {1}
    assert writers(table_dir) == {"parquet-cpp-arrow"}
    assert sum(s["numRecords"] for s in stats(table_dir)) == 80_000


def test_a_failing_source_leaves_no_commit_and_no_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lake_write, "CHUNK_BYTES", 16 << 10)
    lake = Lake(str(tmp_path))
    lake.land("raw.m", mixed(100).to_batches(), run_id="r", state={"n": 1})
    before = {p.name for p in (tmp_path / "raw" / "m").glob("*.parquet")}

    def broken():
        yield from mixed(20_000, 100).to_batches(max_chunksize=1_000)  # many chunks written first
        raise OSError("the source went away")

    with pytest.raises(OSError, match="the source went away"):
        lake.land("raw.m", broken(), run_id="r2", state={"n": 2})
    assert lake.version("raw.m") == 0 and lake.state("raw.m") == {"n": 1}
    assert {p.name for p in (tmp_path / "raw" / "m").glob("*.parquet")} == before


def test_a_failing_writer_reaches_the_caller_and_leaves_no_files(tmp_path: Path, monkeypatch) -> None:
    # a write that fails in a writer thread (a full disk, a refused upload) is simulated here:
    # this machine cannot be made to fail a write on demand
    monkeypatch.setattr(lake_write, "CHUNK_BYTES", 16 << 10)
    calls = Counter()
    real = pq.ParquetWriter.write_table

    def failing(self, table, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    lake = Lake(str(tmp_path))
    with pytest.raises(OSError, match="No space left"):
        lake.land("raw.m", mixed(20_000).to_batches(max_chunksize=1_000), run_id="r", state={})
    assert not lake.exists("raw.m")
    assert not list((tmp_path / "raw" / "m").glob("*.parquet"))


def test_a_schema_change_or_a_constraint_goes_through_delta_rs(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.c", [pa.record_batch({"a": [1, 2]})], run_id="r", state={})
    lake.land("raw.c", [pa.record_batch({"a": [3], "b": ["new"]})], run_id="r2", state={})
    assert lake.read("raw.c").schema.names == ["a", "b"]  # the table's schema grew
    assert sorted(lake.read("raw.c").to_pylist(), key=lambda r: r["a"])[-1] == {"a": 3, "b": "new"}
    assert writers(tmp_path / "raw" / "c") == {"parquet-cpp-arrow", "delta-rs"}

    DeltaTable(lake.uri("raw.c")).alter.add_constraint({"positive": "a > 0"})
    assert not lake_write.fast_path(lake.uri("raw.c"), lake.table("raw.c"), lake.read("raw.c").schema, "append")
    # a lake on an object store is written by delta-rs (its uploads measured faster there)
    assert not lake_write.fast_path("s3://bucket/lake/raw/c", None, lake.read("raw.c").schema, "append")
    assert lake_write.fast_path(lake.uri("raw.new"), None, lake.read("raw.c").schema, "append")
    with pytest.raises(Exception, match="failed validation check"):
        lake.land("raw.c", [pa.record_batch({"a": [-1], "b": ["bad"]})], run_id="r3", state={})
    assert lake.read("raw.c").num_rows == 3


def test_overwrite_replaces_the_rows_and_keeps_the_versions(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write("models.m", mixed(1_000), run_id="r1", meta={"k": 1})
    lake.write("models.m", mixed(10, 5), run_id="r2", meta={"k": 2})
    assert sorted(lake.read("models.m").column("id").to_pylist()) == list(range(5, 15))
    assert lake.read("models.m", version=0).num_rows == 1_000
    assert lake.metadata("models.m")["k"] == 2
    assert [h["rows_added"] for h in lake.history("models.m")] == [10, 1_000]  # shown by `headwater history`
    assert writers(tmp_path / "models" / "m") == {"parquet-cpp-arrow"}


def _layout(path: str) -> list[tuple]:
    """Every leaf column of a Parquet file as cuDF compares them across files: path, physical
    and converted type, levels, length, precision and scale."""
    schema = pq.ParquetFile(path).schema
    return [(c.path, c.physical_type, c.converted_type, c.max_definition_level,
             c.max_repetition_level, c.length, c.precision, c.scale)
            for c in (schema.column(i) for i in range(len(schema)))]


def test_files_are_laid_out_like_delta_rs_writes_them(tmp_path: Path) -> None:
    """A table holds files of both writers (delta-rs' for merges and schema changes); cuDF reads
    them in one go only where every column is laid out alike (engine/transform/backends/cudf.py)."""
    data = mixed(100).append_column(
        "cents", pa.array([Decimal(k) / 100 for k in range(100)], pa.decimal128(9, 2))).append_column(
        "wide", pa.array([Decimal(-k) / 1000 for k in range(100)], pa.decimal128(18, 3))).append_column(
        "pair", pa.array([{"a": k, "b": str(k)} for k in range(100)]))
    lake = Lake(str(tmp_path / "lake"))
    lake.write("m.t", data, run_id="r", meta={})
    write_deltalake(str(tmp_path / "ref"), data)
    ours, = lake.table("m.t").file_uris()
    theirs, = DeltaTable(str(tmp_path / "ref")).file_uris()
    assert pq.read_metadata(ours).created_by.startswith("parquet-cpp-arrow")  # the parallel path ran
    assert _layout(ours) == _layout(theirs)
    assert lake.read("m.t").select(["cents", "wide", "tags", "pair"]).equals(
        data.select(["cents", "wide", "tags", "pair"]))


def test_file_rows_cuts_files_at_a_row_count_and_at_empty_batches(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64())])

    def batch(ids: list[int]) -> pa.RecordBatch:
        return pa.RecordBatch.from_pydict({"id": ids}, schema=schema)

    stream = [batch([0, 1, 2, 3]), batch([4]), batch([]), batch([5, 6]), batch([7, 8, 9, 10, 11, 12, 13])]
    actions, rows = lake_write.write_files(str(tmp_path / "t"), stream, schema, target=1 << 30, file_rows=3)
    assert rows == 14
    files = sorted(pq.read_table(tmp_path / "t" / a.path).column("id").to_pylist() for a in actions)
    assert files == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9, 10], [11, 12, 13]]  # consecutive rows, 3 at most
