"""Write dispositions: append, replace and merge (upsert on a primary key, last row per key wins)."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.lake.merge import last_per_key
from engine.sources import files, sql
from tests.support.landing import land

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)



def table(lake: Lake, name: str, *columns: str) -> list[tuple]:
    return sorted(tuple(r[c] for c in columns) for r in lake.read(name).to_pylist())


def write_parquet(path: Path, **columns: list) -> None:
    pq.write_table(pa.table(columns), path)


def test_last_per_key_keeps_the_last_row_of_each_key() -> None:
    keys = pa.table({"a": [1, 2, 1, 3, 2, 1], "b": ["x", "x", "y", "x", "x", "x"]})
    assert last_per_key(keys.select(["a"]), ["a"]).tolist() == [False, False, False, True, True, True]
    assert last_per_key(keys, ["a", "b"]).tolist() == [False, False, True, True, True, True]


def test_files_merge_dedupes_in_a_load_and_updates_across_loads(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "1.parquet", id=[1, 2, 1, 3], v=["a", "b", "a2", "c"])
    write_parquet(tmp_path / "in" / "2.parquet", id=[3, 4], v=["c2", "d"])
    lake = Lake(str(tmp_path / "lake"))
    source = files("items", f"{tmp_path}/in/*.parquet", write="merge", primary_key="id")
    first = land(lake, source, "r1")
    assert (first.version, first.rows, first.inserted, first.updated) == (0, 4, 4, 0)
    assert table(lake, "raw.items", "id", "v") == [(1, "a2"), (2, "b"), (3, "c2"), (4, "d")]

    write_parquet(tmp_path / "in" / "3.parquet", id=[2, 5, 2], v=["b2", "e", "b3"])
    second = land(lake, source, "r2")
    assert (second.version, second.rows, second.inserted, second.updated) == (1, 2, 1, 1)
    assert table(lake, "raw.items", "id", "v", "_hw_run_id") == [
        (1, "a2", "r1"), (2, "b3", "r2"), (3, "c2", "r1"), (4, "d", "r1"), (5, "e", "r2")]
    history = lake.history("raw.items", 1)[0]
    # one WRITE commit that removes the rewritten files (engine/lake/merge.py)
    assert history["operation"] == "WRITE" and history["run_id"] == "r2"
    assert lake.state("raw.items") == {"files": [str(tmp_path / "in" / f"{i}.parquet") for i in (1, 2, 3)]}
    assert land(lake, source, "r3").version is None  # nothing new: no commit
    assert lake.version("raw.items") == 1


def test_merge_on_a_composite_key_and_a_new_column(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "1.parquet", day=[1, 1, 2], shop=["a", "b", "a"], n=[1, 2, 3])
    lake = Lake(str(tmp_path / "lake"))
    source = files("sales", f"{tmp_path}/in/*.parquet", write="merge", primary_key=["day", "shop"])
    land(lake, source)
    write_parquet(tmp_path / "in" / "2.parquet", day=[1, 3], shop=["b", "a"], n=[20, 4], note=["fix", None])
    commit = land(lake, source)
    assert (commit.inserted, commit.updated) == (1, 1)
    assert table(lake, "raw.sales", "day", "shop", "n", "note") == [
        (1, "a", 1, None), (1, "b", 20, "fix"), (2, "a", 3, None), (3, "a", 4, None)]


def make_db(path: Path, rows: list[tuple]) -> str:
    with closing(sqlite3.connect(path)) as con:
        con.execute("create table photos (photo_id integer primary key, title text, updated_at timestamp)")
        con.executemany("insert into photos values (?, ?, ?)", rows)
        con.commit()
    return f"sqlite:///{path}"


def test_sql_merge_by_cursor_lands_edits_as_updates(tmp_path: Path) -> None:
    url = make_db(tmp_path / "app.sqlite", [(1, "one", "2026-03-01 10:00:00.000000"),
                                            (2, "two", "2026-03-01 11:00:00.000000")])
    lake = Lake(str(tmp_path / "lake"))
    source = sql("photos", url, "photos", cursor="updated_at", primary_key="photo_id", write="merge")
    assert land(lake, source).rows == 2
    with closing(sqlite3.connect(tmp_path / "app.sqlite")) as con:
        con.execute("update photos set title = 'TWO', updated_at = '2026-03-02 09:00:00.000000' where photo_id = 2")
        con.execute("insert into photos values (3, 'three', '2026-03-02 10:00:00.000000')")
        con.commit()
    commit = land(lake, source)
    assert (commit.rows, commit.inserted, commit.updated) == (2, 1, 1)
    assert table(lake, "raw.photos", "photo_id", "title") == [(1, "one"), (2, "TWO"), (3, "three")]
    assert lake.state("raw.photos")["cursor"] == {"type": "datetime", "value": "2026-03-02T10:00:00"}


def test_sql_merge_without_cursor_upserts_the_whole_table(tmp_path: Path) -> None:
    url = make_db(tmp_path / "app.sqlite", [(1, "one", None), (2, "two", None)])
    lake = Lake(str(tmp_path / "lake"))
    source = sql("photos", url, "photos", primary_key="photo_id", write="merge")
    land(lake, source)
    with closing(sqlite3.connect(tmp_path / "app.sqlite")) as con:
        con.execute("delete from photos where photo_id = 1")
        con.execute("update photos set title = 'TWO' where photo_id = 2")
        con.commit()
    commit = land(lake, source)
    assert (commit.inserted, commit.updated) == (0, 1)
    assert table(lake, "raw.photos", "photo_id", "title") == [(1, "one"), (2, "TWO")]  # merge never deletes


def test_files_replace_rereads_every_file_when_the_set_changes(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("n\n1\n2\n")
    lake = Lake(str(tmp_path / "lake"))
    source = files("nums", str(folder), format="csv", write="replace")
    assert land(lake, source).rows == 2
    assert land(lake, source).version is None  # same files: nothing to do
    (folder / "b.csv").write_text("n\n3\n")
    assert land(lake, source).rows == 3
    (folder / "a.csv").unlink()
    assert land(lake, source).rows == 1
    assert table(lake, "raw.nums", "n") == [(3,)]
    assert lake.state("raw.nums") == {"files": [str(folder / "b.csv")]}


def test_sql_defaults_stay_append_with_cursor_and_replace_without(tmp_path: Path) -> None:
    url = make_db(tmp_path / "app.sqlite", [(1, "one", "2026-03-01 10:00:00.000000")])
    assert sql("a", url, "photos", cursor="updated_at").write == "append"
    assert sql("b", url, "photos").write == "replace"
    lake = Lake(str(tmp_path / "lake"))
    land(lake, sql("b", url, "photos"))
    land(lake, sql("b", url, "photos"))
    assert table(lake, "raw.b", "photo_id") == [(1,)]


@pytest.mark.parametrize("make, message", [
    (lambda: files("f", "x/*.csv", write="merge"), "write='merge' needs primary_key="),
    (lambda: files("f", "x/*.csv", write="upsert"), "unknown write='upsert'"),
    (lambda: sql("s", "sqlite://", "t", cursor="c", write="replace"), "takes no cursor"),
    (lambda: sql("s", "sqlite://", "t", write="append"), "without a cursor"),
])
def test_bad_dispositions_are_refused_when_declared(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HeadwaterError, match=message):
        make()


def test_merge_refuses_a_missing_or_null_key_and_commits_nothing(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "1.parquet", id=[1, None], v=["a", "b"])
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(HeadwaterError, match=r"null primary key values \{'id': 1\}"):
        land(lake, files("n", f"{tmp_path}/in/*.parquet", write="merge", primary_key="id"))
    with pytest.raises(HeadwaterError, match=r"primary key column\(s\) \['nope'\] are not in the data"):
        land(lake, files("n", f"{tmp_path}/in/*.parquet", write="merge", primary_key="nope"))
    assert not lake.exists("raw.n")


def test_history_shows_what_a_merge_did(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "1.parquet", id=[1, 2], v=["a", "b"])
    lake = Lake(str(tmp_path / "lake"))
    source = files("items", f"{tmp_path}/in/*.parquet", write="merge", primary_key="id")
    land(lake, source)
    write_parquet(tmp_path / "in" / "2.parquet", id=[2, 3, 4], v=["b2", "c", "d"])
    land(lake, source)
    result = CliRunner().invoke(app, ["history", "raw.items", "--lake", str(tmp_path / "lake")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2 new, 1 updated" in result.output
