"""The protocols every backend implements: Arrow in, Arrow out, frames (or SQL) in between.

A `Backend` runs pandas-API models (pandas, cuDF, Dask); an `Engine` runs SQL and polars
models over the lake's Arrow datasets (DuckDB, polars, cudf-polars).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from engine.errors import SchemaError

if TYPE_CHECKING:
    from engine.transform.models import Context, Model


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


@runtime_checkable
class Engine(Protocol):
    """Runs a SQL or polars model on its inputs' Arrow datasets (scanned lazily) into Arrow."""

    name: str  # "duckdb" | "polars" | "polars-gpu"

    def run(self, model: Model, inputs: Mapping[str, ds.Dataset], ctx: Context | None = None) -> pa.Table:
        """The model's output over `inputs` (input name -> its rows for this build)."""
        ...


def checked_output(model: Model, table: pa.Table) -> pa.Table:
    """`table` unless its column names would not make a lake table: a SchemaError naming the
    empty or repeated names."""
    names = table.column_names
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if empty or repeated:
        what = "; ".join(filter(None, [f"column(s) {empty} have no name" if empty else "",
                                       f"{repeated} appear more than once" if repeated else ""]))
        raise SchemaError(f"model {model.name!r}: its output's {what}",
                          "give every output column a unique name (select … as <name>)")
    return table
