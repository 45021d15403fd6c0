"""The photo popularity example: its generator, its five models against the pandas oracle, facts
about the models' output checked by hand from the raw files, and proof that no uploader feature
comes from on or after a photo's upload day."""
from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import types
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pjson
import pytest
import sqlalchemy as sa

from engine.demo import models as m
from engine.demo.generate import generate, main
from tests.support.photo_reference import expected_training_set, expected_user_features_latest

TINY = {"seed": 3, "users": 30, "photos": 60, "days": 10}
WEEK = timedelta(days=7)
CTX = types.SimpleNamespace(xp=pd, backend="pandas")


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("photo_default")
    generate(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("photo_tiny")
    generate(out, **TINY)
    return out


@pytest.fixture(params=["tiny", "default"])
def data_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_dir")


# ---- raw data read the way the engine lands it, and read by hand ---------------------------

def engine_frames(data_dir: Path) -> dict[str, pd.DataFrame]:
    """Raw tables shaped like the engine's: load columns added, device flattened with `__`."""
    def loaded(df: pd.DataFrame, source_file: str | None = None) -> pd.DataFrame:
        if source_file is not None:
            df = df.assign(_hw_source_file=source_file)
        return df.assign(_hw_loaded_at=pd.Timestamp("2026-04-01", tz="UTC").as_unit("us"), _hw_run_id="run-1")

    db = sa.create_engine(f"sqlite:///{data_dir / 'photos.sqlite'}")
    users = pd.read_sql_table("users", db).astype({"signed_up_at": "datetime64[us]"})
    photos = pd.read_sql_table("photos", db).astype({"uploaded_at": "datetime64[us]",
                                                     "updated_at": "datetime64[us]"})
    db.dispose()
    files = sorted((data_dir / "events").glob("*.jsonl"))
    tables = []
    for f in files:
        t = pjson.read_json(f).flatten()  # device -> device.os, device.app_version
        t = t.rename_columns([c.replace(".", "__") for c in t.column_names])
        tables.append(t.append_column("_hw_source_file", pa.array([str(f)] * len(t))))
    events = pa.concat_tables(tables, promote_options="permissive")
    events = events.set_column(events.schema.get_field_index("ts"), "ts",
                               events["ts"].cast(pa.timestamp("us"))).to_pandas()
    classifier = pd.read_parquet(data_dir / "classifier" / "predictions.parquet")
    assert {"device__os", "device__app_version"} <= set(events.columns)
    photos = photos.assign(  # one version per photo, as a first SCD2 load lands them (valid from updated_at)
        _hw_valid_from=photos["updated_at"].dt.tz_localize("UTC"),
        _hw_valid_to=pd.Series(pd.NaT, index=photos.index, dtype="datetime64[us, UTC]"), _hw_row_hash="")
    return {"users": loaded(users), "photos": loaded(photos), "events": loaded(events),
            "classifier": loaded(classifier, str(data_dir / "classifier" / "predictions.parquet"))}


def run_models(raw: dict[str, pd.DataFrame], ctx: types.SimpleNamespace = CTX) -> dict[str, pd.DataFrame]:
    daily = m.user_activity_daily(events=raw["events"], photos=raw["photos"], ctx=ctx)
    latest = m.user_features_latest(users=raw["users"], user_activity_daily=daily, ctx=ctx)
    pe = m.photo_engagement(photos=raw["photos"], events=raw["events"], ctx=ctx)
    pf = m.photo_features(photos=raw["photos"], photo_engagement=pe, user_activity_daily=daily,
                          users=raw["users"], classifier=raw["classifier"], ctx=ctx)
    return {"user_activity_daily": daily, "user_features_latest": latest, "photo_engagement": pe,
            "photo_features": pf, "training_set": m.training_set(photo_features=pf, ctx=ctx)}


@lru_cache(maxsize=4)
def models_on(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The five models' outputs on a data folder (computed once per folder; do not mutate)."""
    return run_models(engine_frames(data_dir))


def hand_events(data_dir: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((data_dir / "events").glob("*.jsonl"))
            for line in f.read_text().splitlines()]


def hand_uploads(data_dir: Path) -> dict[int, datetime]:
    with closing(sqlite3.connect(data_dir / "photos.sqlite")) as con:
        rows = con.execute("SELECT photo_id, uploaded_at FROM photos").fetchall()
    return {pid: datetime.fromisoformat(ts) for pid, ts in rows}


def hand_first_week(data_dir: Path) -> dict[int, Counter]:
    uploads = hand_uploads(data_dir)
    counts: dict[int, Counter] = {pid: Counter() for pid in uploads}
    for e in hand_events(data_dir):
        if e["kind"] in ("view", "like"):
            up = uploads[e["photo_id"]]
            if up <= datetime.fromisoformat(e["ts"]) < up + WEEK:
                counts[e["photo_id"]][e["kind"]] += 1
    return counts


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key: str = "photo_id") -> None:
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True),
                                  want.sort_values(key, ignore_index=True), rtol=1e-9)


# ---- the generator ----------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_deterministic(tmp_path: Path) -> None:
    generate(tmp_path / "a", **TINY)
    generate(tmp_path / "b", **TINY)
    generate(tmp_path / "c", **{**TINY, "seed": TINY["seed"] + 1})
    a, b, c = (_tree(tmp_path / x) for x in "abc")
    assert a == b
    assert set(a) == set(c)
    assert all(a[name] != c[name] for name in a)


def test_generator_sizes_match_the_knobs(tiny_dir: Path) -> None:
    with closing(sqlite3.connect(tiny_dir / "photos.sqlite")) as con:
        assert con.execute("SELECT count(*) FROM users").fetchone()[0] == TINY["users"]
        assert con.execute("SELECT count(*) FROM photos").fetchone()[0] == TINY["photos"]
        stamps = [v for row in con.execute("SELECT p.uploaded_at, p.updated_at, u.signed_up_at FROM photos p "
                                           "JOIN users u USING (user_id)") for v in row]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stamps)
    start = datetime(2026, 3, 1)
    days = [(start + timedelta(days=i)).date().isoformat() for i in range(TINY["days"])]
    assert sorted(p.stem for p in (tiny_dir / "events").glob("*.jsonl")) == days
    for day in days:
        for line in (tiny_dir / "events" / f"{day}.jsonl").read_text().splitlines():
            e = json.loads(line)
            assert e["ts"][:10] == day and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", e["ts"])
            assert set(e["device"]) == {"os", "app_version"}
    cls = pd.read_parquet(tiny_dir / "classifier" / "predictions.parquet")
    assert list(cls.columns) == ["photo_id", "content_label", "style_label", "confidence"]
    assert cls["confidence"].dtype == np.float64
    assert cls["photo_id"].is_unique and set(cls["photo_id"]) <= set(range(1, TINY["photos"] + 1))


def test_events_never_precede_uploads(data_dir: Path) -> None:
    uploads = hand_uploads(data_dir)
    events = hand_events(data_dir)
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    with closing(sqlite3.connect(data_dir / "photos.sqlite")) as con:
        user_ids = {r[0] for r in con.execute("SELECT user_id FROM users")}
    for e in events:
        assert e["user_id"] in user_ids
        if e["kind"] == "login":
            assert e["photo_id"] is None
        else:
            assert e["kind"] in ("view", "like")
            assert datetime.fromisoformat(e["ts"]) >= uploads[e["photo_id"]]


def test_cli_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path), "--seed", "1", "--users", "5", "--photos", "8", "--days", "3"])
    assert (tmp_path / "photos.sqlite").is_file() and (tmp_path / "classifier/predictions.parquet").is_file()
    assert len(list((tmp_path / "events").glob("*.jsonl"))) == 3
    assert "photos.sqlite" in capsys.readouterr().out


# ---- the models against the oracle ------------------------------------------------------------

def test_models_match_the_oracle(data_dir: Path) -> None:
    got = models_on(data_dir)
    for name, frame in got.items():
        assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0, name
        assert frame.columns.is_unique, name
    assert_same_rows(got["training_set"], expected_training_set(data_dir))
    assert list(got["training_set"]["photo_id"]) == sorted(got["training_set"]["photo_id"])


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask is not installed")
def test_models_run_lazily_on_dask_frames_and_equal_pandas(tiny_dir: Path) -> None:
    """The five models chained on dask.dataframe frames (2 partitions each), computed once at the end."""
    import dask
    import dask.dataframe as dd

    raw = engine_frames(tiny_dir)
    want = models_on(tiny_dir)
    with dask.config.set({"dataframe.convert-string": False, "scheduler": "synchronous"}):
        lazy = run_models({k: dd.from_pandas(v, npartitions=2) for k, v in raw.items()},
                          types.SimpleNamespace(xp=dd, backend="dask"))
        assert all(isinstance(frame, dd.DataFrame) for frame in lazy.values())
        got = dask.compute(lazy)[0]
    for name, frame in got.items():
        key = ["user_id", "day"] if name == "user_activity_daily" else [want[name].columns[0]]
        pd.testing.assert_frame_equal(frame.sort_values(key, ignore_index=True),
                                      want[name].sort_values(key, ignore_index=True), check_dtype=False, obj=name)


def test_models_take_string_timestamps_and_nullable_ids(tiny_dir: Path) -> None:
    raw = engine_frames(tiny_dir)
    ev = raw["events"]
    raw["events"] = ev.assign(ts=ev["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S").astype("str"),
                              photo_id=ev["photo_id"].astype("Int64"))
    assert_same_rows(run_models(raw)["training_set"], expected_training_set(tiny_dir))


def test_stale_photo_versions_and_duplicate_predictions_change_nothing(tiny_dir: Path) -> None:
    raw = engine_frames(tiny_dir)
    before = run_models(raw)["photo_features"]
    stale = raw["photos"].head(10).assign(title="an older title that is much longer",
                                          updated_at=raw["photos"]["updated_at"].head(10) - pd.Timedelta("1h"))
    worse = raw["classifier"].head(10).assign(content_label="street", confidence=0.0)
    raw["photos"] = pd.concat([stale, raw["photos"]], ignore_index=True)
    raw["classifier"] = pd.concat([raw["classifier"], worse], ignore_index=True)
    assert_same_rows(run_models(raw)["photo_features"], before)


# ---- facts checked by hand ------------------------------------------------------------------

def test_first_week_counts_match_a_hand_count(data_dir: Path) -> None:
    hand = hand_first_week(data_dir)
    pe = models_on(data_dir)["photo_engagement"].set_index("photo_id")
    busiest = max(hand, key=lambda pid: (hand[pid]["like"], pid))
    assert hand[busiest]["like"] > 0
    assert pe.loc[busiest, "likes_7d"] == hand[busiest]["like"]
    assert pe.loc[busiest, "views_7d"] == hand[busiest]["view"]
    assert sorted(pe.index) == sorted(hand)
    assert {pid: (r.views_7d, r.likes_7d) for pid, r in pe.iterrows()} == \
        {pid: (c["view"], c["like"]) for pid, c in hand.items()}


def test_window_is_half_open(default_dir: Path) -> None:
    """Events at the upload second count; events exactly 7 days later do not (and both exist)."""
    uploads = hand_uploads(default_dir)
    events = [e for e in hand_events(default_dir) if e["kind"] != "login"]
    at_upload = [e for e in events if datetime.fromisoformat(e["ts"]) == uploads[e["photo_id"]]]
    at_week = [e for e in events if datetime.fromisoformat(e["ts"]) == uploads[e["photo_id"]] + WEEK]
    assert at_upload and at_week
    hand = hand_first_week(default_dir)
    pe = models_on(default_dir)["photo_engagement"].set_index("photo_id")
    for e in at_week:
        inside = sum(1 for x in events if x["photo_id"] == e["photo_id"] and x["kind"] == "like"
                     and datetime.fromisoformat(x["ts"]) < uploads[e["photo_id"]] + WEEK)
        assert pe.loc[e["photo_id"], "likes_7d"] == inside == hand[e["photo_id"]]["like"]


def test_photos_without_events_get_zero(default_dir: Path) -> None:
    seen = {e["photo_id"] for e in hand_events(default_dir) if e["photo_id"] is not None}
    unseen = set(hand_uploads(default_dir)) - seen
    assert unseen
    pe = models_on(default_dir)["photo_engagement"].set_index("photo_id")
    assert (pe.loc[sorted(unseen), ["views_7d", "likes_7d"]] == 0).all().all()


def test_incomplete_windows_are_excluded(data_dir: Path) -> None:
    data_end = max(datetime.fromisoformat(e["ts"]) for e in hand_events(data_dir))
    uploads = hand_uploads(data_dir)
    complete = sorted(pid for pid, up in uploads.items() if up + WEEK <= data_end)
    assert 0 < len(complete) < len(uploads)
    assert any(up + WEEK == data_end for up in uploads.values())  # the edge case is in the data
    ts = models_on(data_dir)["training_set"]
    assert list(ts["photo_id"]) == complete


def test_latest_user_features_match_a_hand_count(tiny_dir: Path) -> None:
    latest = models_on(tiny_dir)["user_features_latest"].set_index("user_id")
    assert len(latest) == TINY["users"]
    by_user: dict[int, list[dict]] = {}
    for e in hand_events(tiny_dir):
        by_user.setdefault(e["user_id"], []).append(e)
    with closing(sqlite3.connect(tiny_dir / "photos.sqlite")) as con:
        uploads = Counter(uid for (uid,) in con.execute("SELECT user_id FROM photos"))
    for uid, row in latest.iterrows():
        mine = by_user.get(uid, [])
        kinds = Counter(e["kind"] for e in mine)
        assert (row.views, row.likes, row.logins) == (kinds["view"], kinds["like"], kinds["login"])
        assert row.active_days == len({e["ts"][:10] for e in mine})
        assert row.photos == uploads[uid]
    pd.testing.assert_frame_equal(latest.reset_index(), expected_user_features_latest(tiny_dir),
                                  check_dtype=False)


def test_daily_totals_only_grow_and_are_known_at_the_end_of_their_day(tiny_dir: Path) -> None:
    daily = models_on(tiny_dir)["user_activity_daily"]
    assert not daily.duplicated(["user_id", "day"]).any()
    assert (daily["known_at"] == daily["day"] + pd.Timedelta(days=1)).all()
    assert (daily["day"] == daily["day"].dt.normalize()).all()
    steps = daily.groupby("user_id")[m.ACTIVITY_COUNTS].diff().dropna()
    assert (steps >= 0).all().all() and (steps.sum(axis=1) > 0).all()  # each row adds something


def test_uploader_features_see_nothing_from_the_upload_day_on(default_dir: Path) -> None:
    """Cut every raw table at a moment T (events, photos and users after it never happened): the
    uploader features of photos uploaded before T do not change. With the old all-time join they
    would (the uploaders keep viewing, liking and uploading after T)."""
    raw = engine_frames(default_dir)
    full = run_models(raw)["photo_features"].set_index("photo_id")
    cut = pd.Timestamp("2026-03-06 13:00:00")
    past = {"events": raw["events"][raw["events"]["ts"] < cut],
            "photos": raw["photos"][raw["photos"]["uploaded_at"] < cut],
            "users": raw["users"], "classifier": raw["classifier"]}
    early = run_models(past)["photo_features"].set_index("photo_id")
    uploader = [c for c in m.TRAINING_COLUMNS if c.startswith("uploader_")]
    assert len(early) == len(past["photos"]) > 100
    pd.testing.assert_frame_equal(early[uploader], full.loc[early.index, uploader])
    later_activity = raw["events"]["ts"] >= cut
    assert raw["events"][later_activity]["user_id"].isin(early["user_id"]).any()
    all_time = raw["events"].groupby("user_id").size()
    seen = early["uploader_views"] + early["uploader_likes"] + early["uploader_logins"]
    assert (seen < early["user_id"].map(all_time).fillna(0)).all()  # strictly less than all time


def hand_uploader_counts(events: list[dict], uploads: dict[int, datetime], owner: dict[int, int],
                         pid: int, at: datetime) -> tuple[int, int]:
    """(views, photos) of photo `pid`'s uploader from days that ended strictly before `at`, by hand."""
    def ended_before(ts: datetime) -> bool:
        return datetime(ts.year, ts.month, ts.day) + timedelta(days=1) < at

    views = sum(1 for e in events if e["user_id"] == owner[pid] and e["kind"] == "view"
                and ended_before(datetime.fromisoformat(e["ts"])))
    photos = sum(1 for q, up in uploads.items() if owner[q] == owner[pid] and ended_before(up))
    return views, photos


def test_a_photo_counts_only_its_uploaders_days_before_its_own(tiny_dir: Path) -> None:
    uploads = hand_uploads(tiny_dir)
    with closing(sqlite3.connect(tiny_dir / "photos.sqlite")) as con:
        owner = dict(con.execute("SELECT photo_id, user_id FROM photos").fetchall())
    events = hand_events(tiny_dir)
    pf = models_on(tiny_dir)["photo_features"].set_index("photo_id")
    for pid, up in uploads.items():
        assert tuple(pf.loc[pid, ["uploader_views", "uploader_photos"]]) == \
            hand_uploader_counts(events, uploads, owner, pid, up)


def test_an_upload_at_midnight_does_not_see_the_day_that_just_ended(tiny_dir: Path) -> None:
    """The previous day's totals are known at midnight, the upload's own instant: not before it.
    One second later they are."""
    raw = engine_frames(tiny_dir)
    events = hand_events(tiny_dir)
    owner = dict(zip(raw["photos"]["photo_id"], raw["photos"]["user_id"]))
    viewers = Counter((e["user_id"], e["ts"][:10]) for e in events if e["kind"] == "view")
    pid = next(p for p in sorted(owner) if (owner[p], "2026-03-04") in viewers)
    seen = {}
    for at in (datetime(2026, 3, 5), datetime(2026, 3, 5, 0, 0, 1)):
        moved = raw["photos"]["photo_id"] == pid
        photos = raw["photos"].copy()
        photos.loc[moved, ["uploaded_at", "updated_at"]] = pd.Timestamp(at)
        pf = run_models({**raw, "photos": photos})["photo_features"].set_index("photo_id")
        uploads = {p: u.to_pydatetime() for p, u in zip(photos["photo_id"], photos["uploaded_at"])}
        seen[at] = tuple(pf.loc[pid, ["uploader_views", "uploader_photos"]])
        assert seen[at] == hand_uploader_counts(events, uploads, owner, pid, at)
    midnight, after = seen.values()
    assert after[0] - midnight[0] == viewers[(owner[pid], "2026-03-04")] > 0


def test_label_has_both_classes_and_follows_the_threshold(default_dir: Path) -> None:
    hand = hand_first_week(default_dir)
    ts = models_on(default_dir)["training_set"]
    assert ts["popular"].dtype == bool and ts["popular"].any() and not ts["popular"].all()
    assert list(ts["popular"]) == [hand[pid]["like"] >= m.POPULAR_MIN_LIKES_7D for pid in ts["photo_id"]]
    assert not {"likes_7d", "views_7d", "window_complete"} & set(ts.columns)


def test_pipeline_wires_the_models(tmp_path: Path) -> None:
    from engine.demo.pipeline import make_pipeline

    p = make_pipeline(tmp_path)
    assert [s.name for s in p.sources] == ["users", "photos", "events", "classifier"]
    assert {param: str(ref) for param, ref in p.model("photo_features").inputs.items()} == {
        "photos": "raw.photos", "photo_engagement": "models.photo_engagement",
        "user_activity_daily": "models.user_activity_daily", "users": "raw.users",
        "classifier": "raw.classifier"}
    assert {param: str(ref) for param, ref in p.model("user_features_latest").inputs.items()} == {
        "users": "raw.users", "user_activity_daily": "models.user_activity_daily"}
    assert p.model("training_set").fn is m.training_set
    assert all(mod.wants_ctx for mod in p.models if mod.kind == "pandas")
    assert {mod.name: mod.kind for mod in p.models if mod.kind != "pandas"} == {
        "daily_engagement": "polars", "uploader_stats": "sql"}
    assert {str(ref) for ref in p.model("uploader_stats").inputs.values()} == {"raw.photos", "raw.events"}
