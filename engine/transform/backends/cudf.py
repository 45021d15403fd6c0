"""The GPU backend: cuDF frames decoded on the GPU straight from the lake's Parquet files."""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from engine.errors import HeadwaterError
from engine.lake.storage import arrow_dataset, fsspec_options
from engine.transform.backends.pandas import plain_index

log = logging.getLogger("headwater.transform")

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
        self.warned: set[str] = set()  # tables already said to be read through Arrow

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
            frame = self._read_files(table.table_uri, uris, in_files)
            if frame is None:
                return self._read_arrow(table, columns)
        else:
            assert actions is not None  # read above whenever no column comes from the files
            frame = cudf.DataFrame(index=cudf.RangeIndex(pc.sum(actions["num_records"]).as_py() or 0))
        if partitions:
            assert actions is not None  # read above whenever a partition column is asked for
            struct = actions.column("partition").combine_chunks()
            values = dict(zip([f.name for f in struct.type], struct.flatten()))
            repeats = actions.column("num_records").to_numpy()
            for col in partitions:  # one value per file, repeated over that file's rows (files keep order)
                per_file = cudf.Series.from_arrow(values[col])
                frame[col] = per_file.repeat(repeats).reset_index(drop=True)
        return _as_delta_types(frame[names], schema, cudf)

    def _read_files(self, table_uri: str, uris: list[str], columns: list[str]) -> Any:
        """`columns` of the data files, decoded on the GPU in file order; None when cuDF cannot
        read the files as one: their Parquet schemas differ where it matters (a column added
        after some files were written; older files from a writer that laid a decimal or a map
        out differently)."""
        try:
            frame = self.xp.read_parquet(
                uris, columns=columns, storage_options=self._options(uris[0]),
                dataset_kwargs={"partitioning": None},  # no hive discovery: it would regroup files
                allow_mismatched_pq_schemas=True)  # two writers' root names and layouts differ
        except (RuntimeError, ValueError, IndexError) as exc:  # libcudf's schema checks
            if "CUDA" in str(exc):  # libcudf raises RuntimeError for both: only the text tells
                raise  # the device failed, not the files
            self._warn_arrow(table_uri, f"{len(uris)} files cuDF cannot read as one ({exc})")
            return None
        if any(c not in frame.columns for c in columns):  # missing from the first file: dropped
            self._warn_arrow(table_uri, "some of its files lack columns the others have")
            return None
        return frame

    def _warn_arrow(self, table_uri: str, why: str) -> None:
        """Say once per table that it is read through Arrow, and why."""
        if table_uri not in self.warned:
            self.warned.add(table_uri)
            log.warning("cuDF reads %s through Arrow (slower, same rows): %s; a table rebuilt "
                        "in full (--full-refresh) has files of one layout", table_uri, why)

    def share(self, frame: Any, columns: list[str] | None = None) -> Any:
        """A deep copy of `columns` (None: all) of `frame` for one of the models that read it:
        whatever a model changes in place stays its own, and a copy on the device is far cheaper
        than decoding the Parquet files again."""
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
        return dates_restored(frame.to_arrow(preserve_index=False))

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


def dates_restored(table: pa.Table) -> pa.Table:
    """`table` with its tz-naive `timestamp[s]` columns that hold whole days only turned back
    into `date32`. cuDF has no date type and reads dates as `datetime64[s]` (the lake's
    timestamps are microseconds), so without this a model passing a date through would write a
    timestamp on the GPU and a date on pandas. A column with a time of day stays a timestamp."""
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if field.type == pa.timestamp("s") and pc.all(
                pc.equal(pc.floor_temporal(col, unit="day"), col)).as_py() is not False:
            table = table.set_column(i, field.name, col.cast(pa.date32()))
    return table


def _as_delta_types(frame: Any, schema: pa.Schema, cudf: ModuleType) -> Any:
    """`frame`, read from Parquet on the GPU, with the types `from_arrow` gives the same
    columns: the Delta schema's time zone on tz-aware timestamps (cuDF's Parquet reader returns
    UTC instants as naive) and its precision on decimals (the reader gives the widest its
    storage allows: 9, 18 or 38 digits)."""
    for field in schema:
        if field.name not in frame.columns:
            continue
        col = frame[field.name]
        if pa.types.is_timestamp(field.type) and field.type.tz:
            if getattr(col.dtype, "tz", None) is None:
                col = col.dt.tz_localize("UTC")  # Delta stores tz-aware timestamps as UTC instants
            if str(col.dtype.tz) != field.type.tz:
                col = col.dt.tz_convert(field.type.tz)
            frame[field.name] = col
        elif pa.types.is_decimal(field.type):
            want = cudf.Decimal128Dtype.from_arrow(field.type)
            if col.dtype != want:
                frame[field.name] = col.astype(want)
    return frame
