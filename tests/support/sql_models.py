"""The SQL models of the test suite, each with its expected rows computed in plain Python from
the same input rows (never by a SQL engine), over two days of events and a users table.

tests/transform/test_sql_engines.py runs every one of them on DuckDB and on polars (and on
cudf-polars where a GPU is lent) and checks each engine against the expectation; other SQL
tests reuse the data and the pipeline.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import Pipeline, sources, sql_model
from tests.support.pipeline_folder import make_users, write_events

KINDS = ("view", "like", "share")
COUNTRIES = ("fr", "de", "it", "es")
USERS = [(u, COUNTRIES[u % 4], "a") for u in range(1, 21)]
EVENTS = [(e, KINDS[(e * 7) % 3], (e * 13) % 23 + 1) for e in range(1, 241)]  # user ids 1..23: 21-23 unknown
DAY1, DAY2 = EVENTS[:150], EVENTS[150:]

Rows = list[tuple[Any, ...]]
Expected = Callable[[Rows, Rows], Rows]  # (events, users) -> the model's rows


def _likes(events: Rows, users: Rows) -> Rows:
    return sorted(Counter(u for _, k, u in events if k == "like").items())


def _by_country(events: Rows, users: Rows) -> Rows:
    country = {u: c for u, c, _ in users}
    n: Counter[str] = Counter()
    ids: defaultdict[str, int] = defaultdict(int)
    for e, _, u in events:
        if u in country:
            n[country[u]] += 1
            ids[country[u]] += e
    return sorted((c, n[c], ids[c], round(ids[c] / n[c], 6)) for c in n)


def _active(events: Rows, users: Rows) -> Rows:
    per: Counter[int] = Counter(u for _, _, u in events)
    return sorted((u, per[u]) for u in per if per[u] >= 12)


def _kinds(events: Rows, users: Rows) -> Rows:
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for _, k, u in events:
        out[u][0] += k == "view"
        out[u][1] += k in ("like", "share")
    return sorted((u, v, o) for u, (v, o) in out.items())


def _first(events: Rows, users: Rows) -> Rows:
    first: dict[int, int] = {}
    for e, _, u in sorted(events):
        first.setdefault(u, e)
    return sorted(first.items())


def _orphans(events: Rows, users: Rows) -> Rows:
    known = {u for u, _, _ in users}
    return sorted({(u,) for _, _, u in events if u not in known})


def _top(events: Rows, users: Rows) -> Rows:
    active = _active(events, users)
    return sorted(sorted(active, key=lambda un: (-un[1], un[0]))[:3])


def _upper(events: Rows, users: Rows) -> Rows:
    return sorted((u, c.upper(), len(c) + u) for u, c, _ in users if u <= 5)


# name -> (SQL, expected rows); the SQL is the subset DuckDB and polars SQL both accept
SQL_MODELS: dict[str, tuple[str, Expected]] = {
    "likes_per_user": ("select user_id, count(*) as likes from raw.events where kind = 'like' group by user_id",
                       _likes),
    "by_country": ("""
        select u.country, count(*) as events, sum(e.event_id) as ids, round(avg(e.event_id), 6) as mean_id
        from raw.events e join raw.users u on e.user_id = u.id
        group by u.country""", _by_country),
    "active_users": ("""
        with per_user as (select user_id, count(*) as n from raw.events group by user_id)
        select user_id, n from per_user where n >= 12""", _active),
    "kinds_per_user": ("""
        select user_id,
               sum(case when kind = 'view' then 1 else 0 end) as views,
               sum(case when kind in ('like', 'share') then 1 else 0 end) as others
        from raw.events group by user_id""", _kinds),
    "first_event": ("""
        select user_id, event_id from (
            select user_id, event_id, row_number() over (partition by user_id order by event_id) as rn
            from raw.events) as ranked
        where rn = 1""", _first),
    "orphan_users": ("""
        select distinct user_id from raw.events
        where user_id not in (select id from raw.users)""", _orphans),
    "top_users": ("select user_id, n from active_users order by n desc, user_id limit 3", _top),
    "shouting": ("""
        select id as user_id, upper(country) as country, cast(length(country) + id as bigint) as score
        from raw.users where id <= 5""", _upper),
}


def write_inputs(root: Path, days: int = 2) -> None:
    """Day 1 (and day 2) of the events, and the users, under `root`."""
    write_events(root, 1, DAY1)
    if days > 1:
        write_events(root, 2, DAY2)
    make_users(root, USERS)


def expected(name: str, days: int = 2) -> Rows:
    """What model `name` must hold after `days` days of events."""
    return SQL_MODELS[name][1](DAY1 + (DAY2 if days > 1 else []), USERS)


def pipeline(root: Path, names: list[str] | None = None) -> Pipeline:
    """The events and users sources under `root` and the SQL models `names` (default: all;
    `top_users` brings `active_users`, which it reads)."""
    chosen = list(names or SQL_MODELS)
    if "top_users" in chosen and "active_users" not in chosen:
        chosen.append("active_users")
    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    users = sources.sql("users", f"sqlite:///{root}/users.sqlite", "users")
    return Pipeline("sql", sources=[events, users], models_dir=None,
                    models=[sql_model(n, SQL_MODELS[n][0], publish=False) for n in chosen])
