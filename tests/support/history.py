"""SCD2 histories computed independently of Headwater: plain Python over the source's snapshots,
and a history table's rows in the same form, for the SCD2 tests to compare."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime
from typing import Any

from engine.lake import Lake

Version = tuple[Any, ...]  # (key, tracked..., other columns..., valid_from, valid_to)


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
