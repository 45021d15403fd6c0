"""The photo popularity models: plain functions over DataFrames, the same code on pandas and cuDF.

Inputs are the raw tables as the engine lands them (load columns `_hw_*` are ignored, the
event's `device` arrives flattened as `device__os` / `device__app_version`). `ctx.xp` is the
DataFrame module of the run (pandas or cudf). Every function returns a frame sorted by its key
with a default RangeIndex.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.transform import features

DAY = np.timedelta64(86_400, "s")  # seconds, not "D": cuDF durations are s, ms, us or ns
WINDOW = 7 * DAY  # engagement counts in [uploaded_at, uploaded_at + 7 days)
POPULAR_MIN_LIKES_7D = 4  # a photo is popular when it got at least this many likes in its first week
UNKNOWN_LABEL = "unknown"  # classifier labels of photos the classifier never saw

ACTIVITY_COUNTS = ["photos", "views", "likes", "logins", "active_days"]  # running totals per user
DAILY_COLUMNS = ["user_id", "day", "known_at", *ACTIVITY_COUNTS]
LATEST_COLUMNS = ["user_id", "country", "signed_up_at", *ACTIVITY_COUNTS, "as_of"]
ENGAGEMENT_COLUMNS = ["photo_id", "views_7d", "likes_7d", "window_complete"]
TRAINING_COLUMNS = ["photo_id", "user_id", "uploaded_at", "content_label", "style_label", "confidence",
                    "title_len", "has_location", "upload_hour", "upload_weekday", "uploader_country",
                    "uploader_photos", "uploader_views", "uploader_likes", "uploader_logins",
                    "uploader_active_days", "uploader_account_age_days"]
FEATURE_COLUMNS = TRAINING_COLUMNS + ["views_7d", "likes_7d", "window_complete"]


def user_activity_daily(events: Any, photos: Any, ctx: Any) -> Any:
    """The uploader feature table: one row per user and UTC day on which they did something (an
    event or an upload), with their running totals through the end of that day: photos uploaded,
    views, likes and logins made, days with an event. `known_at` (the day's end) is when those
    totals are known: a photo uploaded at t may only use rows with `known_at` before t."""
    ev = _events(events, ctx)
    ev = ev.assign(views=(ev["kind"] == "view").astype("int64"),
                   likes=(ev["kind"] == "like").astype("int64"),
                   logins=(ev["kind"] == "login").astype("int64"),
                   day=_day(ev["ts"]))
    acts = ev.groupby(["user_id", "day"]).agg(
        views=("views", "sum"), likes=("likes", "sum"), logins=("logins", "sum")).reset_index()
    ph = _latest_photos(photos)[["user_id", "uploaded_at"]]
    ph = ph.assign(day=_day(ph["uploaded_at"]), photos=1)
    ups = ph.groupby(["user_id", "day"]).agg(photos=("photos", "sum")).reset_index()
    daily = _zero_fill(acts.merge(ups, on=["user_id", "day"], how="outer"), ["photos", "views", "likes", "logins"])
    daily["active_days"] = ((daily["views"] + daily["likes"] + daily["logins"]) > 0).astype("int64")
    daily = _sorted(daily, ["user_id", "day"])
    totals = daily.groupby("user_id")[ACTIVITY_COUNTS].cumsum()
    for c in ACTIVITY_COUNTS:
        daily[c] = totals[c].astype("int64")
    daily["known_at"] = daily["day"] + DAY
    return daily[DAILY_COLUMNS]


def user_features_latest(users: Any, user_activity_daily: Any, ctx: Any) -> Any:
    """The online lookup table: one row per user with their newest running totals (0 for a user
    with no activity yet) and `as_of`, when those totals became known (NaT when none)."""
    last = features.latest(user_activity_daily, entity="user_id", feature_time="known_at")
    out = users[["user_id", "country", "signed_up_at"]].merge(
        last[["user_id", "known_at", *ACTIVITY_COUNTS]], on="user_id", how="left")
    out = _zero_fill(out.rename(columns={"known_at": "as_of"}), ACTIVITY_COUNTS)
    return _sorted(out[LATEST_COLUMNS], "user_id")


def photo_engagement(photos: Any, events: Any, ctx: Any) -> Any:
    """One row per photo: views and likes in its first 7 days (0 when none), and whether those
    7 days have fully passed by the last event in the data (`window_complete`)."""
    ph = _latest_photos(photos)[["photo_id", "uploaded_at"]]
    ev = _events(events, ctx)
    data_end = ev["ts"].max()
    acts = ev[ev["kind"].isin(["view", "like"]) & ev["photo_id"].notnull()]
    acts = acts.assign(photo_id=acts["photo_id"].astype("int64"))
    acts = acts.merge(ph, on="photo_id", how="inner")
    acts = acts[(acts["ts"] >= acts["uploaded_at"]) & (acts["ts"] < acts["uploaded_at"] + WINDOW)]
    acts = acts.assign(views_7d=(acts["kind"] == "view").astype("int64"),
                       likes_7d=(acts["kind"] == "like").astype("int64"))
    counts = acts.groupby("photo_id").agg(views_7d=("views_7d", "sum"),
                                          likes_7d=("likes_7d", "sum")).reset_index()
    out = _zero_fill(ph.merge(counts, on="photo_id", how="left"), ["views_7d", "likes_7d"])
    out["window_complete"] = (out["uploaded_at"] + WINDOW) <= data_end
    return _sorted(out[ENGAGEMENT_COLUMNS], "photo_id")


def photo_features(photos: Any, photo_engagement: Any, user_activity_daily: Any, users: Any,
                   classifier: Any, ctx: Any) -> Any:
    """One row per photo: what is known of it at upload (classifier labels, location, upload hour
    and weekday), its title's length as the title was at label time (the end of its first week:
    `photos` is an SCD2 history, so a later edit does not leak in), its uploader's country and
    account age, the uploader's running totals as known before the upload (point in time: no
    activity from the upload's own day or later), and its first-week engagement."""
    ph = _latest_photos(photos)[["photo_id", "user_id", "uploaded_at", "location"]]
    ph = ph.merge(_title_at_label_time(ph, photos, ctx), on="photo_id", how="left")
    history = features.FeatureSet(user_activity_daily, entity="user_id", feature_time="known_at",
                                  columns=ACTIVITY_COUNTS, prefix="uploader_")
    uploader = users[["user_id", "country", "signed_up_at"]].rename(
        columns={"country": "uploader_country", "signed_up_at": "uploader_signed_up_at"})
    f = (features.training_set(ph, history, label_time="uploaded_at", xp=ctx.xp)
         .merge(_best_predictions(classifier), on="photo_id", how="left")
         .merge(uploader, on="user_id", how="left")
         .merge(photo_engagement[ENGAGEMENT_COLUMNS], on="photo_id", how="left"))
    f["content_label"] = f["content_label"].fillna(UNKNOWN_LABEL)
    f["style_label"] = f["style_label"].fillna(UNKNOWN_LABEL)
    f["confidence"] = f["confidence"].fillna(0.0).astype("float64")
    f["title_len"] = f["title"].str.len().fillna(0).astype("int64")
    f["has_location"] = f["location"].notnull()
    f["upload_hour"] = f["uploaded_at"].dt.hour.astype("int64")
    f["upload_weekday"] = f["uploaded_at"].dt.weekday.astype("int64")
    age = f["uploaded_at"] - f["uploader_signed_up_at"]
    f["uploader_account_age_days"] = (age / DAY).astype("float64")  # cuDF has no .dt.total_seconds
    f["window_complete"] = f["window_complete"].fillna(False).astype("bool")
    f = _zero_fill(f, [f"uploader_{c}" for c in ACTIVITY_COUNTS] + ["views_7d", "likes_7d"])
    return _sorted(f[FEATURE_COLUMNS], "photo_id")


def training_set(photo_features: Any, ctx: Any) -> Any:
    """The features known at upload plus the label `popular` (at least POPULAR_MIN_LIKES_7D likes
    in the first 7 days), for photos whose first 7 days are over; sorted by photo_id.

    First-week engagement itself is left out: it is what the label is made of.
    """
    out = photo_features[TRAINING_COLUMNS].assign(
        popular=photo_features["likes_7d"] >= POPULAR_MIN_LIKES_7D,
        done=photo_features["window_complete"].fillna(False))
    return _sorted(out[out["done"]].drop(columns=["done"]), "photo_id")


def _events(events: Any, ctx: Any) -> Any:
    """The event columns the models use, with `ts` as a naive UTC timestamp."""
    ev = events[["user_id", "kind", "photo_id", "ts"]]
    ts = ev["ts"]
    if getattr(ts.dtype, "kind", "") != "M":
        ts = ctx.xp.to_datetime(ts)
    if getattr(ts.dtype, "tz", None) is not None:
        ts = ts.dt.tz_convert(None)
    return ev.assign(ts=ts)


def _latest_photos(photos: Any) -> Any:
    """One row per photo: its latest version by `updated_at` (incremental loads may land several)."""
    newest = photos.groupby("photo_id").agg(newest=("updated_at", "max")).reset_index()
    ph = photos.merge(newest, on="photo_id", how="inner")
    return ph[ph["updated_at"] == ph["newest"]].drop_duplicates(subset=["photo_id"])


def _title_at_label_time(photos: Any, history: Any, ctx: Any) -> Any:
    """`photo_id` and the `title` each photo had at its label time (`uploaded_at` + 7 days), from
    the SCD2 history of the photos table."""
    labels = photos[["photo_id", "uploaded_at"]]
    labels = labels.assign(label_time=(labels["uploaded_at"] + WINDOW).dt.tz_localize("UTC"))
    titled = features.as_of_history(labels[["photo_id", "label_time"]], history, entity="photo_id",
                                    label_time="label_time", columns=["title"], xp=ctx.xp)
    return titled[["photo_id", "title"]]


def _best_predictions(classifier: Any) -> Any:
    """One prediction per photo: the most confident one if the classifier scored a photo twice."""
    cls = classifier[["photo_id", "content_label", "style_label", "confidence"]]
    best = cls.groupby("photo_id").agg(best=("confidence", "max")).reset_index()
    cls = cls.merge(best, on="photo_id", how="inner")
    cls = cls[cls["confidence"] == cls["best"]].drop_duplicates(subset=["photo_id"])
    return cls[["photo_id", "content_label", "style_label", "confidence"]]


def _day(ts: Any) -> Any:
    """The UTC day a naive timestamp falls on, in microseconds (so days from any source join)."""
    return ts.dt.floor("D").astype("datetime64[us]")


def _zero_fill(frame: Any, columns: list[str]) -> Any:
    for c in columns:
        frame[c] = frame[c].fillna(0).astype("int64")
    return frame


def _sorted(frame: Any, key: str | list[str]) -> Any:
    return frame.sort_values(key).reset_index(drop=True)
