"""The Dask backends: models receive lazy dask DataFrames with one partition per run of up to
`PARTITION_ROWS` rows of a lake data file's row groups (a file that small is one partition),
run on dask's local scheduler or a cluster (see `engine.transform.backends.dask_cluster`).

`dask` partitions are pandas frames; `dask-cudf` partitions are cuDF frames (dask's
`dataframe.backend = "cudf"`). Each partition is row groups of one data file read through the same filesystem
and the same Delta-aware Arrow dataset as the pandas backend (partition values added back,
columns added after a file was written read as nulls), so a partition holds exactly the rows and types
the pandas backend would give for that file.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from engine.errors import ConfigError
from engine.lake.storage import arrow_dataset, table_filesystem
from engine.transform.backends.cudf import arrow_only
from engine.transform.backends.dask_cluster import Cluster

if TYPE_CHECKING:
    from engine.config import Config

DASK_HINT = 'pip install "headwater[dask]"'
DASK_CUDF_HINT = ('pip install "headwater[dask,gpu]" on a machine with an NVIDIA GPU and driver '
                  "(dask-cudf and dask-cuda come with the gpu extra)")
PARTITION_ROWS = 1 << 20  # rows a partition holds at most, unless one row group alone is bigger


def _local(frames: str) -> Any:
    """The in-memory backend whose frames make up the partitions: pandas or cuDF."""
    if frames == "cudf":
        from engine.transform.backends.cudf import CudfBackend

        return CudfBackend()
    from engine.transform.backends.pandas import PandasBackend

    return PandasBackend()


@dataclass(frozen=True)
class FileReader:
    """Reads one row group (or the whole of a file of one) of a Delta table's data file as one
    partition (sent to the workers, so it holds only picklable settings and opens the filesystem
    where it runs)."""

    table_uri: str
    storage_options: dict[str, Any]
    schema: pa.Schema  # the table's whole schema: partition expressions refer to any column
    file_format: ds.FileFormat  # delta-rs' Parquet settings for the table
    columns: list[str]
    frames: str  # "pandas" | "cudf"
    dtypes: dict[str, str]  # pandas only: columns whose dtype depends on nulls elsewhere in the table

    def __call__(self, part: tuple[str, pc.Expression, list[int] | None]) -> Any:
        path, partition, row_groups = part
        fs = table_filesystem(self.table_uri, self.storage_options)
        fragment = self.file_format.make_fragment(path, filesystem=fs, partition_expression=partition,
                                                  row_groups=row_groups)
        one = ds.FileSystemDataset([fragment], self.schema, self.file_format, fs)
        frame = _local(self.frames).from_arrow(one.to_table(columns=self.columns))
        return frame.astype(self.dtypes) if self.dtypes else frame


class DaskBackend:
    """Models receive `dask.dataframe.DataFrame`s partitioned by the lake's files; `ctx.xp` is
    `dask.dataframe`. Results are computed on the cluster (or dask's local scheduler)."""

    name = "dask"
    frames = "pandas"
    # Dask settings while the backend lives: collections keep their frames' dtypes (pandas 3
    # strings stay `str`; dask would make them `string[pyarrow]`, whose NA behaves unlike pandas').
    # Set for the process, not per read: dask.config.set is not thread-safe to enter and leave.
    settings: dict[str, Any] = {"dataframe.convert-string": False}

    def __init__(self, storage_options: dict[str, Any] | None = None, address: str | None = None,
                 cluster: str | None = None) -> None:
        try:
            import dask
            import dask.dataframe as dd  # lazily: importing this module must work without dask
        except ImportError as exc:
            raise ConfigError(f"backend {self.name!r} needs dask, which is not installed ({exc})",
                              DASK_HINT) from exc
        self._check_installed()
        self.xp: ModuleType = dd
        self.storage_options = dict(storage_options or {})
        self.local = _local(self.frames)
        self._previous = {key: dask.config.get(key, None) for key in self.settings}
        dask.config.set(self.settings)
        try:
            self.cluster = Cluster(address, cluster)
        except BaseException:
            dask.config.set(self._previous)
            raise

    def _check_installed(self) -> None:
        """Raise HeadwaterError when a package this backend needs beyond dask is missing."""

    def describe(self) -> str:
        """Where the work runs, in words."""
        return self.cluster.describe()

    def read(self, table: DeltaTable, columns: list[str] | None = None) -> Any:
        """The table as a lazy dask DataFrame, one partition per run of a data file's row groups
        holding up to `PARTITION_ROWS` rows (a bigger row group is a partition by itself).

        Not one per file: the lake's files are about 100 MB compressed (millions of rows),
        which as one pandas frame can take a few GB of a worker's memory. Not one per row group
        either: row group sizes are the writer's choice (the lake's parallel writer makes ~64 MB
        ones), and at SF10 twice as many partitions made ELT-H's shuffling models 3× slower."""
        if arrow_only(table):  # deletion vectors, column mapping: the files alone are not the rows
            frame = self.local.read(table, columns)
            return self.xp.from_pandas(frame, npartitions=max(1, len(table.file_uris())))
        dataset = arrow_dataset(table, self.storage_options)
        names = list(columns) if columns is not None else dataset.schema.names
        files = [(f.path, f.partition_expression, groups) for f in dataset.get_fragments()
                 for groups in _row_groups(f)]
        meta = self.local.from_arrow(pa.schema([dataset.schema.field(n) for n in names]).empty_table())
        if not files:
            return self.xp.from_pandas(meta, npartitions=1)
        dtypes = self._dtypes(table, dataset, names)
        reader = FileReader(table.table_uri, self.storage_options, dataset.schema, dataset.format,
                            names, self.frames, dtypes)
        return self.xp.from_map(reader, files, meta=meta.astype(dtypes) if dtypes else meta,
                                label="headwater-read", enforce_metadata=False)

    def from_arrow(self, table: pa.Table) -> Any:
        return self.xp.from_pandas(self.local.from_arrow(table), npartitions=1)

    def to_arrow(self, frame: Any) -> pa.Table:
        """Computes a dask frame or series (a plain in-memory frame is taken as it is) and returns
        it as Arrow, with the index rules of the in-memory backend."""
        from dask import is_dask_collection

        if isinstance(frame, (self.xp.DataFrame, self.xp.Series)):
            parts = self.cluster.partitions(frame)  # concatenated here, not on one worker
            frame = parts[0] if len(parts) == 1 else self.local.xp.concat(parts)
        elif is_dask_collection(frame):
            frame = self.cluster.compute(frame)
        elif not isinstance(frame, (self.local.xp.DataFrame, self.local.xp.Series)):
            raise ConfigError(f"a model returned {type(frame).__name__}, not a dask DataFrame",
                              "return a DataFrame built with ctx.xp (dask.dataframe) from the model function")
        return self.local.to_arrow(frame)

    def close(self) -> None:
        """Disconnect from the cluster, stop it if this backend started it, and put dask's
        settings back as they were."""
        import dask

        self.cluster.close()
        dask.config.set(self._previous)

    def _dtypes(self, table: DeltaTable, dataset: ds.Dataset, names: list[str]) -> dict[str, str]:
        """Columns whose pandas dtype depends on nulls anywhere in the table (an integer column
        with a null is float64, a boolean one object, as in `pyarrow.Table.to_pandas` of the
        whole table), so that every partition gets the dtype the pandas backend would give."""
        if self.frames != "pandas":
            return {}  # cuDF columns are nullable: no dtype depends on the data
        fields = [dataset.schema.field(n) for n in names]
        suspects = [f for f in fields if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)]
        if not suspects:
            return {}
        stats = pa.table(table.get_add_actions(flatten=True))
        return {f.name: ("object" if pa.types.is_boolean(f.type) else "float64")
                for f in suspects if _has_nulls(f.name, stats, dataset)}


def _row_groups(fragment: ds.Fragment) -> list[list[int] | None]:
    """The row groups of a Parquet file to read as partitions, in runs of consecutive groups of
    at most `PARTITION_ROWS` rows (from its footer), or `[None]`: the whole file as one partition
    (when it fits, or for a format without row groups)."""
    if not isinstance(fragment, ds.ParquetFileFragment):
        return [None]
    fragment.ensure_complete_metadata()
    parts: list[list[int] | None] = []
    rows = 0
    for group in fragment.row_groups:
        if not parts or rows + group.num_rows > PARTITION_ROWS:
            parts.append([])
            rows = 0
        run = parts[-1]
        assert run is not None  # only lists are appended above
        run.append(group.id)
        rows += group.num_rows
    return parts if len(parts) > 1 else [None]


def _has_nulls(column: str, stats: pa.Table, dataset: ds.Dataset) -> bool:
    """True when some row of the table has a null in `column`: from the Delta log's per-file
    null counts (or partition values) when every file has them, else by reading the column
    until a null turns up. Not with an `is_null` filter: delta-rs' dataset prunes files
    written before the column was added (their statistics say `col >= null`), missing their nulls."""
    for name in (f"partition.{column}", f"null_count.{column}"):
        if name in stats.column_names:
            counts = stats.column(name)
            if name.startswith("partition."):
                return counts.null_count > 0
            if counts.null_count == 0:
                return bool(pc.max(counts).as_py())
    return any(batch.column(0).null_count for batch in dataset.to_batches(columns=[column]))


class DaskCudfBackend(DaskBackend):
    """Models receive dask DataFrames whose partitions are `cudf.DataFrame`s (dask's
    `dataframe.backend = "cudf"`), on a cluster of GPUs (dask-cuda) or one GPU."""

    name = "dask-cudf"
    frames = "cudf"
    settings = {**DaskBackend.settings, "dataframe.backend": "cudf"}  # user-made collections too

    def _check_installed(self) -> None:
        try:
            import dask_cudf  # noqa: F401 - registers the "cudf" dataframe backend with dask
        except ImportError as exc:
            raise ConfigError(f"backend 'dask-cudf' needs dask-cudf, which is not installed ({exc})",
                              DASK_CUDF_HINT) from exc


def make(name: str, storage_options: dict[str, Any] | None, config: Config | None) -> DaskBackend:
    """The `dask` or `dask-cudf` backend, connected as `config` says (address, cluster)."""
    address = config.dask_address if config else None
    cluster = config.dask_cluster if config else None
    kind = DaskCudfBackend if name == "dask-cudf" else DaskBackend
    return kind(storage_options, address, cluster)


def cluster_address(config: Config) -> str | None:
    """The scheduler address of the cluster that `config` names (`dask_address`), or None when
    there is none to connect to; what a Prefect flow hands `DaskTaskRunner(address=...)`."""
    return config.dask_address or None


def task_runner_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for `prefect_dask.DaskTaskRunner` that run tasks where `config` says:
    on the cluster at `dask_address`, on a new `LocalCluster` / `LocalCUDACluster`
    (`dask_cluster`), or, with neither, `{}` (DaskTaskRunner's own temporary local cluster)."""
    from engine.transform.backends.dask_cluster import CLUSTER_CLASSES

    if config.dask_address:
        return {"address": config.dask_address}
    if config.dask_cluster:
        return {"cluster_class": CLUSTER_CLASSES[config.dask_cluster]}
    return {}
