"""What every source shares: its name's rule, write dispositions, primary keys, load columns,
and where its relative paths start.

A source is a name and an `extract` that plans a load and streams Arrow batches: the
`Source` protocol and the `Extraction` it returns are the load stage's (engine/load/extraction.py).
A source that reads local paths (files, a SQLite database) has a `base_dir`: the folder of the
pipeline file it is declared in (`Pipeline.base_dir` sets it), where its relative paths start;
without one they start at the working directory.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Protocol, get_args, runtime_checkable

import pyarrow as pa

from engine.errors import ConfigError
from engine.graph import check_name
from engine.lake import WriteMode
from engine.lake.history import HARD_DELETES, HardDeletes

DEFAULT_BATCH_ROWS = 65_536
# The columns every load adds: the file a row came from (file sources only), when and by which run
LOAD_SCHEMA = pa.schema([("_hw_source_file", pa.string()), ("_hw_loaded_at", pa.timestamp("us", tz="UTC")),
                         ("_hw_run_id", pa.string())])
LOAD_COLUMNS = tuple(LOAD_SCHEMA.names)
WRITES: tuple[WriteMode, ...] = get_args(WriteMode)  # write=: how a load changes its raw table


@runtime_checkable
class HasBaseDir(Protocol):
    """A source whose relative local paths resolve against `base_dir` (None: the working directory)."""

    base_dir: Path | None


def resolve_local(path: str, base_dir: Path | None) -> str:
    """`path` (a local path, `~` expanded) made absolute against `base_dir`, or the working
    directory when that is None."""
    local = Path(os.path.expanduser(path))
    if local.is_absolute():
        return str(local)
    return os.path.normpath((base_dir or Path.cwd()) / local)


def where_relative(base_dir: Path | None) -> str:
    """Where relative paths start, for a hint."""
    return f"the pipeline file's folder, {base_dir}" if base_dir is not None else \
        f"the working directory, {Path.cwd()} (the pipeline has no base_dir)"


def key_columns(primary_key: str | list[str] | None) -> list[str]:
    """`primary_key` as a list of column names (empty when None)."""
    if primary_key is None:
        return []
    return [primary_key] if isinstance(primary_key, str) else list(primary_key)


def check_source_name(name: object) -> None:
    """Raise ConfigError unless `name` can name a source: an identifier (letters, digits and `_`,
    not starting with a digit; engine.graph.check_name), since it names `raw.<name>` and
    `quarantine.<name>` in the lake."""
    check_name("source", name)


def check_write(source: str, write: WriteMode, primary_key: str | list[str] | None) -> None:
    """Raise unless `write` is a known disposition and a merge or SCD2 load names its primary key."""
    if write not in WRITES:
        raise ConfigError(f"source {source!r}: unknown write={write!r}",
                          f"use one of {', '.join(WRITES)}")
    if write in ("merge", "scd2") and not key_columns(primary_key):
        raise ConfigError(f"source {source!r}: write={write!r} needs primary_key=",
                          "name the column (or list of columns) that identifies a row")


def check_history(source: str, write: WriteMode, *, cursor: str | None, track: list[str] | None,
                  hard_deletes: str | None) -> HardDeletes | None:
    """`hard_deletes` of an SCD2 source, its default filled in ("invalidate" for a full extract,
    "ignore" with a cursor, whose loads hold only changed rows and so never see a deletion);
    None for other dispositions. Raises ConfigError for options that do not fit."""
    if write != "scd2":
        if track is not None or hard_deletes is not None:
            raise ConfigError(f"source {source!r}: track= and hard_deletes= are options of write='scd2'",
                              "use write='scd2' to keep history, or drop them")
        return None
    if track is not None:
        if isinstance(track, str) or not track:
            raise ConfigError(f"source {source!r}: track= must be a non-empty list of column names",
                              "e.g. track=['email', 'plan'], or leave it out to track every column")
        load = [c for c in track if c.lower().startswith("_hw_")]
        if load:
            raise ConfigError(f"source {source!r}: track= names load column(s) {load}",
                              "track the source's own columns")
    if hard_deletes is None:
        return "ignore" if cursor else "invalidate"
    if hard_deletes not in HARD_DELETES:
        raise ConfigError(f"source {source!r}: unknown hard_deletes={hard_deletes!r}",
                          f"use one of {', '.join(HARD_DELETES)}")
    if hard_deletes == "invalidate" and cursor:
        raise ConfigError(f"source {source!r}: hard_deletes='invalidate' needs a full extract, but with "
                          f"cursor={cursor!r} a load reads only changed rows and never sees a deleted one",
                          "drop cursor= (each run then compares the whole table), or use hard_deletes='ignore'")
    return "invalidate" if hard_deletes == "invalidate" else "ignore"


def with_load_columns(batch: pa.RecordBatch, *, run_id: str, loaded_at: datetime,
                      source_file: str | None = None) -> pa.RecordBatch:
    """`batch` plus Headwater's load metadata columns."""
    n = batch.num_rows
    names, arrays = list(batch.schema.names), list(batch.columns)
    # pa.repeat fills each column natively: a Python list of n values per column per batch
    # was most of a Parquet load's CPU time (bench/RESULTS.md, ELT-H profile)
    values = {"_hw_source_file": source_file, "_hw_loaded_at": loaded_at, "_hw_run_id": run_id}
    for field in LOAD_SCHEMA:
        if values[field.name] is not None:
            names.append(field.name)
            arrays.append(pa.repeat(pa.scalar(values[field.name], field.type), n))
    return pa.RecordBatch.from_arrays(arrays, names=names)
