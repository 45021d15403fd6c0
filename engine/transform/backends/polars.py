"""polars models, and SQL models on a GPU: polars LazyFrames over the lake's Parquet files,
collected by polars' streaming engine on a CPU or by cudf-polars on a GPU.

An input is a `scan_parquet` of its Delta files (the table's schema given, so columns added
after a file was written read as nulls), so polars pushes projections and filters into the
scan, and cudf-polars can read it on the GPU; a table whose files cannot be read alone
(partition values outside the files, an fsspec-only store) is scanned through its Arrow dataset
instead. SQL runs in `polars.SQLContext`, with the tables it names registered under flat names.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from engine.errors import HeadwaterError
from engine.transform.backends.base import checked_output
from engine.transform.models import Context, Model

log = logging.getLogger("headwater.transform")
POLARS_HINT = 'pip install "polars>=1.35"'
GPU_HINT = "pip install 'headwater[gpu]' (cudf-polars) on a machine with an NVIDIA GPU and driver"


class PolarsEngine:
    """Runs polars models, and SQL models in polars SQL: on a CPU (`gpu=False`, polars'
    streaming engine) or on a GPU with cudf-polars (`gpu=True`; with `dask_client`, across the
    GPUs of that Dask cluster). `raise_on_fail` makes a query cudf-polars cannot run on the GPU
    an error instead of a run on the CPU."""

    def __init__(self, gpu: bool = False, storage_options: dict[str, Any] | None = None,
                 dask_client: Any = None, raise_on_fail: bool = False) -> None:
        import polars  # lazily: a pipeline without polars models never needs it

        self.pl = self.xp = polars  # xp: what `ctx.xp` is for a polars model
        self.gpu = gpu
        self.name = "polars-gpu" if gpu else "polars"
        self.storage_options = {k.lower(): str(v) for k, v in (storage_options or {}).items()}
        self.dask_client = dask_client
        self.raise_on_fail = raise_on_fail
        self._engine: Any = None

    # -- inputs ---------------------------------------------------------------------------
    def scan(self, dataset: ds.Dataset) -> Any:
        """A LazyFrame of `dataset`'s rows (a Delta table's, or those added since a version)."""
        pl = self.pl
        schema = pl.from_arrow(dataset.schema.empty_table()).schema
        uris = file_uris(dataset)
        if uris is None:
            return pl.scan_pyarrow_dataset(dataset)
        if not uris:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(uris, schema=schema, missing_columns="insert", extra_columns="ignore",
                               hive_partitioning=False, storage_options=self.storage_options or None)

    def from_arrow(self, table: pa.Table) -> Any:
        """An Arrow table as a polars DataFrame (what a polars model's custom checks get)."""
        return self.pl.from_arrow(table)

    # -- running a model --------------------------------------------------------------------
    def run(self, model: Model, inputs: Mapping[str, ds.Dataset], ctx: Context | None = None) -> pa.Table:
        """The rows of `model` (SQL or polars) over `inputs` (input name -> its rows)."""
        frames: dict[str, Any] = {param: self.scan(dataset) for param, dataset in inputs.items()}
        if model.kind == "sql":
            from engine.transform.sql import flattened, references

            flat = {ref: f"__hw_{ref.zone}__{ref.name}" for ref in model.inputs.values()}
            context = self.pl.SQLContext({flat[model.inputs[p]]: lf for p, lf in frames.items()})
            query = flattened(model.sql, references(model.sql, f"SQL model {model.name!r}"), flat)
            return checked_output(model, self.collect(context.execute(query, eager=False)))
        if model.kind != "polars":
            raise TypeError(f"polars runs SQL and polars models; {model.name!r} is a {model.kind} model")
        for param, wanted in model.columns.items():  # columns=: the only columns the model sees
            frames[param] = frames[param].select(list(wanted))
        if ctx is not None:
            frames["ctx"] = ctx
        result = model(**frames)
        if isinstance(result, self.pl.DataFrame):
            return checked_output(model, result.to_arrow())
        if not isinstance(result, self.pl.LazyFrame):
            raise HeadwaterError(f"polars model {model.name!r} returned {type(result).__name__}, "
                                 "not a polars LazyFrame or DataFrame",
                                 "return the LazyFrame built from the model's inputs (or a DataFrame)")
        return checked_output(model, self.collect(result))

    def collect(self, frame: Any) -> pa.Table:
        """`frame` computed on this engine, as Arrow."""
        return frame.collect(engine=self.engine).to_arrow()

    @property
    def engine(self) -> Any:
        """What `LazyFrame.collect(engine=...)` gets: "streaming" on a CPU, a GPUEngine (or
        cudf-polars' DaskEngine on a Dask cluster) on a GPU."""
        if not self.gpu:
            return "streaming"
        if self._engine is None:
            if self.dask_client is not None:
                from cudf_polars.engine.dask import DaskEngine

                self._engine = DaskEngine(dask_client=self.dask_client,
                                          engine_options={"raise_on_fail": self.raise_on_fail})
            else:
                self._engine = self.pl.GPUEngine(executor="streaming", raise_on_fail=self.raise_on_fail)
        return self._engine

    def close(self) -> None:
        """Stop cudf-polars' Dask engine, when one was made (the Dask client stays its owner's)."""
        engine, self._engine = self._engine, None
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:
            shutdown()


def file_uris(dataset: ds.Dataset, local_only: bool = False) -> list[str] | None:
    """The URIs polars (or DuckDB, `local_only`) can scan `dataset`'s files at, or None when it
    cannot scan them alone: partition values kept outside the files, or a filesystem it does
    not reach (with `local_only`, any but the local disk)."""
    if not isinstance(dataset, ds.FileSystemDataset):
        return None
    fs = dataset.filesystem
    root = ""
    if isinstance(fs, pafs.SubTreeFileSystem):
        root, fs = fs.base_path.rstrip("/") + "/", fs.base_fs
    if isinstance(fs, pafs.LocalFileSystem):
        prefix = ""
    elif isinstance(fs, pafs.S3FileSystem) and not local_only:
        prefix = "s3://"
    else:
        return None
    if any("=" in path.rpartition("/")[0] for path in dataset.files):
        return None  # a partitioned table: its partition values are in the folder names, not the files
    # Not the fragments' partition expressions: deltalake puts each file's statistics there too,
    # so they are never trivial. A partitioned table's files never hold its partition columns;
    # a first file without every column of the table (partitioned, or written before a column
    # was added) is read through the Arrow dataset.
    first = next(iter(dataset.get_fragments()), None)
    if first is not None and not set(dataset.schema.names) <= set(first.physical_schema.names):
        return None
    return [prefix + root + path for path in dataset.files]
