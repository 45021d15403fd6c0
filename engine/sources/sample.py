"""A file's schema, sampled from its first SAMPLE_BYTES (Parquet: its footer), for the schema plan."""
from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.load.quarantine import Quarantine
from engine.load.schema import widens
from engine.sources.parse import SAMPLE_BYTES, TextReader, text_blocks


def sample_schema(fmt: str, fh: Any, delimiter: str = ",",
                  declared: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """The schema of a file from its first SAMPLE_BYTES (Parquet: its footer); good lines only,
    read with the `declared` types.
    A column whose sampled parts disagree takes the type most of its values have (a widening
    joins the types it covers), so one odd row is quarantined rather than all the others."""
    if fmt == "parquet":
        return pq.read_schema(fh)
    sink = Quarantine("", "", None)  # type: ignore[arg-type]
    reader = TextReader(fmt, "", sink, dict(declared or {}), "evolve", set(), delimiter, SAMPLE_BYTES)
    reader._coerce = lambda table, block, first_line: table  # type: ignore[method-assign]  # infer only
    blocks = text_blocks(fh, SAMPLE_BYTES)
    first = next(blocks, None)
    if first is None:
        return pa.schema([])
    votes: dict[str, list[list[Any]]] = {}
    for table in reader.read(io.BytesIO(first[1])):
        for name, col in zip(table.column_names, table.columns):
            _vote(votes.setdefault(name, []), col.type, len(col) - col.null_count)
    if fmt == "csv":
        for name in reader.names:
            votes.setdefault(name, [])
    return pa.schema([(name, max(v, key=lambda c: c[1])[0] if v else pa.null()) for name, v in votes.items()])


def _vote(candidates: list[list[Any]], t: pa.DataType, values: int) -> None:
    """Count `values` for type `t` among `candidates` ([type, values] each, first seen first)."""
    if pa.types.is_null(t):
        return
    for candidate in candidates:
        if widens(candidate[0], t):
            candidate[0] = t
        elif not widens(t, candidate[0]):
            continue
        candidate[1] += values
        return
    candidates.append([t, values])
