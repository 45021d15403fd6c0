"""What a source hands to the load stage: one planned load (`Extraction`), and the `Source`
protocol that makes one."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from engine.lake import WriteMode
from engine.lake.history import History
from engine.load.quarantine import Quarantine
from engine.load.schema import SchemaPlan


@dataclass
class Extraction:
    """One planned load: the batches to land and the state that is true once they are landed.

    The state is known before any batch is read (files listed, cursor bounds fixed), so it can
    go into the same Delta commit as the rows.
    """

    batches: Iterator[pa.RecordBatch]
    state: dict[str, Any]
    planned: str = ""  # a short human description: "3 new files", "rows with updated_at in (a, b]"
    units: list[str] = field(default_factory=list)  # what is being read, for progress
    mode: WriteMode = "append"  # "replace": the batches are the whole source; "merge"/"scd2" on `primary_key`
    primary_key: list[str] = field(default_factory=list)  # the key columns of a merge or an SCD2 load
    history: History | None = None  # how an SCD2 load ("scd2") keeps versions
    plan: SchemaPlan | None = None  # the schema to land, resolved against the table's before reading
    quarantine: Quarantine | None = None  # filled with the rows the batches leave out


@runtime_checkable
class Source(Protocol):
    """A named source that extracts only what the previous state says is new."""

    name: str

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        """Plan a load from `state` (what the lake says was landed) and stream its batches."""
        ...
