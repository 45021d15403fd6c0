"""Partitioned model tables: physically partitioned by `_hw_partition` (a day `2026-03-01` or a
month `2026-03`, `__null__` for rows without a value), and replaced one set of partitions at a
time by a predicate overwrite (Delta's `replaceWhere`).

A partition replace is idempotent (the same rows replace the same partition), so it is not
guarded by the table's version as other model commits are: delta-rs' own conflict check lets
replaces of different partitions commit side by side (a backfill's parallel steps) and fails a
replace of a partition another commit changed meanwhile. Each commit is whole: a crash leaves
every partition as it was before or after, never half written.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from engine.lake import guard
from engine.lake.guard import META_PREFIX
from engine.lake.storage import storage_errors
from engine.lake.store import Commit, Lake
from engine.lake.types import as_delta

PARTITION = "_hw_partition"  # the partition column of a partitioned model's table
NULL_PARTITION = "__null__"  # where rows whose partition column is null go


def replace_partitions(lake: Lake, name: str, table: pa.Table, partitions: Sequence[str] | None, *,
                       run_id: str, meta: dict[str, Any]) -> Commit:
    """Replace `partitions` of `name` (None: the whole table) with `table`'s rows, in one commit
    carrying `meta`. Every row of `table` must belong to one of `partitions`."""
    uri = lake.uri(name)
    data = as_delta(table)
    listed = None if partitions is None else sorted(set(partitions))
    props = guard.properties({META_PREFIX + k: json.dumps(v, default=str) for k, v in
                              {"run_id": run_id, "partitions": listed or "all", **meta}.items()})
    with storage_errors(f"cannot write the lake table at {uri}"):
        if listed is None or not lake.exists(name):
            write_deltalake(uri, data, mode="overwrite", partition_by=[PARTITION], schema_mode="overwrite",
                            storage_options=lake.storage_options, commit_properties=props)
        else:
            current = lake.table(name)
            if PARTITION not in current.metadata().partition_columns:
                raise ValueError(f"{name} is not partitioned by {PARTITION}: rebuild it whole first")
            values = ", ".join("'" + p.replace("'", "''") + "'" for p in listed)
            write_deltalake(current, data, mode="overwrite", predicate=f"{PARTITION} IN ({values})",
                            schema_mode="merge", storage_options=lake.storage_options, commit_properties=props)
        version = DeltaTable(uri, storage_options=lake.storage_options).version()
    return Commit(lake.qualify(name), version, data.num_rows)


def partitioned(lake: Lake, name: str, version: int | None = None) -> bool:
    """Whether `name` (at `version`) is partitioned by `_hw_partition`."""
    if not lake.exists(name):
        return False
    return PARTITION in lake.table(name, version).metadata().partition_columns


def changed_partitions(lake: Lake, name: str, since: int | None, version: int) -> list[str] | None:
    """The partitions of model table `name` replaced by the commits after `since` up to
    `version`, or None when one of them rewrote the whole table (or `since` is None)."""
    if since is None or since > version:
        return None
    found: set[str] = set()
    for commit in lake.history(name):
        if since < commit.get("version", -1) <= version:
            listed = commit.get("partitions")
            if not isinstance(listed, list):
                return None
            found.update(listed)
    return sorted(found)
