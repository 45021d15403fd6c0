"""Partitioned models (`partition_by=`): which partitions a build must recompute, and each
partition's window on its inputs.

A partition is a day (`2026-03-01`) or a month (`2026-03`) of the model's `partition_by`
column; rows whose column is null form the partition `__null__`. A build after the first
recomputes only the partitions whose input rows changed: for each input that changed since
the last build, the values of its event-time column in the files it gained, read from Delta's
per-file statistics (min, max, null count), so no data file is opened. An input without an
event-time column (a dimension table) that changed makes every partition stale: a full build.
`lookback=N` adds the N partitions before each stale one (late data). A partition's inputs are
filtered to its window on their event-time column; inputs without one are read whole.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from engine.errors import ConfigError, SchemaError
from engine.graph import TableRef
from engine.lake import Lake
from engine.lake.changes import changes
from engine.lake.partitions import NULL_PARTITION, PARTITION

GRAINS = ("day", "month")


@dataclass(frozen=True)
class Partitioning:
    """How a model's table is partitioned: by `column`'s day or month; `event_time` maps an
    input (parameter, or for SQL the table) to its own column when it is not named `column`."""

    column: str
    grain: str = "day"
    lookback: int = 0
    event_time: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.grain not in GRAINS:
            raise ConfigError(f"partition grain {self.grain!r} is not known", f"use one of {', '.join(GRAINS)}")
        if self.lookback < 0:
            raise ConfigError(f"lookback={self.lookback} is negative", "pass 0 or more partitions to rebuild")


def partitioning(label: str, partition_by: str | None, grain: str, lookback: int,
                 event_time: Mapping[str, str] | None, inputs: Iterable[str], materialized: str) -> Partitioning | None:
    """The Partitioning a model declares (None when it declares none), or a ConfigError naming
    model `label` and what is wrong."""
    if partition_by is None:
        if event_time or lookback:
            raise ConfigError(f"model {label!r}: event_time and lookback need partition_by",
                              "pass partition_by='<date or timestamp column>'")
        return None
    if materialized != "table":
        raise ConfigError(f"model {label!r}: partition_by works with materialized='table' only",
                          "a partitioned model replaces the partitions whose inputs changed: drop materialized=")
    stray = [k for k in (event_time or {}) if k not in set(inputs)]
    if stray:
        raise ConfigError(f"model {label!r}: event_time names {stray}, which are not inputs",
                          f"inputs are {sorted(inputs)}")
    try:
        return Partitioning(partition_by, grain, int(lookback), dict(event_time or {}))
    except ConfigError as exc:
        raise ConfigError(f"model {label!r}: {exc.message}", exc.hint) from None


# -- partition names and windows ---------------------------------------------------------------
def name_of(day: date, grain: str) -> str:
    """The partition that holds `day`."""
    return day.strftime("%Y-%m-%d" if grain == "day" else "%Y-%m")


def parse(text: str, grain: str) -> date:
    """The first day of the partition `text` names (`2026-03-01`, or `2026-03` by month); a
    ConfigError when it names none."""
    try:
        if grain == "month" and len(text) == 7:
            return datetime.strptime(text, "%Y-%m").date()
        day = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a date", "write dates as YYYY-MM-DD (YYYY-MM by month)") from None
    return day if grain == "day" else day.replace(day=1)


def following(day: date, grain: str) -> date:
    """The first day of the partition after the one starting on `day`."""
    if grain == "day":
        return day + timedelta(days=1)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def between(first: date, last: date, grain: str) -> list[str]:
    """Every partition from the one holding `first` to the one holding `last`."""
    if first > last:
        raise ConfigError(f"--from {first} is after --to {last}", "give the earlier date first")
    out, day = [], parse(name_of(first, grain), grain)
    while day <= last:
        out.append(name_of(day, grain))
        day = following(day, grain)
    return out


def with_lookback(partitions: Iterable[str], how: Partitioning) -> list[str]:
    """`partitions` and the `how.lookback` partitions before each."""
    out = set(partitions)
    for p in list(out):
        if p == NULL_PARTITION or not how.lookback:
            continue
        start = parse(p, how.grain)
        for _ in range(how.lookback):
            start = parse(name_of(start - timedelta(days=1), how.grain), how.grain)
            out.add(name_of(start, how.grain))
    return sorted(out)


def keys(values: pa.ChunkedArray | pa.Array, grain: str, model: str) -> pa.Array:
    """The partition of each value (a date or timestamp column), `__null__` for nulls."""
    kind = values.type
    if not (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        raise SchemaError(f"model {model!r}: partition column is {kind}, not a date or timestamp",
                          "partition by a date or timestamp column (cast it in the model)")
    text = pc.strftime(values, format="%Y-%m-%d" if grain == "day" else "%Y-%m")
    return pc.fill_null(text, NULL_PARTITION)


def with_partition_column(result: pa.Table, how: Partitioning, model: str,
                          only: Iterable[str] | None = None) -> pa.Table:
    """`result` with its `_hw_partition` column; with `only`, a SchemaError when a row falls in
    another partition (a partition's build must return that partition's rows only)."""
    if how.column not in result.column_names:
        raise SchemaError(f"model {model!r}: its output has no partition column {how.column!r}",
                          f"return {how.column!r}, or change partition_by (columns: {', '.join(result.column_names)})")
    part = keys(result.column(how.column), how.grain, model)
    if only is not None:
        allowed = pa.array(sorted(set(only)), pa.string())
        outside = pc.invert(pc.is_in(part, value_set=allowed))
        stray = pc.sum(outside).as_py() or 0
        if stray:
            example = pc.filter(part, outside)[0].as_py()
            raise SchemaError(f"model {model!r}: building partition(s) {', '.join(sorted(set(only)))} it returned "
                              f"{stray:,} row(s) of other partitions (e.g. {example})",
                              "return only rows inside the inputs' window (they are filtered to it)")
    names = [n for n in result.column_names if n != PARTITION]
    return result.select(names).append_column(PARTITION, part)


# -- which partitions are stale --------------------------------------------------------------
def input_column(how: Partitioning, param: str, ref: TableRef, schema: pa.Schema) -> str | None:
    """The event-time column of input `param` (None: it has none and is read whole)."""
    named = how.event_time.get(param) or how.event_time.get(str(ref))
    if named is not None:
        if named not in schema.names:
            raise SchemaError(f"event_time: input {param} ({ref}) has no column {named!r}",
                              f"its columns are {', '.join(schema.names)}")
        return named
    return how.column if how.column in schema.names else None


def stale(how: Partitioning, inputs: Mapping[str, TableRef], lake: Lake, since: Mapping[str, int],
          versions: Mapping[str, int]) -> tuple[list[str] | None, str]:
    """The partitions whose input rows changed from versions `since` to `versions`, with
    lookback, and why; None when every partition is stale (an input without an event-time
    column changed)."""
    found: set[str] = set()
    changed = []
    for param, ref in inputs.items():
        name = str(ref)
        if since.get(name) == versions[name]:
            continue
        changed.append(name)
        table = lake.table(name, versions[name])
        column = input_column(how, param, ref, pa.schema(table.schema().to_arrow()))
        if column is None:
            return None, f"input {name} changed and has no column {how.column!r}: every partition rebuilt"
        found |= _added_partitions(lake, name, since.get(name), versions[name], column, how.grain)
    partitions = with_lookback(found, how)
    shown = ", ".join(partitions[:4]) + (f" … ({len(partitions)})" if len(partitions) > 4 else "")
    return partitions, f"partitions {shown or 'none'}: {', '.join(changed) or 'nothing'} changed"


def _added_partitions(lake: Lake, name: str, since: int | None, version: int, column: str, grain: str) -> set[str]:
    """The partitions the rows added to `name` after `since` fall in, from the added files'
    statistics (the column itself where a file has none)."""
    added = changes(lake, name, since, version).dataset
    paths = {f.path for f in added.get_fragments()}
    base = added.filesystem.base_path.rstrip("/") + "/" if hasattr(added.filesystem, "base_path") else ""
    actions = pa.table(lake.table(name, version).get_add_actions(flatten=True))
    found: set[str] = set()
    unknown: list[str] = []
    have_stats = f"min.{column}" in actions.column_names
    for row in actions.to_pylist():
        path = row["path"]
        if path not in paths and base + path not in paths:
            continue
        low, high = (row.get(f"min.{column}"), row.get(f"max.{column}")) if have_stats else (None, None)
        if row.get(f"null_count.{column}"):
            found.add(NULL_PARTITION)
        if low is None or high is None:
            if row.get("num_records") and row.get(f"null_count.{column}") != row.get("num_records"):
                unknown.append(path)
            continue
        found.update(between(_day(low), _day(high), grain))
    if unknown:  # no statistics for the column: read it from those files
        values = added.to_table(columns=[column]).column(column)
        found.update(pc.unique(keys(values, grain, name)).to_pylist())
    return found


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def window_filter(column: str, field_type: pa.DataType, partition: str, grain: str) -> ds.Expression:
    """Rows of `column` (of type `field_type`) inside `partition`'s window."""
    target = ds.field(column)
    if partition == NULL_PARTITION:
        return target.is_null()
    start = parse(partition, grain)
    end = following(start, grain)
    if pa.types.is_timestamp(field_type):
        tz = field_type.tz
        low = pa.scalar(datetime(start.year, start.month, start.day), pa.timestamp("us")).cast(field_type) \
            if tz is None else pa.scalar(datetime(start.year, start.month, start.day), pa.timestamp("us", tz))
        high = pa.scalar(datetime(end.year, end.month, end.day), pa.timestamp("us")).cast(field_type) \
            if tz is None else pa.scalar(datetime(end.year, end.month, end.day), pa.timestamp("us", tz))
        return (target >= low) & (target < high)
    return (target >= pa.scalar(start, field_type)) & (target < pa.scalar(end, field_type))
