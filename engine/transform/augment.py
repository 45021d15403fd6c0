"""Training-set augmentation: simulate missing data by setting a seeded random share of cells to null.

The cells to drop are drawn on the host with numpy's seeded Generator from (seed, column name,
row position) alone, so the same call drops the same cells on pandas, cuDF and Dask (whatever the
partitioning), and a column's cells do not depend on which other columns are named. Rows are
drawn in blocks of `BLOCK` from independent streams, so any slice of rows can be drawn on its own.
"""
from __future__ import annotations

import numbers
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import HeadwaterError
from engine.transform.frames import frame_module, require_columns

BLOCK = 1 << 16  # rows per independently seeded stream


def drop_cells(df: Any, frac: float, columns: Sequence[str] | None = None, seed: int = 0) -> Any:
    """A copy of `df` in which about `frac` of the cells of `columns` (default: all) are null.

    Each cell is dropped with probability `frac`, independently; cells already null stay null and
    other columns are untouched. The same `seed` drops the same cells on every backend. On pandas,
    integer and boolean columns named become nullable (`Int64`, `boolean`) so a null fits without
    turning them into floats or objects; on cuDF every column already holds nulls.
    """
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0.0 <= float(frac) <= 1.0:
        raise HeadwaterError(f"drop_cells: frac must be a number from 0 to 1, got {frac!r}",
                             "pass the share of cells to set to null, e.g. frac=0.1")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise HeadwaterError(f"drop_cells: seed must be a non-negative integer, got {seed!r}",
                             "pass seed=0, 1, 2, …")
    module = frame_module(df)
    names = list(df.columns) if columns is None else [columns] if isinstance(columns, str) else list(columns)
    require_columns(df, names, "drop_cells: the frame")
    if module.__name__ == "dask.dataframe":
        return _drop_partitions(df, float(frac), names, int(seed))
    return _drop_rows(df, float(frac), names, int(seed), 0)


def cell_mask(seed: int, column: str, start: int, rows: int, frac: float) -> np.ndarray:
    """Which of the rows `start .. start + rows - 1` of `column` drop_cells sets to null."""
    if rows <= 0:
        return np.zeros(0, dtype=bool)
    stream = zlib.crc32(str(column).encode())
    first, last = start // BLOCK, (start + rows - 1) // BLOCK
    draws = np.concatenate([np.random.default_rng([seed, stream, block]).random(BLOCK)
                            for block in range(first, last + 1)])
    offset = start - first * BLOCK
    return draws[offset:offset + rows] < frac


def _drop_rows(frame: Any, frac: float, columns: list[str], seed: int, start: int) -> Any:
    """`frame`, whose first row is row `start` of the whole frame, with its drawn cells set to null."""
    pandas = frame_module(frame).__name__ == "pandas"
    new = {}
    for name in columns:
        col = _nullable(frame[name]) if pandas else frame[name]
        new[name] = col.where(~cell_mask(seed, name, start, len(frame), frac))  # by position, not index
    return frame.assign(**new)


def _nullable(col: Any) -> Any:
    """A pandas column in a dtype that holds a null as itself (numpy ints and bools become nullable)."""
    kind = getattr(col.dtype, "kind", "")
    if not isinstance(col.dtype, np.dtype) or kind not in "iub":
        return col
    if kind == "b":
        return col.astype("boolean")
    return col.astype(col.dtype.name.replace("uint", "UInt").replace("int", "Int"))


def _drop_partitions(ddf: Any, frac: float, columns: list[str], seed: int) -> Any:
    """drop_cells on a Dask frame: each partition draws the rows it holds, by global row position
    (the partition lengths are computed first, to know where each starts)."""
    import dask
    import dask.dataframe as dd

    lengths = ddf.map_partitions(len).compute().tolist()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
    meta = _drop_rows(ddf._meta, frac, columns, seed, 0)
    parts = [dask.delayed(_drop_rows)(part, frac, columns, seed, start)
             for part, start in zip(ddf.to_delayed(), starts)]
    return dd.from_delayed(parts, meta=meta, divisions=ddf.divisions)
