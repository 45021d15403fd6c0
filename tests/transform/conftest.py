"""Fixtures of the transform tests: a 2-worker Dask cluster on loopback (the Dask backend tests).

`distributed` is imported when a test first asks for the cluster, not whenever a test of this
folder is collected (before, only the Dask test modules imported it)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """A 2-worker cluster of worker processes on 127.0.0.1; its scheduler's address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local.scheduler_address


@pytest.fixture
def on_cluster(cluster: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The cluster's address in HEADWATER_DASK_ADDRESS, as a user points Headwater at a cluster."""
    monkeypatch.setenv("HEADWATER_DASK_ADDRESS", cluster)
    return cluster
