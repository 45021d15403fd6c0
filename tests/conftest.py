"""Shared test settings: no telemetry, no stray Headwater settings from the environment."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _clean_headwater_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set HEADWATER_* themselves; the developer's shell must not leak in."""
    for var in ("HEADWATER_LAKE", "HEADWATER_WAREHOUSE", "HEADWATER_BACKEND", "HEADWATER_DEBUG",
                "HEADWATER_FAULT", "HEADWATER_DASK_ADDRESS", "HEADWATER_DASK_CLUSTER"):
        monkeypatch.delenv(var, raising=False)
