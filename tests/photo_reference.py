"""An independent pandas oracle for the photo popularity example's training set.

Computes `training_set` straight from the generated raw files (SQLite, JSON lines, Parquet),
without the engine and without `examples.photo_popularity.models`: the formulation differs on
purpose (time deltas and crosstabs instead of masks and named aggregations, sort-and-keep-last
instead of max-and-merge), so agreement between the two means something. Only the rules are
shared: the 7-day half-open window, the popularity threshold, the label for unclassified photos.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

from examples.photo_popularity.models import (
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

    # what each user did
    did = pd.crosstab(events["user_id"], events["kind"]).reindex(
        columns=["view", "like", "login"], fill_value=0)
    days_active = events.assign(day=events["ts"].dt.date).groupby("user_id")["day"].nunique()
    activity = users.set_index("user_id").join(did).join(days_active.rename("active_days"))
    activity = activity.fillna({"view": 0, "like": 0, "login": 0, "active_days": 0})

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
    out["title_len"] = [len(t) for t in photos["title"]]
    out["has_location"] = photos["location"].notna()
    out["upload_hour"] = [t.hour for t in photos["uploaded_at"]]
    out["upload_weekday"] = [t.weekday() for t in photos["uploaded_at"]]
    up = activity.reindex(photos["user_id"]).set_axis(photos.index)
    out["uploader_country"] = up["country"]
    out["uploader_photos"] = photos["user_id"].map(photos["user_id"].value_counts())
    out["uploader_views"] = up["view"]
    out["uploader_likes"] = up["like"]
    out["uploader_logins"] = up["login"]
    out["uploader_active_days"] = up["active_days"]
    out["uploader_account_age_days"] = (photos["uploaded_at"] - up["signed_up_at"]) / pd.Timedelta(days=1)
    out["popular"] = week_counts["like"] >= POPULAR_MIN_LIKES_7D
    complete = photos["uploaded_at"] + WEEK <= data_end
    out = out[complete].reset_index()
    return out[TRAINING_COLUMNS + ["popular"]].sort_values("photo_id", ignore_index=True)
