"""Deterministic synthetic data for the photo popularity example.

Writes, under one folder, what a photo-sharing app would have:

* `photos.sqlite`: the app database, tables `users` and `photos` (timestamps are naive UTC
  text in SQLAlchemy's SQLite format, so SQLAlchemy reflects and compares them as datetimes);
* `events/YYYY-MM-DD.jsonl`: one file of app events per day (views, likes, logins), each with
  a nested `device` object;
* `classifier/predictions.parquet`: an image classifier's content and style labels per photo.

Popularity is learnable, not noise: how often a photo is viewed depends on its content and on
how active (and so how followed) its uploader is; how often a view turns into a like depends
on the content. A few events sit exactly on a photo's upload time and exactly 7 days after it,
so that window boundaries matter (and with more than 7 days, one photo's first week ends
exactly on the last event in the data); about 3% of photos are never seen and 2% were never classified.

    python -m engine.demo.generate OUT_DIR [--seed 7 --users 200 --photos 1000 --days 14]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CONTENT_LABELS = ("pets", "landscape", "food", "portrait", "architecture", "street")
LABEL_APPEAL = np.array([1.8, 1.3, 1.0, 0.9, 0.7, 0.6])  # views multiplier per true content
LABEL_LIKE_RATE = np.array([0.18, 0.13, 0.10, 0.09, 0.07, 0.06])  # chance a view becomes a like
STYLE_LABELS = ("vivid", "minimal", "moody", "vintage")
COUNTRIES = ("US", "BR", "IN", "DE", "JP", "FR", "GB", "MX")
FIRST_NAMES = ("ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai", "lea")
CITIES = ("Lisbon", "Kyoto", "Denver", "Cape Town", "Oslo", "Lima", "Hanoi", "Montreal")
WORDS = ("sunset", "my", "dog", "morning", "coffee", "city", "lights", "old", "friend", "beach",
         "first", "snow", "market", "street", "bridge", "cat", "garden", "dinner", "trip", "view")
OS_NAMES = ("ios", "android", "web")
APP_VERSIONS = ("5.1.0", "5.2.0", "5.3.1")
DAY_S = 86_400
BASE_VIEWS = 20.0  # mean views of an average photo by an average uploader
MEAN_VIEW_DELAY_DAYS = 1.5
UNSEEN_SHARE, UNCLASSIFIED_SHARE, BOUNDARY_SHARE = 0.03, 0.02, 0.04
VIEW, LIKE, LOGIN = 0, 1, 2
KINDS = ("view", "like", "login")


def generate(out_dir: str | Path, *, seed: int = 7, users: int = 200, photos: int = 1000,
             days: int = 14, start: date = date(2026, 3, 1)) -> dict[str, Path]:
    """Write the example's raw data under `out_dir`; the same arguments give the same bytes.

    Returns the paths written: `sqlite` (the database file), `events` (the folder of daily
    JSON-lines files) and `classifier` (the Parquet file).
    """
    if users < 1 or photos < 1 or days < 1:
        raise ValueError("users, photos and days must be at least 1")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    t0 = np.datetime64(start, "s")
    u = _users(rng, users, t0)
    p = _photos(rng, photos, u, t0, days)
    ev = _events(rng, u, p, t0, days)
    cls = _classifier(rng, p)
    return {"sqlite": _write_sqlite(out / "photos.sqlite", u, p),
            "events": _write_events(out / "events", ev, t0, days),
            "classifier": _write_classifier(out / "classifier" / "predictions.parquet", cls)}


def _users(rng: np.random.Generator, n: int, t0: np.datetime64) -> dict[str, np.ndarray]:
    activity = rng.lognormal(0.0, 0.8, n)
    ids = np.arange(1, n + 1)
    signup_us = rng.integers(DAY_S, 730 * DAY_S, n) * 1_000_000 + rng.integers(0, 1_000_000, n)
    return {
        "user_id": ids,
        "name": np.array([f"{FIRST_NAMES[k]}_{i}" for k, i in
                          zip(rng.integers(0, len(FIRST_NAMES), n), ids)]),
        "country": rng.choice(COUNTRIES, n),
        "signed_up_at": t0.astype("datetime64[us]") - signup_us.astype("timedelta64[us]"),
        "activity": activity / activity.mean(),  # hidden: drives events, uploads and reach
        "os": rng.choice(OS_NAMES, n, p=[0.45, 0.4, 0.15]),
    }


def _photos(rng: np.random.Generator, n: int, u: dict[str, np.ndarray], t0: np.datetime64,
            days: int) -> dict[str, np.ndarray]:
    weights = u["activity"] / u["activity"].sum()
    uploader_idx = rng.choice(len(weights), n, p=weights)
    offsets = rng.integers(0, days * DAY_S, n)
    if days > 7:  # one photo whose first week ends exactly on the last event (see _events)
        offsets[rng.integers(n)] = (days - 7) * DAY_S - 1
    uploaded = t0 + np.sort(offsets).astype("timedelta64[s]")
    label = rng.integers(0, len(CONTENT_LABELS), n)
    n_words = rng.integers(1, 7, n)
    words = rng.choice(WORDS, (n, 6))
    located = rng.random(n) < 0.65
    cities = rng.choice(CITIES, n)
    edit_us = rng.integers(0, 3_600_000_000, n).astype("timedelta64[us]")
    last_us = (t0 + np.timedelta64(days * DAY_S, "s")).astype("datetime64[us]") - np.timedelta64(1, "us")
    appeal = (BASE_VIEWS * LABEL_APPEAL[label] * u["activity"][uploader_idx] ** 0.8
              * rng.lognormal(0.0, 0.35, n))
    appeal[rng.random(n) < UNSEEN_SHARE] = 0.0
    return {
        "photo_id": np.arange(1, n + 1),
        "user_id": u["user_id"][uploader_idx],
        "uploaded_at": uploaded,
        "title": np.array([" ".join(w[:k]) for w, k in zip(words, n_words)]),
        "location": np.where(located, cities, None),  # type: ignore[call-overload]  # numpy takes None; its stubs do not
        "updated_at": np.minimum(uploaded.astype("datetime64[us]") + edit_us, last_us),
        "label": label,  # hidden: the true content
        "style": rng.integers(0, len(STYLE_LABELS), n),
        "appeal": appeal,  # hidden: expected views
    }


def _events(rng: np.random.Generator, u: dict[str, np.ndarray], p: dict[str, np.ndarray],
            t0: np.datetime64, days: int) -> dict[str, np.ndarray]:
    end = t0 + np.timedelta64(days * DAY_S, "s")
    week = np.timedelta64(7 * DAY_S, "s")
    user_p = u["activity"] / u["activity"].sum()
    n_photos, n_users = len(p["photo_id"]), len(u["user_id"])
    # views: Poisson(appeal) per photo, delays after upload decaying exponentially
    v_photo = np.repeat(np.arange(n_photos), rng.poisson(p["appeal"]))
    delay = np.maximum(1, np.ceil(rng.exponential(MEAN_VIEW_DELAY_DAYS * DAY_S, len(v_photo)))).astype(np.int64)
    v_ts = p["uploaded_at"][v_photo] + delay.astype("timedelta64[s]")
    v_user = rng.choice(n_users, len(v_photo), p=user_p)
    # likes: some views turn into a like by the same viewer a few minutes later
    liked = rng.random(len(v_photo)) < LABEL_LIKE_RATE[p["label"][v_photo]]
    l_photo, l_user = v_photo[liked], v_user[liked]
    l_ts = v_ts[liked] + rng.integers(1, 600, liked.sum()).astype("timedelta64[s]")
    # boundary events: a view at the upload second, a like exactly 7 days after it
    at_upload = np.flatnonzero(rng.random(n_photos) < BOUNDARY_SHARE)
    at_week = np.flatnonzero(rng.random(n_photos) < BOUNDARY_SHARE)
    b_user = rng.choice(n_users, len(at_upload) + len(at_week), p=user_p)
    # logins: each user is active on some days, logging in one or more times
    active = rng.random((n_users, days)) < np.clip(0.25 * u["activity"], 0.05, 0.95)[:, None]
    counts = np.where(active, 1 + rng.poisson(0.8, active.shape), 0).ravel()
    g_user = np.repeat(np.repeat(np.arange(n_users), days), counts)
    g_day = np.repeat(np.tile(np.arange(days), n_users), counts)
    g_ts = (t0 + (g_day * DAY_S + rng.integers(0, DAY_S, len(g_day))).astype("timedelta64[s]"))
    g_user = np.append(g_user, rng.integers(n_users))  # the data's last event: 1 s before the end
    g_ts = np.append(g_ts, end - np.timedelta64(1, "s"))

    photo = np.concatenate([v_photo, l_photo, at_upload, at_week, np.full(len(g_user), -1)])
    ts = np.concatenate([v_ts, l_ts, p["uploaded_at"][at_upload], p["uploaded_at"][at_week] + week, g_ts])
    user = np.concatenate([v_user, l_user, b_user, g_user])
    kind = np.concatenate([np.full(len(v_photo), VIEW), np.full(len(l_photo), LIKE),
                           np.full(len(at_upload), VIEW), np.full(len(at_week), LIKE),
                           np.full(len(g_user), LOGIN)])
    keep = ts < end
    photo, ts, user, kind = photo[keep], ts[keep], user[keep], kind[keep]
    order = np.lexsort((photo, kind, user, ts))
    photo, ts, user, kind = photo[order], ts[order], user[order], kind[order]
    return {
        "event_id": np.arange(1, len(ts) + 1),
        "ts": ts,
        "user_id": u["user_id"][user],
        "kind": kind,
        "photo_id": np.where(photo >= 0, p["photo_id"][np.maximum(photo, 0)], -1),
        "os": u["os"][user],
        "app_version": rng.choice(APP_VERSIONS, len(ts), p=[0.2, 0.3, 0.5]),
    }


def _classifier(rng: np.random.Generator, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(p["photo_id"])
    confidence = rng.beta(8.0, 2.0, n)
    wrong = rng.random(n) >= confidence
    shift = rng.integers(1, len(CONTENT_LABELS), n)  # a different label when wrong
    predicted = np.where(wrong, (p["label"] + shift) % len(CONTENT_LABELS), p["label"])
    style = np.where(rng.random(n) < 0.85, p["style"], rng.integers(0, len(STYLE_LABELS), n))
    seen = rng.random(n) >= UNCLASSIFIED_SHARE
    return {"photo_id": p["photo_id"][seen],
            "content_label": np.array(CONTENT_LABELS)[predicted][seen],
            "style_label": np.array(STYLE_LABELS)[style][seen],
            "confidence": np.round(confidence, 6)[seen]}


def _sql_ts(values: np.ndarray) -> list[str]:
    """Naive datetimes as SQLAlchemy stores them in SQLite: `YYYY-MM-DD HH:MM:SS.ffffff`."""
    return [s.replace("T", " ") for s in np.datetime_as_string(values.astype("datetime64[us]"), unit="us")]


def _write_sqlite(path: Path, u: dict[str, np.ndarray], p: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE users (user_id INTEGER PRIMARY KEY, name TEXT, country TEXT, "
                    "signed_up_at TIMESTAMP)")
        con.execute("CREATE TABLE photos (photo_id INTEGER PRIMARY KEY, user_id INTEGER, "
                    "uploaded_at TIMESTAMP, title TEXT, location TEXT, updated_at TIMESTAMP)")
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", zip(
            u["user_id"].tolist(), u["name"].tolist(), u["country"].tolist(), _sql_ts(u["signed_up_at"])))
        con.executemany("INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?)", zip(
            p["photo_id"].tolist(), p["user_id"].tolist(), _sql_ts(p["uploaded_at"]),
            p["title"].tolist(), p["location"].tolist(), _sql_ts(p["updated_at"])))
        con.commit()
    return path


def _write_events(folder: Path, ev: dict[str, np.ndarray], t0: np.datetime64, days: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    ts_text = np.datetime_as_string(ev["ts"], unit="s")
    day_of = ((ev["ts"] - t0) // np.timedelta64(DAY_S, "s")).astype(int)
    columns = [ev["event_id"].tolist(), ts_text.tolist(), ev["user_id"].tolist(), ev["kind"].tolist(),
               ev["photo_id"].tolist(), ev["os"].tolist(), ev["app_version"].tolist()]
    lines: list[list[str]] = [[] for _ in range(days)]
    for day, (eid, ts, uid, kind, pid, os_name, version) in zip(day_of.tolist(), zip(*columns)):
        lines[day].append(json.dumps({
            "event_id": eid, "ts": ts, "user_id": uid, "kind": KINDS[kind],
            "photo_id": pid if pid >= 0 else None,
            "device": {"os": os_name, "app_version": version}}))
    for day in range(days):
        name = str((t0 + np.timedelta64(day * DAY_S, "s")).astype("datetime64[D]"))
        (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines[day]))
    return folder


def _write_classifier(path: Path, cls: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"photo_id": pa.array(cls["photo_id"], pa.int64()),
                      "content_label": pa.array(cls["content_label"].tolist(), pa.string()),
                      "style_label": pa.array(cls["style_label"].tolist(), pa.string()),
                      "confidence": pa.array(cls["confidence"], pa.float64())})
    pq.write_table(table, path)
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: generate the example's data into OUT_DIR."""
    ap = argparse.ArgumentParser(prog="python -m engine.demo.generate",
                                 description="Generate the photo popularity example's raw data.")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 1))
    args = ap.parse_args(argv)
    paths = generate(args.out_dir, seed=args.seed, users=args.users, photos=args.photos,
                     days=args.days, start=args.start)
    for what, path in paths.items():
        print(f"{what}: {path}")


if __name__ == "__main__":
    main()
