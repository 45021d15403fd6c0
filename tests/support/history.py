"""SCD2 histories computed independently of Headwater: plain Python over the source's snapshots,
and a history table's rows in the same form, for the SCD2 tests to compare."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from engine.lake import Lake
from engine.lake.history import History

Version = tuple[Any, ...]  # (key, tracked..., other columns..., valid_from, valid_to)
T1 = datetime(2026, 3, 1, tzinfo=timezone.utc)
T2, T3, T4 = T1 + timedelta(days=1), T1 + timedelta(days=2), T1 + timedelta(days=3)
COLUMNS = ("name", "plan")
# three snapshots of a customers table, loaded at T1, T2, T3: updates, deletes, a key back with
# its old values
SNAPSHOTS: list[dict[Any, dict[str, Any]]] = [
    {1: {"name": "ann", "plan": "free"}, 2: {"name": "bob", "plan": "free"}, 3: {"name": "cy", "plan": "pro"},
     4: {"name": "di", "plan": "free"}},
    {1: {"name": "ann", "plan": "pro"}, 3: {"name": "cyd", "plan": "pro"}, 4: {"name": "di", "plan": "free"},
     5: {"name": "ed", "plan": "free"}},
    {1: {"name": "ann", "plan": "pro"}, 2: {"name": "bob", "plan": "free"}, 3: {"name": "cyd", "plan": "pro"},
     5: {"name": "ed", "plan": "team"}},
]
LOADED = list(zip((T1, T2, T3), SNAPSHOTS))


def expected_history(snapshots: Sequence[tuple[datetime, dict[Hashable, dict[str, Any]]]], *,
                     columns: Sequence[str], track: Sequence[str] | None = None,
                     invalidate: bool = True) -> list[Version]:
    """The versions an SCD2 history holds after loading `snapshots` in turn: each is (when it was
    loaded, {key: row}). A key gets a version when it is new, when a `track`ed value (default:
    all `columns`) differs from its current version's, or when it comes back after it vanished;
    the version it replaces ends then. With `invalidate`, a current key a snapshot lacks ends at
    that snapshot's time. Versions come as (key, *columns, valid_from, valid_to), sorted."""
    watched = list(track) if track is not None else list(columns)
    versions: dict[Hashable, list[dict[str, Any]]] = {}
    for when, snapshot in snapshots:
        for key, row in snapshot.items():
            seen = versions.setdefault(key, [])
            current = seen[-1] if seen and seen[-1]["to"] is None else None
            if current is not None and all(current[c] == row[c] for c in watched):
                continue
            if current is not None:
                current["to"] = when
            seen.append({**{c: row[c] for c in columns}, "from": when, "to": None})
        if invalidate:
            for key, seen in versions.items():
                if key not in snapshot and seen[-1]["to"] is None:
                    seen[-1]["to"] = when
    return sorted(((key, *(v[c] for c in columns), v["from"], v["to"])
                   for key, seen in versions.items() for v in seen), key=repr)


def history_rows(lake: Lake, table: str, key: str, columns: Sequence[str]) -> list[Version]:
    """The versions of the history table `table` as `expected_history` gives them."""
    rows = lake.read(table).to_pylist()
    return sorted(((r[key], *(r[c] for c in columns), r["_hw_valid_from"], r["_hw_valid_to"]) for r in rows),
                  key=repr)


def land_snapshots(lake: Lake, table: str = "raw.customers") -> None:
    """Land `SNAPSHOTS` into `table` as an SCD2 source would, one load at each of T1, T2, T3."""
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("plan", pa.string())])
    for when, snapshot in LOADED:
        rows = pa.Table.from_pylist([{"id": k, **r} for k, r in snapshot.items()], schema=schema)
        lake.land(table, rows.to_batches(), run_id=when.isoformat(), state={}, mode="scd2", schema=schema,
                  history=History(["id"], when))


def valid_then(versions: list[Version], when: datetime) -> dict[Any, Version]:
    """Of `versions` (as `expected_history` gives them), the one of each key valid at `when`."""
    return {v[0]: v for v in versions if v[-2] <= when and (v[-1] is None or when < v[-1])}
