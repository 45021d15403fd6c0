"""Equality of ELT-H outputs across engines: same rows, same values (floats to a relative 1e-9),
compared after sorting on each output's key, column by column by name."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from bench.elt_h.queries import KEYS, OUTPUTS
from engine.errors import HeadwaterError
from engine.runs import compare

RTOL = compare.FLOAT_RTOL


def read_outputs(warehouse: Path) -> dict[str, pa.Table]:
    """The three model outputs of one engine's DuckDB warehouse file."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {name: con.sql(f'SELECT * FROM "{name}"').to_arrow_table() for name in OUTPUTS}
    finally:
        con.close()


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string_view(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_timestamp(col.type):
        return col.cast(pa.date32())  # a date that went through a datetime column
    return col


def differences(name: str, a: pa.Table, b: pa.Table) -> list[str]:
    """How output `name` of one engine (`b`) differs from another's (`a`), sorted on its key:
    empty when equal (see `engine.runs.compare.differences`)."""
    a, b = _normalised(a), _normalised(b)
    return [f"{name}: {d}" for d in compare.differences(a, b, rtol=RTOL, keys=KEYS[name])]


def _normalised(table: pa.Table) -> pa.Table:
    return pa.table({n: _plain(table.column(n)) for n in table.column_names})


def check_equal(warehouses: dict[str, Path]) -> dict[str, int]:
    """Raise HeadwaterError unless every engine's outputs equal the first engine's; the rows of
    each output."""
    engines = list(warehouses)
    reference = read_outputs(warehouses[engines[0]])
    problems = []
    for engine in engines[1:]:
        other = read_outputs(warehouses[engine])
        for name in OUTPUTS:
            problems += [f"{engine} vs {engines[0]}: {d}" for d in differences(name, reference[name], other[name])]
    if problems:
        raise HeadwaterError("ELT-H outputs differ across engines, so no time is recorded: "
                             + "; ".join(problems[:10]),
                             "fix the engine or query that disagrees (see bench/elt_h/queries.py)")
    return {name: reference[name].num_rows for name in OUTPUTS}
