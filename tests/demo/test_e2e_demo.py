"""End to end: `headwater demo` through the real command, checked against an independent pandas
computation from the generated raw files; a second run lands nothing and changes no table.
`headwater demo --days 2` then adds two days of new and edited photos and events: each day lands
only that day's rows, edits replace their photo's row, and the training set still matches."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from engine.demo.daily import days_added, increment
from engine.demo.generate import generate
from engine.demo.pipeline import DEMO_FILE
from engine.lake import Lake
from engine.runs import manifest
from tests.support.demo import assert_matches_oracle, warehouse_table
from tests.support.photo_reference import expected_training_set, expected_user_features_latest

ROOT = Path(__file__).resolve().parents[2]


def headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's engine, whichever checkout the environment installed
    env = {**os.environ, "HEADWATER_BACKEND": "pandas", "COLUMNS": "160", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    first = headwater("demo", str(directory), "--photos", "600", "--users", "120", "--log-days", "12",
                      cwd=directory)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "published" in first.stdout and "training_set" in first.stdout
    return directory


@pytest.fixture(scope="module")
def daily_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("daily")
    run = headwater("demo", str(directory), "--photos", "600", "--users", "120", "--log-days", "12",
                    "--days", "2", cwd=directory)
    assert run.returncode == 0, run.stderr + run.stdout
    return directory, run.stdout


def test_training_set_equals_plain_pandas_row_for_row(demo_dir: Path) -> None:
    assert_matches_oracle(demo_dir)


def test_latest_user_features_are_published_for_online_lookup(daily_dir: tuple[Path, str]) -> None:
    """After the days too: every user's newest totals, as plain loops over the raw files count them."""
    directory, _ = daily_dir
    got = warehouse_table(directory, "user_features_latest").sort_values("user_id", ignore_index=True)
    want = expected_user_features_latest(directory / "data" / "photo_popularity")
    assert list(got.columns) == list(want.columns) and len(got) == len(want) > 120
    for column in want.columns:
        if pd.api.types.is_datetime64_any_dtype(want[column]):
            assert got[column].astype("datetime64[us]").tolist() == want[column].astype("datetime64[us]").tolist()
        else:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column
    daily = warehouse_table(directory, "user_activity_daily")
    assert not daily.duplicated(["user_id", "day"]).any() and daily["user_id"].isin(got["user_id"]).all()


def test_second_run_lands_nothing_and_changes_no_table(demo_dir: Path) -> None:
    lake = Lake(str(demo_dir / "lake"))
    versions = {t: lake.version(t) for t in lake.tables()}
    before = warehouse_table(demo_dir, "_headwater_published").sort_values("name", ignore_index=True)
    again = headwater("demo", str(demo_dir), cwd=demo_dir)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "landed 0 new rows" in again.stdout
    assert {t: lake.version(t) for t in lake.tables()} == versions
    after = warehouse_table(demo_dir, "_headwater_published").sort_values("name", ignore_index=True)
    pd.testing.assert_frame_equal(after, before)


def test_query_answers_from_the_demo_folder(demo_dir: Path) -> None:
    expected = len(expected_training_set(demo_dir / "data" / "photo_popularity"))
    result = headwater("query", "select count(*) as n from training_set", cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    assert f" {expected} " in result.stdout.replace("│", " ")
    lake = headwater("query", "select count(distinct _hw_source_file) as files from raw.events", cwd=demo_dir)
    assert lake.returncode == 0, lake.stderr
    days = len(list((demo_dir / "data" / "photo_popularity" / "events").glob("*.jsonl")))
    assert f" {days} " in lake.stdout.replace("│", " ")


def test_reproduce_finds_the_demos_pipeline_from_the_run_manifest(demo_dir: Path, tmp_path: Path) -> None:
    """The demo records its pipeline file (engine/demo/pipeline.py) like `headwater run` does, so
    `reproduce` needs no --pipeline, from any working directory."""
    run = manifest.runs(Lake(str(demo_dir / "lake")))[-1]  # the first run: it built everything
    assert run["pipeline_file"] == str(DEMO_FILE) and run["pipeline_hash"] == manifest.file_hash(DEMO_FILE)
    out = tmp_path / "repro"
    done = headwater("reproduce", run["run_id"], "--table", "training_set", "--out", str(out),
                     "--lake", str(demo_dir / "lake"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "equal" in done.stdout
    rebuilt = DeltaTable(str(out / "training_set")).to_pyarrow_table()
    assert rebuilt.num_rows == len(expected_training_set(demo_dir / "data" / "photo_popularity"))


def test_after_two_days_training_set_still_equals_plain_pandas(daily_dir: tuple[Path, str]) -> None:
    directory, _ = daily_dir
    data = directory / "data" / "photo_popularity"
    assert len(list((data / "events").glob("*.jsonl"))) == 14
    assert_matches_oracle(directory)


def test_each_day_lands_only_that_days_rows(daily_dir: tuple[Path, str], tmp_path: Path) -> None:
    directory, stdout = daily_dir
    landed = {m.group(1): dict(re.findall(r"(\w+) ([\d,]+(?: \(\d+ new, \d+ changed\))?)", m.group(2)))
              for m in re.finditer(r"^(initial load|day \d \(\S+\)): landed (.*)$", stdout, re.MULTILINE)}
    assert list(landed) == ["initial load", "day 1 (2026-03-13)", "day 2 (2026-03-14)"]
    # the same data again, day by day (it is deterministic), to see what each day added
    replay = tmp_path / "replay"
    generate(replay, seed=7, users=120, photos=600, days=12)
    for title, day in (("day 1 (2026-03-13)", "2026-03-13"), ("day 2 (2026-03-14)", "2026-03-14")):
        assert str(increment(replay, seed=7).day) == day
        with closing(sqlite3.connect(replay / "photos.sqlite")) as con:
            users = con.execute("select count(*) from users where date(signed_up_at) = ?", (day,)).fetchone()[0]
            new, edited = con.execute(
                "select sum(date(uploaded_at) = ?), sum(date(uploaded_at) < ?) from photos "
                "where date(updated_at) = ?", (day, day, day)).fetchone()
        events = len((replay / "events" / f"{day}.jsonl").read_text().splitlines())
        predictions = pq.read_metadata(replay / "classifier" / f"predictions-{day}.parquet").num_rows
        assert new > 0 and edited > 0 and users > 0
        assert landed[title] == {"users": f"{users}", "photos": f"{new + edited} ({new} new, {edited} changed)",
                                 "events": f"{events:,}", "classifier": f"{predictions}"}
    data = directory / "data" / "photo_popularity"
    for path in sorted(p.relative_to(replay) for p in replay.rglob("*") if p.is_file()):
        assert (data / path).read_bytes() == (replay / path).read_bytes(), path
    assert days_added(data) == ["2026-03-13", "2026-03-14"]


def test_raw_photos_hold_every_version_and_one_current_row_per_photo(daily_dir: tuple[Path, str]) -> None:
    """raw.photos is an SCD2 history: its current rows are the app's table as it is now, and each
    edit in the app's audit log left a closed version with the old title."""
    import json

    directory, _ = daily_dir
    raw = Lake(str(directory / "lake")).read("raw.photos",
                                              columns=["photo_id", "title", "updated_at", "_hw_valid_to"])
    rows = list(zip(raw.column("photo_id").to_pylist(), raw.column("title").to_pylist(),
                    (t.isoformat(sep=" ") for t in raw.column("updated_at").to_pylist()),
                    raw.column("_hw_valid_to").to_pylist()))
    current = sorted(r[:3] for r in rows if r[3] is None)
    data = directory / "data" / "photo_popularity"
    with closing(sqlite3.connect(data / "photos.sqlite")) as con:
        app_rows = con.execute("select photo_id, title, updated_at from photos order by photo_id").fetchall()
    assert current == app_rows
    edits = [json.loads(line) for line in (data / "photo_edits.jsonl").read_text().splitlines()]
    closed = sorted((r[0], r[1]) for r in rows if r[3] is not None)
    assert closed == sorted((e["photo_id"], e["old_title"]) for e in edits)
    assert len(rows) == len(app_rows) + len(edits)


def test_rerun_after_the_days_lands_nothing(daily_dir: tuple[Path, str]) -> None:
    directory, _ = daily_dir
    lake = Lake(str(directory / "lake"))
    versions = {t: lake.version(t) for t in lake.tables()}
    again = headwater("demo", str(directory), "--days", "2", cwd=directory)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "landed 0 new rows" in again.stdout and "catch-up run: landed users 0" in again.stdout
    assert {t: lake.version(t) for t in lake.tables()} == versions


def test_the_sql_and_polars_models_equal_counts_taken_from_the_raw_files(demo_dir: Path) -> None:
    """uploader_stats (SQL, on DuckDB) and daily_engagement (polars), against plain loops over the
    generated SQLite database and event logs."""
    import json
    from collections import Counter

    data = demo_dir / "data" / "photo_popularity"
    with closing(sqlite3.connect(data / "photos.sqlite")) as con:
        owner = dict(con.execute("select photo_id, user_id from photos").fetchall())
    events = [json.loads(line) for f in sorted((data / "events").glob("*.jsonl"))
              for line in f.read_text().splitlines()]
    photos, views, likes = Counter(owner.values()), Counter(), Counter()
    for e in events:
        if e["photo_id"] in owner:
            counter = views if e["kind"] == "view" else likes if e["kind"] == "like" else Counter()
            counter[owner[e["photo_id"]]] += 1
    got = warehouse_table(demo_dir, "uploader_stats").sort_values("user_id", ignore_index=True)
    assert [tuple(r) for r in got.itertuples(index=False)] == [
        (u, photos[u], views[u], likes[u]) for u in sorted(photos)]

    per_day: dict[str, Counter] = {}
    users: dict[str, set] = {}
    for e in events:
        day = e["ts"][:10]
        per_day.setdefault(day, Counter())[e["kind"]] += 1
        users.setdefault(day, set()).add(e["user_id"])
    daily = warehouse_table(demo_dir, "daily_engagement").sort_values("day")
    assert [(str(r.day)[:10], r.views, r.likes, r.logins, r.active_users) for r in daily.itertuples()] == [
        (d, c["view"], c["like"], c["login"], len(users[d])) for d, c in sorted(per_day.items())]
