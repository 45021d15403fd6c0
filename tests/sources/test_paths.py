"""Where a source's paths point, and what a path that matches nothing does.

Relative paths in a pipeline file (globs, folders, SQLite URLs) start at that file's folder,
whatever the working directory; a SQLite URL to a missing file is an error, not a new empty
database. A glob that matches nothing is an error naming it while the source has landed nothing;
once it has, matching nothing warns and fails unless `allow_empty=True`. Real files, SQLite and
Delta tables throughout."""
from __future__ import annotations

import logging
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import fsspec
import pytest

from engine.config import Config
from engine.errors import SourceError
from engine.lake import Lake
from engine.pipeline import Pipeline, load_pipeline
from engine.runs.runner import Runner
from engine.sources import files, sql
from tests.support.landing import NOW, land

PIPELINE = '''
from engine import Pipeline, model, sources

users = sources.sql("users", url="sqlite:///data/app.sqlite", table="users")
visits = sources.files("visits", "data/visits/*.csv")

@model(inputs={"users": "raw.users", "visits": "raw.visits"})
def visits_per_user(users, visits):
    n = visits.groupby("user_id").size().rename("visits").reset_index()
    return users.merge(n, on="user_id", how="left").fillna({"visits": 0}).astype({"visits": "int64"})

pipeline = Pipeline("paths", sources=[users, visits], models=[visits_per_user])
'''


def make_project(folder: Path, users: int = 4) -> Path:
    """A pipeline file whose sources name relative paths, and the data they name."""
    (folder / "data" / "visits").mkdir(parents=True)
    with closing(sqlite3.connect(folder / "data" / "app.sqlite")) as con:
        con.execute("create table users (user_id integer primary key, name text)")
        con.executemany("insert into users values (?, ?)", [(u, f"u{u}") for u in range(1, users + 1)])
        con.commit()
    write_csv(folder / "data" / "visits" / "day1.csv", [1, 1, 2, 3, 3, 3])
    (folder / "pipeline.py").write_text(PIPELINE)
    return folder / "pipeline.py"


def write_csv(path: Path, user_ids: list[int]) -> None:
    path.write_text("user_id\n" + "".join(f"{u}\n" for u in user_ids))


def settings(root: Path) -> Config:
    return Config(lake=str(root / "lake"), warehouse=f"duckdb:///{root / 'wh.duckdb'}", backend="pandas")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory that is not the pipeline's folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_relative_paths_start_at_the_pipeline_files_folder_not_the_working_directory(
        tmp_path: Path, elsewhere: Path) -> None:
    pipeline = load_pipeline(make_project(tmp_path / "proj"))
    summary = Runner(pipeline, settings(tmp_path)).run()
    assert summary.ok, summary.error
    lake = Lake(str(tmp_path / "lake"))
    assert sorted(lake.read("raw.users").column("user_id").to_pylist()) == [1, 2, 3, 4]
    assert lake.state("raw.visits")["files"] == [str(tmp_path / "proj" / "data" / "visits" / "day1.csv")]
    got = {r["user_id"]: r["visits"] for r in lake.read("models.visits_per_user").to_pylist()}
    assert got == {1: 2, 2: 1, 3: 3, 4: 0}
    assert list(elsewhere.iterdir()) == []  # no empty app.sqlite, nothing at all made here


def test_a_pipeline_made_in_code_takes_base_dir_and_without_one_the_working_directory(
        tmp_path: Path, elsewhere: Path) -> None:
    make_project(tmp_path / "proj")
    visits = files("visits", "data/visits/*.csv")
    Pipeline("p", sources=[visits], base_dir=tmp_path / "proj")
    assert visits.list_files() == [str(tmp_path / "proj" / "data" / "visits" / "day1.csv")]
    loose = files("visits", "data/visits/*.csv")  # in no pipeline with a base_dir: the working directory
    with pytest.raises(SourceError, match=f"'data/visits/\\*.csv' \\({elsewhere}/data/visits/\\*.csv\\) "
                                          "matches no file.*starts at the working directory"):
        land(Lake(str(tmp_path / "lake")), loose)
    shutil.copytree(tmp_path / "proj" / "data", elsewhere / "data")
    assert land(Lake(str(tmp_path / "lake")), loose).rows == 6


def test_a_sqlite_url_to_a_missing_file_is_an_error_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    source = sql("users", "sqlite:///data/app.sqlite", "users")
    Pipeline("p", sources=[source], base_dir=tmp_path)
    missing = tmp_path / "data" / "app.sqlite"
    with pytest.raises(SourceError, match=f"no SQLite database file at {missing} .*pipeline file's folder"):
        land(Lake(str(tmp_path / "lake")), source)
    absolute = sql("users", f"sqlite:///{missing}", "users")
    with pytest.raises(SourceError, match=f"no SQLite database file at {missing}") as info:
        land(Lake(str(tmp_path / "lake")), absolute)
    assert "relative" not in str(info.value) and "\n" not in str(info.value)
    assert not missing.exists() and not (tmp_path / "data").exists()
    memory = sql("mem", "sqlite://", query="select 1 as one")  # in-memory: nothing to look for
    assert land(Lake(str(tmp_path / "lake")), memory).rows == 1


def test_a_glob_that_matches_nothing_on_a_first_run_fails_the_load_naming_it(
        tmp_path: Path, elsewhere: Path) -> None:
    pipeline_file = make_project(tmp_path / "proj")
    (tmp_path / "proj" / "data" / "visits" / "day1.csv").unlink()
    summary = Runner(load_pipeline(pipeline_file), settings(tmp_path)).run()
    steps = {s.name: s for s in summary.steps}
    glob = tmp_path / "proj" / "data" / "visits" / "*.csv"
    assert steps["visits"].status == "failed"
    assert steps["visits"].detail.startswith(f"source 'visits': 'data/visits/*.csv' ({glob}) matches no file")
    assert "pass allow_empty=True" in steps["visits"].detail
    assert steps["users"].status == "landed"  # the other source still lands
    assert steps["visits_per_user"].status == "skipped"  # not "has no data in the lake yet"


def test_each_path_of_a_list_must_match_on_a_first_run(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", [1])
    both = files("v", [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    with pytest.raises(SourceError, match=f"source 'v': '{tmp_path}/b.csv' matches no file") as info:
        land(Lake(str(tmp_path / "lake")), both)
    assert "a.csv" not in str(info.value)
    write_csv(tmp_path / "b.csv", [2, 3])
    assert land(Lake(str(tmp_path / "lake")), both).rows == 3


def test_a_source_that_matched_before_and_matches_nothing_now_warns_and_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder, lake = tmp_path / "in", Lake(str(tmp_path / "lake"))
    folder.mkdir()
    write_csv(folder / "a.csv", [1, 2])
    write_csv(folder / "b.csv", [3])
    assert land(lake, files("v", f"{folder}/*.csv")).rows == 3
    version = lake.version("raw.v")
    moved = files("v", f"{folder}/*.tsv", format="csv")  # an edited glob
    with caplog.at_level(logging.WARNING, logger="headwater.sources"), \
            pytest.raises(SourceError, match="matched 2 file\\(s\\) before and matches none now"):
        land(lake, moved, "r2")
    assert any("matches none now" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert lake.version("raw.v") == version  # nothing committed

    allowed = files("v", f"{folder}/*.tsv", format="csv", allow_empty=True)
    extraction = allowed.extract(lake.state("raw.v"), run_id="r3", loaded_at=NOW)
    assert "no file matches" in extraction.planned and extraction.state == lake.state("raw.v")
    assert land(lake, allowed, "r3").version is None  # lands nothing, state kept
    assert lake.read("raw.v").num_rows == 3


def test_new_files_are_counted_against_what_the_glob_matches_now(tmp_path: Path) -> None:
    folder, lake = tmp_path / "in", Lake(str(tmp_path / "lake"))
    folder.mkdir()
    for name in ("a1.csv", "a2.csv", "b1.csv", "b2.csv"):
        write_csv(folder / name, [1])
    assert land(lake, files("v", f"{folder}/*.csv")).rows == 4
    write_csv(folder / "b3.csv", [1, 2])
    narrowed = files("v", f"{folder}/b*.csv")  # matches b1, b2 (landed) and b3 (new); not a1, a2
    extraction = narrowed.extract(lake.state("raw.v"), run_id="r2", loaded_at=NOW)
    assert extraction.planned == "1 new file(s) of 3"
    assert extraction.units == [str(folder / "b3.csv")]


def test_allow_empty_lets_a_first_run_land_nothing_and_a_replace_keep_its_rows(tmp_path: Path) -> None:
    folder, lake = tmp_path / "in", Lake(str(tmp_path / "lake"))
    folder.mkdir()
    waiting = files("drop", f"{folder}/*.csv", allow_empty=True)
    assert land(lake, waiting).version is None and not lake.exists("raw.drop")
    write_csv(folder / "a.csv", [1, 2])
    assert land(lake, waiting, "r2").rows == 2
    whole = files("whole", f"{folder}/*.csv", write="replace", allow_empty=True)
    assert land(lake, whole, "r3").rows == 2
    (folder / "a.csv").unlink()
    assert land(lake, whole, "r4").version is None  # matching nothing replaces nothing
    assert lake.read("raw.whole").num_rows == 2 and lake.state("raw.whole")["files"] == [str(folder / "a.csv")]


def test_a_missing_plain_file_or_folder_matches_nothing(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for path in (tmp_path / "nope.csv", tmp_path / "no-folder"):
        with pytest.raises(SourceError, match=f"'{path}' matches no file"):
            land(lake, files("v", str(path), format="csv"))


def test_a_url_that_matches_nothing_names_it(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.mkdir("/hw-paths/in")
    try:
        with pytest.raises(SourceError, match="'memory://hw-paths/in/\\*.jsonl' matches no file \\(check the URL"):
            land(Lake(str(tmp_path / "lake")), files("m", "memory://hw-paths/in/*.jsonl"))
    finally:
        fs.rm("/hw-paths", recursive=True)
