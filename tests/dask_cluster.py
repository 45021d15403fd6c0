"""A 2-worker Dask cluster on loopback for the Dask backend tests, and the small Delta tables
they read. Import the fixtures into a test module with
`from tests.dask_cluster import backend, cluster, on_cluster  # noqa: F401`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from distributed import LocalCluster

from engine import Config
from engine.transform.backends import resolve
from engine.transform.backends.dask import DaskBackend


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """A 2-worker cluster of worker processes on 127.0.0.1; its scheduler's address."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local.scheduler_address


@pytest.fixture
def on_cluster(cluster: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The cluster's address in HEADWATER_DASK_ADDRESS, as a user points Headwater at a cluster."""
    monkeypatch.setenv("HEADWATER_DASK_ADDRESS", cluster)
    return cluster


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


@pytest.fixture
def backend(on_cluster: str) -> Iterator[DaskBackend]:
    chosen, reason = resolve("dask", config=Config.load(None))
    assert isinstance(chosen, DaskBackend) and on_cluster in reason and "2 workers" in reason
    yield chosen
    chosen.close()


def by_id(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by("id").to_pylist()

