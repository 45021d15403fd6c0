"""The small Delta tables the Dask backend tests read on their 2-worker cluster. The cluster
itself (`cluster`, `on_cluster`) is in tests/transform/conftest.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def events() -> pa.Table:
    """Eight rows with nulls in strings, integers, booleans, timestamps and partition values."""
    return pa.table({
        "id": pa.array(range(1, 9), pa.int64()),
        "kind": ["like", None, "view", "like", "é ü/x", "view", "like", None],
        "n": pa.array([10, None, 30, 40, None, 60, 70, 80], pa.int64()),
        "ok": pa.array([True, False, None, True, True, False, True, True]),
        "count": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.int32()),
        "at_utc": pa.array([1_700_000_000_654_321, 5, None, 7, 8, 9, 10, 11], pa.timestamp("us", tz="UTC")),
        "day": ["2024-01-01", "2024-01-01", "2024-01-02", None, "2024-01-02", "2024-01-03", "2024-01-03", None],
        "shard": pa.array([0, 1, 0, 1, None, 0, 1, 0], pa.int32()),
    })


def write(path: Path, table: pa.Table, partition_by: list[str] | None = None, commits: int = 3) -> DeltaTable:
    step = -(-table.num_rows // commits)
    for i in range(commits):
        write_deltalake(str(path), table.slice(i * step, step), partition_by=partition_by,
                        mode="append" if i else "error")
    return DeltaTable(str(path))


def by_id(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by("id").to_pylist()
