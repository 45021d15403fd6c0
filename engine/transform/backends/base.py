"""The small protocol every backend implements: Arrow in, Arrow out, frames in between."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
from deltalake import DeltaTable


@runtime_checkable
class Backend(Protocol):
    """Turns lake tables into the frames user models take, and model results back into Arrow."""

    name: str  # "pandas" | "cudf" | "dask" | "dask-cudf"
    xp: ModuleType  # the DataFrame library user code may use: pandas, cudf or dask.dataframe

    def read(self, table: DeltaTable, columns: list[str] | None = None) -> Any:
        """The rows of a Delta table (at the version it was opened at) as a frame."""
        ...

    def from_arrow(self, table: pa.Table) -> Any:
        """An Arrow table as a frame."""
        ...

    def to_arrow(self, frame: Any) -> pa.Table:
        """A model's result as Arrow; a named or multi-level index becomes columns."""
        ...

    # Optional, on eager backends (pandas, cuDF): `share(frame, columns)` returns a frame of
    # `columns` (None: all) of a frame several models of a run read (`engine.transform.reads`), which the
    # model may change without changing `frame`.
