import gzip
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.load import quarantine
from engine.sources import files, sql
from engine.sources.base import with_load_columns
from engine.sources.files import infer_format
from engine.sources.sql import decode_cursor, encode_cursor
from tests.support.landing import land

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)



def rows(lake: Lake, name: str, key: str) -> list[dict]:
    return sorted(lake.read(name).to_pylist(), key=lambda r: r[key])


def test_csv_jsonl_parquet_land_with_load_columns(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id,name\n1,ann\n2,bob\n")
    with gzip.open(tmp_path / "in" / "b.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"id": 3, "name": "cy", "device": {"os": "ios", "v": {"major": 2}},
                             "tags": ["a", "b"]}) + "\n")
    pq.write_table(pa.table({"id": [4, 5], "name": ["di", "ed"]}), tmp_path / "in" / "c.parquet")
    lake = Lake(str(tmp_path / "lake"))
    assert land(lake, files("csv", f"{tmp_path}/in/*.csv")).rows == 2
    assert land(lake, files("logs", f"{tmp_path}/in/*.jsonl.gz")).rows == 1
    assert land(lake, files("pq", f"{tmp_path}/in/c.parquet")).rows == 2
    csv = rows(lake, "raw.csv", "id")
    assert [(r["id"], r["name"]) for r in csv] == [(1, "ann"), (2, "bob")]
    assert csv[0]["_hw_source_file"] == str(tmp_path / "in" / "a.csv")
    assert csv[0]["_hw_run_id"] == "r" and csv[0]["_hw_loaded_at"] == NOW
    log = rows(lake, "raw.logs", "id")[0]
    assert (log["device__os"], log["device__v__major"], log["tags"]) == ("ios", 2, ["a", "b"])
    assert [r["name"] for r in rows(lake, "raw.pq", "id")] == ["di", "ed"]


def test_files_landed_before_are_skipped_and_new_ones_land(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "day1.csv").write_text("n\n1\n2\n")
    lake, source = Lake(str(tmp_path / "lake")), files("days", str(folder), format="csv")
    assert land(lake, source, "r1").rows == 2
    assert land(lake, source, "r2").version is None  # nothing new: no commit
    (folder / "day2.csv").write_text("n\n3\n")
    assert land(lake, source, "r3").rows == 1
    assert sorted(r["n"] for r in lake.read("raw.days").to_pylist()) == [1, 2, 3]
    assert lake.state("raw.days")["files"] == [str(folder / "day1.csv"), str(folder / "day2.csv")]


def test_batches_are_bounded(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": list(range(1000))}), tmp_path / "big.parquet", row_group_size=1000)
    (tmp_path / "big.csv").write_text("x\n" + "\n".join(map(str, range(1000))) + "\n")
    for path in ("big.parquet", "big.csv"):
        sizes = [b.num_rows for b in files("s", str(tmp_path / path), batch_rows=64).read_file(
            str(tmp_path / path))]
        assert max(sizes) <= 64 and sum(sizes) == 1000


def test_fsspec_urls_work_like_local_paths(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/events/e1.jsonl", b'{"k": 1}\n{"k": 2}\n')
    lake = Lake(str(tmp_path / "lake"))
    assert land(lake, files("mem", "memory://bucket/events/*.jsonl")).rows == 2
    assert lake.state("raw.mem")["files"] == [fs.unstrip_protocol("/bucket/events/e1.jsonl")]
    fs.rm("/bucket", recursive=True)


def test_file_errors_name_the_file_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HeadwaterError, match="pass format="):
        infer_format("data.bin")
    assert infer_format("logs/x.jsonl.gz") == "jsonl"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    sink = quarantine.Quarantine("s", "r", NOW)  # an unreadable file is quarantined, not raised
    assert list(files("s", str(tmp_path / "bad.parquet")).read_file(str(tmp_path / "bad.parquet"), sink)) == []
    assert [(e["kind"], e["file"]) for e in sink.entries] == [("file", str(tmp_path / "bad.parquet"))]
    assert "as parquet" in sink.entries[0]["reason"] and "magic" in sink.entries[0]["reason"].lower()
    with pytest.raises(HeadwaterError, match="unknown format"):
        files("s", "x", format="xml")
    (tmp_path / "empty.csv").write_text("")
    assert list(files("s", str(tmp_path / "empty.csv")).read_file(str(tmp_path / "empty.csv"))) == []


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table photos (id integer primary key, title text, score real, "
                "updated_at TIMESTAMP)")
    con.executemany("insert into photos values (?, ?, ?, ?)",
                    [(i, f"p{i}", i / 2, f"2026-03-0{i} 10:00:00.000000") for i in range(1, 6)])
    con.commit()
    con.close()
    return path


def test_sql_cursor_takes_only_new_rows(tmp_path: Path, db: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = sql("photos", f"sqlite:///{db}", "photos", cursor="updated_at", batch_rows=2)
    assert land(lake, source, "r1").rows == 5
    assert land(lake, source, "r2").version is None
    con = sqlite3.connect(db)
    con.execute("insert into photos values (6, 'p6', 3.0, '2026-03-07 09:00:00.000000')")
    con.execute("update photos set title = 'edited', updated_at = '2026-03-08 00:00:00.000000' where id = 2")
    con.commit()
    con.close()
    assert land(lake, source, "r3").rows == 2
    landed = lake.read("raw.photos")
    assert landed.schema.field("updated_at").type == pa.timestamp("us")
    assert landed.schema.field("score").type == pa.float64()
    latest = {r["id"]: r["title"] for r in sorted(landed.to_pylist(), key=lambda r: r["updated_at"])}
    assert latest == {1: "p1", 2: "edited", 3: "p3", 4: "p4", 5: "p5", 6: "p6"}
    assert decode_cursor(lake.state("raw.photos")["cursor"]) == datetime(2026, 3, 8)


def test_sql_query_source_and_errors(tmp_path: Path, db: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = sql("top", f"sqlite:///{db}", query="select id, title from photos where score >= 1")
    assert land(lake, source).rows == 4
    assert sorted(r["id"] for r in lake.read("raw.top").to_pylist()) == [2, 3, 4, 5]
    con = sqlite3.connect(db)  # without a cursor, each run replaces the raw table with the query
    con.execute("delete from photos where id = 5")
    con.commit()
    con.close()
    assert land(lake, source, "r2").rows == 3
    assert sorted(r["id"] for r in lake.read("raw.top").to_pylist()) == [2, 3, 4]
    con = sqlite3.connect(db)
    con.execute("delete from photos")
    con.commit()
    con.close()
    assert land(lake, source, "r3").version == 2 and lake.read("raw.top").num_rows == 0
    assert land(lake, source, "r4").version is None  # still empty: nothing to commit
    with pytest.raises(HeadwaterError, match="no table 'nope'"):
        sql("x", f"sqlite:///{db}", "nope").extract({}, run_id="r", loaded_at=NOW)
    with pytest.raises(HeadwaterError, match="cursor column 'when' not found"):
        sql("x", f"sqlite:///{db}", "photos", cursor="when").extract({}, run_id="r", loaded_at=NOW)
    with pytest.raises(HeadwaterError, match="exactly one of table= or query="):
        sql("x", f"sqlite:///{db}")


@pytest.mark.parametrize("value", [datetime(2026, 1, 2, 3, 4, 5, 6), datetime(2026, 1, 2, tzinfo=timezone.utc),
                                   7, 2.5, "abc"])
def test_cursor_values_round_trip_through_json(value: object) -> None:
    assert decode_cursor(json.loads(json.dumps(encode_cursor(value)))) == value


@pytest.mark.parametrize("loaded_at", [NOW, datetime(2026, 3, 1, 12, 30, 15, 123456)])
@pytest.mark.parametrize("rows_in", [0, 1, 70_000])
def test_load_columns_repeat_the_run_values_on_every_row(loaded_at: datetime, rows_in: int) -> None:
    batch = pa.record_batch({"id": pa.array(range(rows_in), pa.int64())})
    out = with_load_columns(batch, run_id="run-7", loaded_at=loaded_at, source_file="/data/a.csv")
    assert out.schema.names == ["id", "_hw_source_file", "_hw_loaded_at", "_hw_run_id"]
    assert out.column("id").equals(batch.column("id"))
    expected_ts = pa.array([loaded_at], pa.timestamp("us", tz="UTC"))[0].as_py()  # naive means UTC
    assert out.schema.field("_hw_loaded_at").type == pa.timestamp("us", tz="UTC")
    for name, value in (("_hw_source_file", "/data/a.csv"), ("_hw_loaded_at", expected_ts), ("_hw_run_id", "run-7")):
        col = out.column(name)
        assert col.null_count == 0 and len(col) == rows_in
        assert set(col.to_pylist()) == ({value} if rows_in else set())
    sql_like = with_load_columns(batch, run_id="r", loaded_at=loaded_at)  # SQL sources: no file column
    assert sql_like.schema.names == ["id", "_hw_loaded_at", "_hw_run_id"]
