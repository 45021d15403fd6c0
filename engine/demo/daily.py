"""One more day of the photo popularity data: what a day of the app adds to what `generate` wrote.

`increment(data_dir, seed=7)` adds the day after the last day of event logs:

* a few new users (table `users`);
* new photos (table `photos`), and an image classifier's predictions for most of them in
  `classifier/predictions-YYYY-MM-DD.parquet`;
* edits of about 2% of the existing photos: a new title, `updated_at` moved into the new day
  (the app also appends each edit to its audit log `photo_edits.jsonl`: photo, old title, new
  title, when);
* the day's event log `events/YYYY-MM-DD.jsonl`: views and likes of the photos of the last 7
  days (never before their upload), and logins.

Each day's numbers come from a generator seeded by (seed, the day's date), so the same data and
seed give the same day. The days added so far are listed in `increments.json`.

    python -m engine.demo.daily DATA_DIR [--seed 7]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engine.demo.generate import (
    APP_VERSIONS,
    CITIES,
    CONTENT_LABELS,
    COUNTRIES,
    DAY_S,
    FIRST_NAMES,
    OS_NAMES,
    STYLE_LABELS,
    UNCLASSIFIED_SHARE,
    WORDS,
    _sql_ts,
    _write_classifier,
)

NEW_USERS_PER_DAY = 2.0  # mean
EDITED_SHARE = 0.02  # of existing photos, each day
VIEWS_PER_RECENT_PHOTO = 3.0  # mean views a day of a photo in its first week
LIKE_RATE = 0.12  # chance a view becomes a like
LOGIN_RATE = 0.25  # chance a user logs in on a day
MANIFEST = "increments.json"


@dataclass(frozen=True)
class Day:
    """What one increment added."""

    day: date
    users: int
    photos: int  # new photos
    edits: int  # existing photos edited
    events: int
    predictions: int


EDITS = "photo_edits.jsonl"  # the app's audit log of title edits (what a test needs to know old titles)


def days_added(data_dir: str | Path) -> list[str]:
    """The dates (ISO) of the increments applied to `data_dir`, oldest first."""
    path = Path(data_dir) / MANIFEST
    return json.loads(path.read_text())["days"] if path.exists() else []


def increment(data_dir: str | Path, *, seed: int = 7) -> Day:
    """Add the day after the last event log in `data_dir`; returns what it added."""
    data = Path(data_dir)
    logs = sorted((data / "events").glob("*.jsonl"))
    if not logs:
        raise FileNotFoundError(f"no event logs in {data / 'events'}: run generate first")
    day = date.fromisoformat(logs[-1].stem) + timedelta(days=1)
    rng = np.random.default_rng([seed, day.toordinal()])
    start = np.datetime64(day, "us")
    end = start + np.timedelta64(DAY_S, "s")
    with closing(sqlite3.connect(data / "photos.sqlite")) as con:
        user_ids = np.array([r[0] for r in con.execute("SELECT user_id FROM users ORDER BY user_id")])
        photo_rows = con.execute("SELECT photo_id, uploaded_at FROM photos ORDER BY photo_id").fetchall()
        photo_ids = np.array([r[0] for r in photo_rows])
        uploaded = _parse_ts([r[1] for r in photo_rows])
        new_users = _add_users(con, rng, int(user_ids.max()) + 1, start)
        new = _add_photos(con, rng, int(photo_ids.max()) + 1, user_ids, start, end,
                          per_day=len(photo_ids) / len(logs))
        edits = _edit_photos(con, rng, photo_ids, start, data / EDITS)
        con.commit()
    recent = uploaded >= start - np.timedelta64(7 * DAY_S, "s")
    events = _write_day_log(data / "events" / f"{day}.jsonl", rng, _next_event_id(logs),
                            np.append(photo_ids[recent], new["photo_id"]),
                            np.append(uploaded[recent], new["uploaded_at"]),
                            np.append(user_ids, new_users), end)
    predictions = _write_predictions(data / "classifier" / f"predictions-{day}.parquet", rng,
                                     new["photo_id"])
    (data / MANIFEST).write_text(json.dumps({"days": days_added(data) + [str(day)]}))
    return Day(day, len(new_users), len(new["photo_id"]), edits, events, predictions)


def _parse_ts(values: list[str]) -> np.ndarray:
    return np.array([v.replace(" ", "T") for v in values], dtype="datetime64[us]")


def _or_none(keep: np.ndarray, values: np.ndarray) -> list[Any]:
    """`values` where `keep` is true, else None, as a list."""
    return [v if k else None for k, v in zip(keep.tolist(), values.tolist())]


def _title(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, int(rng.integers(1, 7))).tolist())


def _add_users(con: sqlite3.Connection, rng: np.random.Generator, first_id: int,
               start: np.datetime64) -> np.ndarray:
    n = int(rng.poisson(NEW_USERS_PER_DAY))
    ids = np.arange(first_id, first_id + n)
    signed = start + rng.integers(0, DAY_S * 1_000_000, n).astype("timedelta64[us]")
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", zip(
        ids.tolist(), [f"{FIRST_NAMES[k]}_{i}" for k, i in zip(rng.integers(0, len(FIRST_NAMES), n), ids)],
        rng.choice(COUNTRIES, n).tolist(), _sql_ts(signed)))
    return ids


def _add_photos(con: sqlite3.Connection, rng: np.random.Generator, first_id: int, uploaders: np.ndarray,
                start: np.datetime64, end: np.datetime64, per_day: float) -> dict[str, np.ndarray]:
    n = max(1, int(rng.poisson(per_day)))
    ids = np.arange(first_id, first_id + n)
    uploaded = start + np.sort(rng.integers(0, DAY_S, n)).astype("timedelta64[s]")
    updated = np.minimum(uploaded + rng.integers(0, 3_600_000_000, n).astype("timedelta64[us]"),
                         end - np.timedelta64(1, "us"))
    located = rng.random(n) < 0.65
    con.executemany("INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?)", zip(
        ids.tolist(), rng.choice(uploaders, n).tolist(), _sql_ts(uploaded), [_title(rng) for _ in ids],
        _or_none(located, rng.choice(CITIES, n)), _sql_ts(updated)))
    return {"photo_id": ids, "uploaded_at": uploaded.astype("datetime64[us]")}


def _edit_photos(con: sqlite3.Connection, rng: np.random.Generator, photo_ids: np.ndarray,
                 start: np.datetime64, audit: Path) -> int:
    n = max(1, int(rng.binomial(len(photo_ids), EDITED_SHARE)))
    edited = rng.choice(photo_ids, n, replace=False)
    at = start + rng.integers(0, DAY_S * 1_000_000, n).astype("timedelta64[us]")
    titles = [_title(rng) for _ in edited]
    old = dict(con.execute(f"SELECT photo_id, title FROM photos WHERE photo_id IN ({','.join('?' * n)})",
                           edited.tolist()).fetchall())
    con.executemany("UPDATE photos SET title = ?, updated_at = ? WHERE photo_id = ?", zip(
        titles, _sql_ts(at), edited.tolist()))
    with audit.open("a") as log:
        for pid, title, when in zip(edited.tolist(), titles, _sql_ts(at)):
            log.write(json.dumps({"photo_id": pid, "old_title": old[pid], "title": title, "at": when}) + "\n")
    return n


def _next_event_id(logs: list[Path]) -> int:
    for log in reversed(logs):
        lines = log.read_text().splitlines()
        if lines:
            return max(json.loads(line)["event_id"] for line in lines) + 1
    return 1


def _write_day_log(path: Path, rng: np.random.Generator, first_id: int, photo_ids: np.ndarray,
                   uploaded: np.ndarray, user_ids: np.ndarray, end: np.datetime64) -> int:
    """Views and likes of `photo_ids` after their upload, and logins, on the day before `end`."""
    start = end - np.timedelta64(DAY_S, "s")
    lo = np.maximum(uploaded, start) + np.timedelta64(1, "s")
    span_s = ((end - lo) // np.timedelta64(1, "s")).astype(np.int64)
    views = np.where(span_s > 0, rng.poisson(VIEWS_PER_RECENT_PHOTO, len(photo_ids)), 0)
    v_idx = np.repeat(np.arange(len(photo_ids)), views)
    v_ts = lo[v_idx] + (rng.random(len(v_idx)) * span_s[v_idx]).astype("timedelta64[s]")
    v_user = rng.choice(user_ids, len(v_idx))
    liked = rng.random(len(v_idx)) < LIKE_RATE
    l_ts = v_ts[liked] + rng.integers(1, 600, int(liked.sum())).astype("timedelta64[s]")
    active = rng.random(len(user_ids)) < LOGIN_RATE
    g_user = np.repeat(user_ids[active], 1 + rng.poisson(0.8, int(active.sum())))
    g_ts = start + rng.integers(0, DAY_S, len(g_user)).astype("timedelta64[s]")
    ts = np.concatenate([v_ts, l_ts, g_ts]).astype("datetime64[s]")
    user = np.concatenate([v_user, v_user[liked], g_user])
    kind = np.array(["view"] * len(v_ts) + ["like"] * len(l_ts) + ["login"] * len(g_ts))
    photo = np.concatenate([photo_ids[v_idx], photo_ids[v_idx][liked], np.full(len(g_ts), -1)])
    keep = ts < end
    order = np.lexsort((photo[keep], kind[keep], user[keep], ts[keep]))
    ts, user, kind, photo = ts[keep][order], user[keep][order], kind[keep][order], photo[keep][order]
    os_names, versions = rng.choice(OS_NAMES, len(ts)), rng.choice(APP_VERSIONS, len(ts))
    lines = [json.dumps({"event_id": first_id + i, "ts": str(t), "user_id": int(u), "kind": str(k),
                         "photo_id": int(p) if p >= 0 else None,
                         "device": {"os": str(o), "app_version": str(v)}})
             for i, (t, u, k, p, o, v) in enumerate(zip(ts, user, kind, photo, os_names, versions))]
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def _write_predictions(path: Path, rng: np.random.Generator, photo_ids: np.ndarray) -> int:
    seen = photo_ids[rng.random(len(photo_ids)) >= UNCLASSIFIED_SHARE]
    if not len(seen):
        return 0
    _write_classifier(path, {"photo_id": seen,
                             "content_label": rng.choice(CONTENT_LABELS, len(seen)),
                             "style_label": rng.choice(STYLE_LABELS, len(seen)),
                             "confidence": np.round(rng.beta(8.0, 2.0, len(seen)), 6)})
    return len(seen)


def main(argv: list[str] | None = None) -> None:
    """Command line: add one day to the example's data in DATA_DIR."""
    ap = argparse.ArgumentParser(prog="python -m engine.demo.daily",
                                 description="Add the next day to the photo popularity example's data.")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    print(json.dumps(asdict(increment(args.data_dir, seed=args.seed)), default=str))


if __name__ == "__main__":
    main()
