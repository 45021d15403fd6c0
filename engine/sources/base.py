"""What every source is: a name and an `extract` that plans a load, then streams Arrow batches."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa

from engine.errors import HeadwaterError

if TYPE_CHECKING:
    from engine.quarantine import Quarantine
    from engine.schema import SchemaPlan

DEFAULT_BATCH_ROWS = 65_536
LOAD_COLUMNS = ("_hw_source_file", "_hw_loaded_at", "_hw_run_id")
WRITES = {"append": "append", "replace": "overwrite", "merge": "merge"}  # write= -> lake mode


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
    mode: str = "append"  # "overwrite" when the batches are the whole source; "merge" on `key`
    key: list[str] = field(default_factory=list)  # the primary key columns of a merge
    plan: SchemaPlan | None = None  # the schema to land, resolved against the table's before reading
    quarantine: Quarantine | None = None  # filled with the rows the batches leave out


@runtime_checkable
class Source(Protocol):
    """A named source that extracts only what the previous state says is new."""

    name: str

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        """Plan a load from `state` (what the lake says was landed) and stream its batches."""
        ...


def key_columns(primary_key: str | list[str] | None) -> list[str]:
    """`primary_key` as a list of column names (empty when None)."""
    if primary_key is None:
        return []
    return [primary_key] if isinstance(primary_key, str) else list(primary_key)


def check_write(source: str, write: str, primary_key: str | list[str] | None) -> None:
    """Raise unless `write` is a known disposition and a merge names its primary key."""
    if write not in WRITES:
        raise HeadwaterError(f"source {source!r}: unknown write={write!r}",
                             f"use one of {', '.join(WRITES)}")
    if write == "merge" and not key_columns(primary_key):
        raise HeadwaterError(f"source {source!r}: write='merge' needs primary_key=",
                             "name the column (or list of columns) that identifies a row")


def with_load_columns(batch: pa.RecordBatch, *, run_id: str, loaded_at: datetime,
                      source_file: str | None = None) -> pa.RecordBatch:
    """`batch` plus Headwater's load metadata columns."""
    n = batch.num_rows
    names, arrays = list(batch.schema.names), list(batch.columns)
    # pa.repeat fills each column natively: a Python list of n values per column per batch
    # was most of a Parquet load's CPU time (bench/RESULTS.md, ELT-H profile)
    if source_file is not None:
        names.append("_hw_source_file")
        arrays.append(pa.repeat(pa.scalar(source_file, pa.string()), n))
    names += ["_hw_loaded_at", "_hw_run_id"]
    arrays += [pa.repeat(pa.scalar(loaded_at, pa.timestamp("us", tz="UTC")), n),
               pa.repeat(pa.scalar(run_id, pa.string()), n)]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def flatten(batch: pa.RecordBatch, sep: str = "__") -> pa.RecordBatch:
    """Nested struct columns as flat columns named `parent__child` (lists stay lists)."""
    if not any(pa.types.is_struct(t) for t in batch.schema.types):
        return batch
    names: list[str] = []
    arrays: list[pa.Array] = []
    for name, col in zip(batch.schema.names, batch.columns):
        if pa.types.is_struct(col.type):
            children = col.flatten()  # respects the parent's nulls
            inner = flatten(pa.RecordBatch.from_arrays(children, names=[f.name for f in col.type]), sep)
            names += [f"{name}{sep}{child}" for child in inner.schema.names]
            arrays += list(inner.columns)
        else:
            names.append(name)
            arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, names=names)
