"""The GPU backend: cuDF frames decoded on the GPU straight from the lake's Parquet files."""
from __future__ import annotations

from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from engine.backends.pandas import plain_index
from engine.errors import HeadwaterError
from engine.storage import arrow_dataset, fsspec_options

# Reader features that change what a Parquet file's rows mean: the files alone are not the table.
ARROW_ONLY_FEATURES = {"deletionVectors", "columnMapping", "typeWidening"}

def arrow_only(table: DeltaTable) -> str | None:
    """Why the table's Parquet files cannot be read on their own, or None when they can."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ()) & ARROW_ONLY_FEATURES
    if features:
        return f"reader features {sorted(features)}"
    if table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        return "column mapping"
    return None


class CudfBackend:
    """Models receive `cudf.DataFrame`s; needs an NVIDIA GPU and the `cudf` package."""

    name = "cudf"

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        import cudf  # lazily: importing this module must work without cuDF

        self.xp: ModuleType = cudf
        self.storage_options = dict(storage_options or {})

    def read(self, table: DeltaTable, columns: list[str] | None = None) -> Any:
        uris = table.file_uris()
        if not uris or arrow_only(table):
            return self._read_arrow(table, columns)
        schema = pa.schema(table.schema().to_arrow())
        names = list(columns) if columns is not None else schema.names
        partitioned = set(table.metadata().partition_columns)
        partitions = [c for c in names if c in partitioned]
        in_files = [c for c in names if c not in partitioned]
        actions = pa.table(table.get_add_actions(flatten=False)) if partitions or not in_files else None
        if actions is not None and not _rows_per_file(actions, uris):
            return self._read_arrow(table, columns)  # cannot line partition values up with rows
        cudf = self.xp
        if in_files:
            frame = cudf.read_parquet(uris, columns=in_files, storage_options=self._options(uris[0]))
        else:
            frame = cudf.DataFrame(index=cudf.RangeIndex(pc.sum(actions["num_records"]).as_py() or 0))
        if partitions:
            struct = actions.column("partition").combine_chunks()
            values = dict(zip([f.name for f in struct.type], struct.flatten()))
            repeats = actions.column("num_records").to_numpy()
            for col in partitions:  # one value per file, repeated over that file's rows (files keep order)
                per_file = cudf.Series.from_arrow(values[col])
                frame[col] = per_file.repeat(repeats).reset_index(drop=True)
        return _with_timezones(frame[names], schema)

    def share(self, frame: Any, columns: list[str] | None = None) -> Any:
        """A copy of `columns` (None: all) of `frame` for one of the models that read it: cuDF
        changes columns in place (no copy-on-write by default), so each model gets its own,
        copied on the device (far cheaper than decoding the Parquet files again)."""
        return (frame if columns is None else frame[columns]).copy(deep=True)

    def from_arrow(self, table: pa.Table) -> Any:
        return self.xp.DataFrame.from_arrow(table)

    def to_arrow(self, frame: Any) -> pa.Table:
        if isinstance(frame, self.xp.Series):
            frame = frame.to_frame()
        if not isinstance(frame, self.xp.DataFrame):
            raise HeadwaterError(f"a model returned {type(frame).__name__}, not a cudf DataFrame",
                                 "return a DataFrame built with ctx.xp (cudf) from the model function")
        if not plain_index(frame):
            frame = frame.reset_index()
        return frame.to_arrow(preserve_index=False)

    def _read_arrow(self, table: DeltaTable, columns: list[str] | None) -> Any:
        return self.from_arrow(arrow_dataset(table, self.storage_options).to_table(columns=columns))

    def _options(self, uri: str) -> dict[str, Any] | None:
        if "://" not in uri or uri.startswith("file://"):
            return None
        return fsspec_options(self.storage_options) or None


def _rows_per_file(actions: pa.Table, uris: list[str]) -> bool:
    """True when the add actions give every file's row count, in the order of `uris`."""
    paths = actions.column("path").to_pylist()
    return actions.column("num_records").null_count == 0 and len(paths) == len(uris) and all(
        p.rsplit("/", 1)[-1] == u.rsplit("/", 1)[-1] for p, u in zip(paths, uris))


def _with_timezones(frame: Any, schema: pa.Schema) -> Any:
    """`frame` with the Delta schema's time zone on every tz-aware timestamp column (cuDF's
    Parquet reader returns UTC-adjusted timestamps as naive)."""
    for field in schema:
        if field.name in frame.columns and pa.types.is_timestamp(field.type) and field.type.tz:
            col = frame[field.name]
            if getattr(col.dtype, "tz", None) is None:
                col = col.dt.tz_localize("UTC")  # Delta stores tz-aware timestamps as UTC instants
            if str(col.dtype.tz) != field.type.tz:
                col = col.dt.tz_convert(field.type.tz)
            frame[field.name] = col
    return frame
