"""What every backend-neutral frame helper needs: which DataFrame module a frame belongs to, and
clear errors for missing columns."""
from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from engine.errors import HeadwaterError


def frame_module(frame: Any) -> ModuleType:
    """The DataFrame module (`pandas`, `cudf` or `dask.dataframe`) a frame belongs to."""
    root = type(frame).__module__.split(".")[0]
    if root == "pandas":
        import pandas

        return pandas
    if root == "cudf":
        import cudf

        return cudf
    if root in ("dask", "dask_expr", "dask_cudf"):
        import dask.dataframe

        return dask.dataframe
    raise HeadwaterError(f"expected a pandas, cuDF or Dask DataFrame, got {type(frame).__name__}",
                         "pass the model's input frame (or one built with ctx.xp)")


def require_columns(frame: Any, columns: Iterable[str], what: str) -> None:
    """Raise a HeadwaterError naming the columns of `columns` that `frame` (called `what`) lacks."""
    have = list(frame.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise HeadwaterError(f"{what} has no column {', '.join(map(repr, missing))}",
                             f"its columns are {have}")
