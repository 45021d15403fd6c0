"""The CPU backend: pandas frames from the lake's Parquet files through an Arrow dataset."""
from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from engine.errors import HeadwaterError
from engine.lake.storage import arrow_dataset


def plain_index(frame: Any) -> bool:
    """True when the frame's index carries no data: unnamed and one level (a filtered frame's
    leftover row labels are dropped; a named or multi-level index becomes columns)."""
    return frame.index.name is None and frame.index.nlevels == 1


class PandasBackend:
    """Models receive `pandas.DataFrame`s."""

    name = "pandas"
    xp = pd

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})

    def read(self, table: DeltaTable, columns: list[str] | None = None) -> pd.DataFrame:
        return self.from_arrow(arrow_dataset(table, self.storage_options).to_table(columns=columns))

    def share(self, frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
        """A frame of `columns` (None: all) of `frame` for one of the models that read it: a new
        object without copying data (pandas' copy-on-write copies a column when it is changed)."""
        return frame.copy(deep=False) if columns is None else frame[columns]

    def from_arrow(self, table: pa.Table) -> pd.DataFrame:
        return table.to_pandas()

    def to_arrow(self, frame: Any) -> pa.Table:
        if isinstance(frame, pd.Series):
            frame = frame.to_frame()
        if not isinstance(frame, pd.DataFrame):
            raise HeadwaterError(f"a model returned {type(frame).__name__}, not a pandas DataFrame",
                                 "return a DataFrame from the model function")
        if not plain_index(frame):
            frame = frame.reset_index()
        return pa.Table.from_pandas(frame, preserve_index=False)
