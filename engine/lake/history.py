"""History tables (write="scd2"): their columns, the spec of a load, the hash that tells a
row's versions apart, and the versions valid at a time. The load itself is engine/lake/scd2.py.

A history table holds a source's columns and load columns plus `_hw_valid_from`, `_hw_valid_to`
(null while the version is current) and `_hw_row_hash`. A version is valid at t when
valid_from <= t < valid_to (or it has no valid_to): `valid_at`, which `headwater show --as-of`
and `engine.transform.features.as_of_history` follow.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

VALID_FROM, VALID_TO, ROW_HASH = "_hw_valid_from", "_hw_valid_to", "_hw_row_hash"
TIME = pa.timestamp("us", tz="UTC")
HISTORY_FIELDS = (pa.field(VALID_FROM, TIME), pa.field(VALID_TO, TIME), pa.field(ROW_HASH, pa.string()))
LOAD_PREFIX = "_hw_"  # columns Headwater adds: never tracked
HardDeletes = Literal["ignore", "invalidate"]
HARD_DELETES: tuple[HardDeletes, ...] = get_args(HardDeletes)


@dataclass(frozen=True)
class History:
    """How a load keeps history: the key, the load's time, the tracked columns (None: all but
    the `_hw_` ones), the cursor that stamps versions (None: the load's time stamps them), and
    what happens to keys a full extract no longer has."""

    key: list[str]
    loaded_at: datetime
    track: list[str] | None = None
    cursor: str | None = None
    hard_deletes: HardDeletes = "invalidate"


def history_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with the history columns it lacks added at the end."""
    return pa.schema(list(schema) + [f for f in HISTORY_FIELDS if f.name not in schema.names])


def valid_at(when: datetime) -> ds.Expression:
    """The rows of a history table valid at `when`: valid_from <= when < valid_to (or no valid_to)."""
    at = pa.scalar(when, TIME)
    return (ds.field(VALID_FROM) <= at) & (ds.field(VALID_TO).is_null() | (ds.field(VALID_TO) > at))


def tracked(schema: pa.Schema, history: History) -> list[str]:
    """The columns whose values make a new version."""
    return list(history.track) if history.track is not None else \
        [n for n in schema.names if not n.lower().startswith(LOAD_PREFIX)]


def row_hash(table: pa.Table | pa.RecordBatch, columns: list[str]) -> pa.Array:
    """A hash (32 hex digits) of each row's values in `columns`, the same for the same values in
    any column order, on any machine and version: a null adds nothing, so a column added to the
    table (null in old rows) does not change old rows' hashes."""
    pieces = []
    for name in sorted(columns):
        text = _text(table.column(name))
        # name, length, value and an end mark, or nothing at all for a null
        piece = pc.binary_join_element_wise(name, pc.cast(pc.binary_length(text), pa.string()), text, "", "\x1f")
        pieces.append(pc.fill_null(piece, ""))
    joined = pc.binary_join_element_wise(*pieces, "") if pieces else pa.array([""] * table.num_rows)
    values = pc.cast(joined, pa.binary()).to_pylist()
    return pa.array([hashlib.blake2b(v, digest_size=16).hexdigest() for v in values], pa.string())


def _text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each value of `column` as text that tells values apart (null stays null)."""
    t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t):  # exact, and fast
        return pc.cast(pc.cast(column, pa.int64() if not pa.types.is_date32(t) else pa.int32()), pa.string())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t) \
            or pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(column, pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()], pa.string())
    return pa.array([None if v is None else json.dumps(v, default=str, sort_keys=True)
                     for v in column.to_pylist()], pa.string())
