"""Comparing two tables value for value, ignoring row order (backend equality, reproduction,
the benchmarks' cross-engine check)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FLOAT_RTOL = 1e-9  # relative tolerance for floats: backends may sum in a different order


def differences(left: pa.Table, right: pa.Table, rtol: float = FLOAT_RTOL,
                keys: Sequence[str] | None = None) -> list[str]:
    """What differs between `left` and `right` (empty when equal): columns, row counts, then per
    column the differing values, after sorting both by `keys` (default: every column). Floats
    compare within `rtol` (a float column compares with an integer one as floats); NaN equals
    NaN and null equals null; integers of any width compare by value."""
    if sorted(left.column_names) != sorted(right.column_names):
        return [f"columns differ: {sorted(left.column_names)} vs {sorted(right.column_names)}"]
    if left.num_rows != right.num_rows:
        return [f"row counts differ: {left.num_rows:,} vs {right.num_rows:,}"]
    names = sorted(left.column_names)
    a, b = _sorted(left.select(names), keys), _sorted(right.select(names), keys)
    out: list[str] = []
    for name in names:
        x, y = a.column(name), b.column(name)
        bad = _unequal(x, y, rtol)
        if bad is None:
            out.append(f"{name}: type {x.type} vs {y.type}")
        elif bad.any():
            i = int(np.argmax(bad))
            out.append(f"{name}: {int(bad.sum()):,} value(s) differ, first at sorted row {i}: "
                       f"{x[i].as_py()!r} != {y[i].as_py()!r}")
    return out


def _sorted(table: pa.Table, keys: Sequence[str] | None) -> pa.Table:
    """Rows ordered by `keys`, or by every sortable column, exact columns before floats (a float
    that differs within tolerance must not reorder rows); nested columns ride along."""
    if keys is None:
        sortable = [f for f in table.schema if not (pa.types.is_nested(f.type) or pa.types.is_dictionary(f.type))]
        keys = [f.name for f in sorted(sortable, key=lambda f: pa.types.is_floating(f.type))]
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


def _unequal(x: pa.ChunkedArray, y: pa.ChunkedArray, rtol: float) -> np.ndarray | None:
    """A mask of the rows where `x` and `y` differ; None when their types cannot be compared."""
    if pa.types.is_floating(x.type) or pa.types.is_floating(y.type):
        if not all(pa.types.is_floating(t) or pa.types.is_integer(t) for t in (x.type, y.type)):
            return None
        xs, ys = (c.cast(pa.float64()).to_numpy() for c in (x, y))
        return ~np.isclose(xs, ys, rtol=rtol, atol=rtol, equal_nan=True)
    if pa.types.is_integer(x.type) and pa.types.is_integer(y.type):
        x, y = x.cast(pa.int64()), y.cast(pa.int64())
    elif x.type != y.type:
        return None
    if pa.types.is_nested(x.type):  # no vectorised equality for lists and structs
        return np.array([not _same(p, q, rtol) for p, q in zip(x.to_pylist(), y.to_pylist())], dtype=bool)
    equal = pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    both_null = (pc.is_null(x).to_numpy(zero_copy_only=False) & pc.is_null(y).to_numpy(zero_copy_only=False))
    return ~(equal | both_null)


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
