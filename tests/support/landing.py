"""Land a source the way the runner does (schema plan, quarantine, disposition), for layer tests."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.lake import Commit, Lake
from engine.load.land import land as land_extraction

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def land(lake: Lake, source: Any, run_id: str = "r", loaded_at: datetime = NOW) -> Commit:
    """Extract what is new in `source` and land it into `raw.<name>`; the landing commit."""
    extraction = source.extract(lake.state(f"raw.{source.name}"), run_id=run_id, loaded_at=loaded_at)
    return land_extraction(lake, f"raw.{source.name}", extraction, run_id=run_id).commit
