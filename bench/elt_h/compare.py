"""Equality of ELT-H outputs across engines: same rows, same values (floats to a relative 1e-9),
compared after sorting on each output's key, column by column by name."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.elt_h.queries import KEYS, OUTPUTS
from engine.errors import HeadwaterError

RTOL = 1e-9


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
    """How table `b` differs from `a` (empty when equal): columns, row count, then values."""
    if sorted(a.column_names) != sorted(b.column_names):
        return [f"{name}: columns {sorted(a.column_names)} != {sorted(b.column_names)}"]
    if a.num_rows != b.num_rows:
        return [f"{name}: {a.num_rows} rows != {b.num_rows} rows"]
    order = [(k, "ascending") for k in KEYS[name]]
    a, b = a.sort_by(order), b.sort_by(order)
    out = []
    for column in a.column_names:
        x, y = _plain(a.column(column)), _plain(b.column(column))
        if pa.types.is_floating(x.type) or pa.types.is_floating(y.type):
            xs, ys = x.to_numpy().astype("float64"), y.to_numpy().astype("float64")
            bad = ~np.isclose(xs, ys, rtol=RTOL, atol=0.0, equal_nan=True)
        elif (pa.types.is_integer(x.type) and pa.types.is_integer(y.type)) or x.type == y.type:
            bad = ~pc.fill_null(pc.equal(x.cast(pa.int64()) if pa.types.is_integer(x.type) else x,
                                         y.cast(pa.int64()) if pa.types.is_integer(y.type) else y),
                                False).to_numpy(zero_copy_only=False)
            bad &= ~(pc.is_null(x).to_numpy(zero_copy_only=False) & pc.is_null(y).to_numpy(zero_copy_only=False))
        else:
            out.append(f"{name}.{column}: type {x.type} != {y.type}")
            continue
        if bad.any():
            i = int(np.argmax(bad))
            out.append(f"{name}.{column}: {int(bad.sum())} value(s) differ, first at sorted row {i}: "
                       f"{x[i].as_py()!r} != {y[i].as_py()!r}")
    return out


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
