"""Dask backend reads, on the 2-worker cluster of tests/transform/conftest.py: lazy, one partition per
Delta data file (per row group of a file of several), partition columns added back, the dtypes
the pandas backend gives, older files widened to the table's schema, a lake on S3 read by
workers that get only the run's storage options; results brought back partition by partition;
dask-cudf on a GPU machine (skipped here with the reason)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dask
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, WriterProperties, write_deltalake

import engine.transform.backends.dask as dask_backend
from engine import Config
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.transform.backends import resolve
from engine.transform.backends.dask import DaskBackend
from engine.transform.backends.pandas import PandasBackend
from tests.support.dask_cluster import by_id, events, write
from tests.support.s3 import S3Server

GPU_SKIP = "dask-cudf / dask-cuda not installed or no GPU: runs on the GPU machine"


@pytest.fixture
def backend(on_cluster: str) -> Iterator[DaskBackend]:
    chosen, reason = resolve("dask", config=Config.load(None))
    assert isinstance(chosen, DaskBackend) and on_cluster in reason and "2 workers" in reason
    yield chosen
    chosen.close()


@pytest.mark.parametrize("partition_by", [None, ["day", "shard"]], ids=["flat", "partitioned"])
def test_read_has_a_partition_per_file_and_equals_pandas(tmp_path: Path, backend: DaskBackend,
                                                          partition_by: list[str] | None) -> None:
    table = write(tmp_path / "t", events(), partition_by)
    files = len(table.file_uris())
    assert files >= (3 if partition_by is None else 6)  # three commits; each partition value a file
    frame = backend.read(table)
    assert frame.npartitions == files
    pandas = PandasBackend().read(table)
    assert frame.dtypes.to_dict() == pandas.dtypes.to_dict()  # n has nulls: float64; ok: object
    assert frame.compute().dtypes.to_dict() == pandas.dtypes.to_dict()
    out = backend.to_arrow(frame)
    assert out.schema == PandasBackend().to_arrow(pandas).schema
    assert by_id(out) == by_id(PandasBackend().to_arrow(pandas))
    assert by_id(out.select(["id", "day", "shard"])) == by_id(events().select(["id", "day", "shard"]))


@pytest.mark.parametrize("limit", [3, 7], ids=["a group each", "groups together"])
def test_a_file_of_several_row_groups_is_read_in_runs_of_groups(tmp_path: Path, backend: DaskBackend,
                                                               monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    # the lake's files are ~100 MB of row groups: a partition per file would be millions of rows,
    # a partition per row group leaves the partition size to whoever wrote the file
    monkeypatch.setattr(dask_backend, "PARTITION_ROWS", limit)
    write_deltalake(str(tmp_path / "t"), events(), writer_properties=WriterProperties(max_row_group_size=3))
    table = DeltaTable(str(tmp_path / "t"))
    meta = pq.ParquetFile(table.file_uris()[0]).metadata
    assert len(table.file_uris()) == 1 and meta.num_row_groups > 2
    frame = backend.read(table)
    sizes = [len(frame.get_partition(i).compute()) for i in range(frame.npartitions)]
    assert sum(sizes) == meta.num_rows and all(0 < n <= max(limit, 3) for n in sizes)
    # as few partitions as runs of whole groups allow: no two neighbours would fit in one
    assert all(a + b > limit for a, b in zip(sizes, sizes[1:]))
    assert by_id(backend.to_arrow(frame)) == by_id(PandasBackend().to_arrow(PandasBackend().read(table)))


def test_read_selects_columns_including_only_partition_columns(tmp_path: Path, backend: DaskBackend) -> None:
    table = write(tmp_path / "t", events(), ["day"])
    frame = backend.read(table, columns=["day", "id"])
    assert list(frame.columns) == ["day", "id"] and frame.npartitions == len(table.file_uris())
    assert by_id(backend.to_arrow(frame)) == by_id(events().select(["day", "id"]))
    days = backend.to_arrow(backend.read(table, columns=["day"])).column("day").to_pylist()
    assert Counter(days) == Counter(events().column("day").to_pylist())


def test_integer_column_without_nulls_stays_integer(tmp_path: Path, backend: DaskBackend) -> None:
    table = write(tmp_path / "t", events().filter(pc.is_valid(events()["n"])))
    frame = backend.read(table, columns=["id", "n"])
    assert str(frame.dtypes["n"]) == "int64" == str(PandasBackend().read(table)["n"].dtype)


def test_empty_table_reads_as_an_empty_frame(tmp_path: Path, backend: DaskBackend) -> None:
    write_deltalake(str(tmp_path / "t"), events().slice(0, 0))
    out = backend.to_arrow(backend.read(DeltaTable(str(tmp_path / "t"))))
    assert out.num_rows == 0 and out.schema.names == events().schema.names


def test_read_at_an_earlier_version(tmp_path: Path, backend: DaskBackend) -> None:
    write(tmp_path / "t", events())
    first = DeltaTable(str(tmp_path / "t"), version=0)
    frame = backend.read(first)
    assert frame.npartitions == 1 and len(frame.compute()) == 3


def test_to_arrow_takes_dask_or_pandas_results_with_pandas_index_rules(backend: DaskBackend) -> None:
    frame = backend.from_arrow(events())
    two = backend.to_arrow(frame.groupby(["day", "kind"]).size().rename("rows"))
    assert two.schema.names == ["day", "kind", "rows"] and sum(two.column("rows").to_pylist()) == 5
    filtered = backend.to_arrow(frame[frame["count"] > 6])
    assert filtered.schema.names == events().schema.names and filtered.num_rows == 2
    plain = backend.to_arrow(pd.DataFrame({"a": [1, 2]}))
    assert plain.to_pylist() == [{"a": 1}, {"a": 2}]
    with pytest.raises(HeadwaterError, match="not a dask DataFrame") as err:
        backend.to_arrow([1, 2])
    assert "ctx.xp" in (err.value.hint or "")


def test_to_arrow_brings_partitions_back_one_by_one_not_concatenated_on_a_worker(
        tmp_path: Path, backend: DaskBackend) -> None:
    # dask's own compute() concatenates every partition on one worker first: a result larger than
    # a worker's memory limit would get that worker killed though each partition fits
    from distributed import get_task_stream

    table = write(tmp_path / "t", events())
    frame = backend.read(table)
    assert frame.npartitions == 3
    with get_task_stream(backend.cluster.client) as stream:
        out = backend.to_arrow(frame[frame["id"] > 1])
    ran = {str(task["key"][0] if isinstance(task["key"], tuple) else task["key"]) for task in stream.data}
    assert ran and not [k for k in ran if "repartition" in k or "concat" in k], ran
    assert by_id(out) == by_id(PandasBackend().to_arrow(PandasBackend().read(table)))[1:]


def test_files_written_before_a_column_was_added_read_it_as_nulls(tmp_path: Path, backend: DaskBackend) -> None:
    write_deltalake(str(tmp_path / "t"), events().select(["id", "kind"]).slice(0, 4))
    write_deltalake(str(tmp_path / "t"), events().select(["id", "kind", "count"]).slice(4), mode="append",
                    schema_mode="merge")
    table = DeltaTable(str(tmp_path / "t"))
    frame = backend.read(table)
    pandas = PandasBackend().read(table)
    assert frame.npartitions == 2 and str(frame.dtypes["count"]) == str(pandas.dtypes["count"]) == "float64"
    assert by_id(backend.to_arrow(frame)) == by_id(PandasBackend().to_arrow(pandas))
    assert [r["count"] for r in by_id(backend.to_arrow(frame))] == [None] * 4 + [5.0, 6.0, 7.0, 8.0]



def test_workers_read_a_lake_on_s3_with_the_runs_storage_options(
        s3_server: S3Server, s3_bucket: str, on_cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in s3_server.env().items():  # here only: the workers started without them
        monkeypatch.setenv(var, value)
    lake = Lake(f"s3://{s3_bucket}/lake")
    for i, part in enumerate((events().slice(0, 5), events().slice(5))):
        lake.land("raw.events", part.to_batches(), run_id=f"r{i}", state={})
    table = lake.table("raw.events", lake.version("raw.events"))
    backend, _ = resolve("dask", lake.storage_options, Config.load(None))
    try:
        frame = backend.read(table, columns=["id", "kind", "n"])
        assert frame.npartitions == len(table.file_uris()) == 2
        workers = backend.cluster.client.run(lambda: __import__("os").environ.get("AWS_ENDPOINT_URL"))
        assert set(workers.values()) == {None}  # so the options travelled with the read tasks
        assert by_id(backend.to_arrow(frame)) == by_id(events().select(["id", "kind", "n"]))
    finally:
        backend.close()


@pytest.mark.gpu
def test_dask_cudf_reads_cudf_partitions_per_file(tmp_path: Path) -> None:
    pytest.importorskip("dask_cudf", reason=GPU_SKIP)
    import cudf

    table = write(tmp_path / "t", events(), ["day"])
    backend, _ = resolve("dask-cudf")
    try:
        frame = backend.read(table)
        assert frame.npartitions == len(table.file_uris())
        assert isinstance(frame._meta, cudf.DataFrame)
        assert dask.config.get("dataframe.backend") == "cudf"
        assert by_id(backend.to_arrow(frame).select(["id", "n", "day"])) == by_id(events().select(["id", "n", "day"]))
    finally:
        backend.close()
    assert dask.config.get("dataframe.backend") == "pandas"

