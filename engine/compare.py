"""Comparing two tables value for value, ignoring row order (backend equality, reproduction)."""
from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

FLOAT_RTOL = 1e-9  # relative tolerance for floats: backends may sum in a different order


def differences(left: pa.Table, right: pa.Table, rtol: float = FLOAT_RTOL, limit: int = 5) -> list[str]:
    """What differs between `left` and `right` (empty when equal): columns, row counts, then up
    to `limit` differing rows, after sorting both by every column. Floats compare within
    `rtol`; NaN equals NaN and null equals null."""
    if sorted(left.column_names) != sorted(right.column_names):
        return [f"columns differ: {sorted(left.column_names)} vs {sorted(right.column_names)}"]
    if left.num_rows != right.num_rows:
        return [f"row counts differ: {left.num_rows:,} vs {right.num_rows:,}"]
    names = sorted(left.column_names)
    a, b = _sorted(left.select(names)), _sorted(right.select(names))
    out: list[str] = []
    for name in names:
        for i, (x, y) in enumerate(zip(a.column(name).to_pylist(), b.column(name).to_pylist())):
            if not _same(x, y, rtol):
                out.append(f"{name} row {i}: {x!r} != {y!r}")
                if len(out) >= limit:
                    return out
    return out


def _sorted(table: pa.Table) -> pa.Table:
    """Rows ordered by every sortable column, exact columns before floats (a float that differs
    within tolerance must not reorder rows); nested columns ride along."""
    sortable = [f for f in table.schema if not (pa.types.is_nested(f.type) or pa.types.is_dictionary(f.type))]
    keys = [(f.name, "ascending") for f in sorted(sortable, key=lambda f: pa.types.is_floating(f.type))]
    return table.sort_by(keys) if keys else table


def _same(x: Any, y: Any, rtol: float) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=rtol, abs_tol=rtol)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k], rtol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(p, q, rtol) for p, q in zip(x, y))
    return x == y
