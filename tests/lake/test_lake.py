from pathlib import Path

import pyarrow as pa
import pytest

from engine.errors import HeadwaterError
from engine.lake import Lake, conform


def batches(*chunks: dict) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pydict(c) for c in chunks]


def test_land_is_one_commit_with_run_id_and_state(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    commit = lake.land("raw.s", batches({"a": [1, 2]}, {"a": [3]}), run_id="r1", state={"files": ["x"]})
    assert (commit.table, commit.version, commit.rows) == ("raw.s", 0, 3)
    assert sorted(lake.read("raw.s").column("a").to_pylist()) == [1, 2, 3]
    assert lake.state("raw.s") == {"files": ["x"]}
    assert lake.metadata("raw.s")["run_id"] == "r1"
    second = lake.land("raw.s", batches({"a": [4]}), run_id="r2", state={"files": ["x", "y"]})
    assert second.version == 1
    assert lake.state("raw.s") == {"files": ["x", "y"]}
    assert [h["version"] for h in lake.history("raw.s")] == [1, 0]
    assert sorted(lake.read("raw.s", version=0).column("a").to_pylist()) == [1, 2, 3]


def test_nothing_to_land_commits_nothing(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    assert lake.land("raw.s", [], run_id="r", state={"k": 1}).version is None
    assert not lake.exists("raw.s")
    lake.land("raw.s", batches({"a": [1]}), run_id="r1", state={"k": 1})
    empty = pa.RecordBatch.from_pydict({"a": pa.array([], pa.int64())})
    assert lake.land("raw.s", [empty], run_id="r2", state={"k": 2}).version is None
    assert lake.version("raw.s") == 0 and lake.state("raw.s") == {"k": 1}


def test_timestamps_are_stored_as_microseconds_and_tz_is_kept(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    ns = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns"))
    utc = pa.array([1_700_000_000_000_000_000], pa.timestamp("ns", tz="UTC"))
    lake.land("raw.t", [pa.RecordBatch.from_arrays([ns, utc], names=["naive", "aware"])],
              run_id="r", state={})
    schema = lake.read("raw.t").schema
    assert schema.field("naive").type == pa.timestamp("us")
    assert schema.field("aware").type == pa.timestamp("us", tz="UTC")
    assert lake.read("raw.t").column("naive")[0].value == 1_700_000_000_123_456


def test_types_delta_lacks_are_stored_in_a_wider_one(tmp_path: Path) -> None:
    """Delta has no unsigned integers, half floats or time zones other than UTC: values land
    unchanged in the nearest type it has, on the first load and on appends."""
    import datetime as dt

    import numpy as np

    lake = Lake(str(tmp_path))
    paris = pa.array([dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone.utc)], pa.timestamp("ms", tz="Europe/Paris"))
    batch = pa.RecordBatch.from_arrays(
        [pa.array([200], pa.uint8()), pa.array([3_000_000_000], pa.uint32()),
         pa.array(np.array([1.5], np.float16())), paris], names=["u8", "u32", "f16", "ts"])
    for run in ("r1", "r2"):
        lake.land("raw.t", [batch], run_id=run, state={})
    table = lake.read("raw.t")
    assert [table.schema.field(n).type for n in ("u8", "u32", "f16", "ts")] == [
        pa.int16(), pa.int64(), pa.float32(), pa.timestamp("us", tz="UTC")]
    assert table.column("u8").to_pylist() == [200, 200] and table.column("u32").to_pylist() == [3_000_000_000] * 2
    assert table.column("f16").to_pylist() == [1.5, 1.5]
    assert table.column("ts").cast(pa.int64()).to_pylist() == [paris.cast(pa.int64())[0].as_py() * 1000] * 2
    too_big = pa.RecordBatch.from_arrays([pa.array([2**63 + 5], pa.uint64())], names=["u64"])
    with pytest.raises(HeadwaterError, match="u64"):
        lake.land("raw.u", [too_big], run_id="r", state={})
    assert not lake.exists("raw.u")  # nothing committed


def test_later_batches_are_conformed_to_the_first(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.c", batches({"a": [1], "b": ["x"]}, {"a": [2]}), run_id="r", state={})
    assert sorted(lake.read("raw.c").to_pylist(), key=lambda r: r["a"]) == [
        {"a": 1, "b": "x"}, {"a": 2, "b": None}]
    with pytest.raises(HeadwaterError, match=r"column\(s\) \['zzz'\]"):
        lake.land("raw.c", batches({"a": [1]}, {"a": [2], "zzz": [1]}), run_id="r2", state={})
    assert lake.version("raw.c") == 0  # the failed land committed nothing


def test_conform_names_column_and_both_types() -> None:
    schema = pa.schema([("n", pa.int64())])
    with pytest.raises(HeadwaterError, match=r"column 'n' is string, the table has int64"):
        conform(pa.RecordBatch.from_pydict({"n": ["not a number"]}), schema, "file f.csv")


def test_names_versions_and_listing(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.photos", batches({"a": [1]}), run_id="r", state={})
    lake.write("models.features", pa.table({"f": [1.5]}), run_id="r", meta={"rows": 1})
    assert lake.qualify("photos") == "raw.photos"
    assert lake.qualify("features") == "models.features"
    assert lake.tables() == ["raw.photos", "models.features"]
    lake.write("models.features", pa.table({"g": ["replaced"]}), run_id="r2", meta={})
    assert lake.read("features").to_pylist() == [{"g": "replaced"}]
    assert lake.read("features", version=0).to_pylist() == [{"f": 1.5}]
    with pytest.raises(HeadwaterError, match="no lake table 'models.nope'"):
        lake.read("nope")
    with pytest.raises(HeadwaterError, match="has no version 7"):
        lake.read("features", version=7)
