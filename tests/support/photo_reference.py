"""An independent pandas oracle for the photo popularity example's training set.

Computes `training_set` straight from the generated raw files (SQLite, JSON lines, Parquet),
without the engine and without `engine.demo.models`: the formulation differs on
purpose (time deltas and crosstabs instead of masks and named aggregations, sort-and-keep-last
instead of max-and-merge, a plain loop over each uploader's history instead of an as-of join), so
agreement between the two means something. Only the rules are shared: the 7-day half-open
window, the popularity threshold, the label for unclassified photos, and the point-in-time rule
for uploader features: a photo uploaded at t counts its uploader's events and uploads of the UTC
days that ended strictly before t (a day's totals are known at its end).
"""
from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from engine.demo.models import (
    POPULAR_MIN_LIKES_7D,
    TRAINING_COLUMNS,
    UNKNOWN_LABEL,
)

WEEK = pd.Timedelta(days=7)


def read_raw(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The raw tables as plain pandas reads them: users, photos, events (device flattened), classifier
    (every Parquet file of predictions: the initial one and one per daily increment)."""
    data_dir = Path(data_dir)
    with closing(sqlite3.connect(data_dir / "photos.sqlite")) as con:
        users = pd.read_sql("SELECT * FROM users", con, parse_dates=["signed_up_at"])
        photos = pd.read_sql("SELECT * FROM photos", con, parse_dates=["uploaded_at", "updated_at"])
    records = pd.concat([pd.read_json(f, lines=True, dtype=False, convert_dates=False)
                         for f in sorted((data_dir / "events").glob("*.jsonl"))], ignore_index=True)
    events = pd.json_normalize(records.to_dict("records"), sep="__")
    events["ts"] = pd.to_datetime(events["ts"], format="%Y-%m-%dT%H:%M:%S")
    classifier = pd.concat([pd.read_parquet(f) for f in sorted((data_dir / "classifier").glob("*.parquet"))],
                           ignore_index=True)
    return {"users": users, "photos": photos, "events": events, "classifier": classifier}


def expected_training_set(data_dir: Path) -> pd.DataFrame:
    """The training set the example pipeline must produce from the raw files in `data_dir`."""
    raw = read_raw(data_dir)
    users, events, classifier = raw["users"], raw["events"], raw["classifier"]
    photos = (raw["photos"].sort_values(["photo_id", "updated_at"])
              .drop_duplicates("photo_id", keep="last").set_index("photo_id"))

    history = uploader_history(events, photos.reset_index())
    # each photo's first week
    acts = events[events["kind"].isin(["view", "like"])].dropna(subset=["photo_id"])
    acts = acts.assign(photo_id=acts["photo_id"].astype(int))
    age = acts["ts"] - acts["photo_id"].map(photos["uploaded_at"])
    first_week = acts[(age >= pd.Timedelta(0)) & (age < WEEK)]
    week_counts = pd.crosstab(first_week["photo_id"], first_week["kind"]).reindex(
        index=photos.index, columns=["view", "like"], fill_value=0)
    data_end = events["ts"].max()

    # one prediction per photo, the most confident
    best = classifier.loc[classifier.groupby("photo_id")["confidence"].idxmax()].set_index("photo_id")

    out = pd.DataFrame(index=photos.index)
    out["user_id"] = photos["user_id"]
    out["uploaded_at"] = photos["uploaded_at"]
    out["content_label"] = best["content_label"].reindex(out.index).fillna(UNKNOWN_LABEL)
    out["style_label"] = best["style_label"].reindex(out.index).fillna(UNKNOWN_LABEL)
    out["confidence"] = best["confidence"].reindex(out.index).fillna(0.0)
    titles = titles_at(data_dir, photos["title"], photos["uploaded_at"] + WEEK)
    out["title_len"] = [len(titles[pid]) for pid in photos.index]
    out["has_location"] = photos["location"].notna()
    out["upload_hour"] = [t.hour for t in photos["uploaded_at"]]
    out["upload_weekday"] = [t.weekday() for t in photos["uploaded_at"]]
    signup = users.set_index("user_id")
    out["uploader_country"] = photos["user_id"].map(signup["country"])
    before = [known_before(history[uid], t) for uid, t in zip(photos["user_id"], photos["uploaded_at"])]
    for column in ("photos", "views", "likes", "logins", "active_days"):
        out[f"uploader_{column}"] = [counts[column] for counts in before]
    out["uploader_account_age_days"] = ((photos["uploaded_at"] - photos["user_id"].map(signup["signed_up_at"]))
                                        / pd.Timedelta(days=1))
    out["popular"] = week_counts["like"] >= POPULAR_MIN_LIKES_7D
    complete = photos["uploaded_at"] + WEEK <= data_end
    out = out[complete].reset_index()
    return out[TRAINING_COLUMNS + ["popular"]].sort_values("photo_id", ignore_index=True)


def titles_at(data_dir: Path, current: pd.Series, when: pd.Series) -> dict[int, str]:
    """Each photo's title at `when[photo_id]`: its first title, then the edits the app's audit
    log (`photo_edits.jsonl`, written by engine/demo/daily.py) made up to then, in order."""
    path = Path(data_dir) / "photo_edits.jsonl"
    edits = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    edits.sort(key=lambda e: e["at"])
    first = {int(pid): t for pid, t in current.items()}
    for e in reversed(edits):  # the oldest edit of a photo names its first title
        first[e["photo_id"]] = e["old_title"]
    out = dict(first)
    for e in edits:
        if datetime.fromisoformat(e["at"]) <= when[e["photo_id"]]:
            out[e["photo_id"]] = e["title"]
    return out


def day_end(ts: datetime) -> datetime:
    """When a day's totals are known: midnight after `ts`."""
    return datetime(ts.year, ts.month, ts.day) + timedelta(days=1)


def uploader_history(events: pd.DataFrame, photos: pd.DataFrame) -> dict[int, list[tuple[datetime, str, object]]]:
    """Per user, what they did: (end of its day, what: a kind of event or 'upload', the day)."""
    history: dict[int, list[tuple[datetime, str, object]]] = defaultdict(list)
    for uid, ts, kind in zip(events["user_id"], events["ts"], events["kind"]):
        history[int(uid)].append((day_end(ts.to_pydatetime()), kind, ts.date()))
    for uid, ts in zip(photos["user_id"], photos["uploaded_at"]):
        history[int(uid)].append((day_end(ts.to_pydatetime()), "upload", ts.date()))
    return history


def known_before(done: list[tuple[datetime, str, object]], t: pd.Timestamp | None) -> dict[str, int]:
    """Running totals from the days of `done` that ended strictly before `t` (all of them when t is None)."""
    seen = [(kind, day) for end, kind, day in done if t is None or end < t.to_pydatetime()]
    return {"photos": sum(kind == "upload" for kind, _ in seen),
            "views": sum(kind == "view" for kind, _ in seen),
            "likes": sum(kind == "like" for kind, _ in seen),
            "logins": sum(kind == "login" for kind, _ in seen),
            "active_days": len({day for kind, day in seen if kind != "upload"})}


def expected_user_features_latest(data_dir: Path) -> pd.DataFrame:
    """The `user_features_latest` table: every user's totals over everything, and when they were
    known (the end of the last day with activity; NaT for a user with none)."""
    raw = read_raw(data_dir)
    photos = raw["photos"].sort_values(["photo_id", "updated_at"]).drop_duplicates("photo_id", keep="last")
    history = uploader_history(raw["events"], photos)
    rows = []
    for user in raw["users"].itertuples(index=False):
        done = history.get(int(user.user_id), [])
        rows.append({"user_id": user.user_id, "country": user.country, "signed_up_at": user.signed_up_at,
                     **known_before(done, None), "as_of": max((end for end, _, _ in done), default=pd.NaT)})
    out = pd.DataFrame(rows)
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out.sort_values("user_id", ignore_index=True)
