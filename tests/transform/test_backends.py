"""Backends: Delta tables in, frames out, Arrow back; and how `auto` picks one.

The round-trip tests run on both backends; the cuDF ones skip here (no GPU, no cuDF) and run
unchanged on a GPU machine with cuDF installed.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.errors import HeadwaterError
from engine.lake import delta_schema
from engine.transform.backends import Backend, detect, gpu_info, resolve
from engine.transform.backends.pandas import PandasBackend

GPU_SKIP = "cuDF not installed / no GPU: runs on the GPU machine"
HAS_CUDF = importlib.util.find_spec("cudf") is not None


def make_backend(name: str) -> Backend:
    if name == "cudf":
        pytest.importorskip("cudf", reason=GPU_SKIP)
        from engine.transform.backends.cudf import CudfBackend

        return CudfBackend()
    return PandasBackend()


@pytest.fixture(params=["pandas", pytest.param("cudf", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)


def events() -> pa.Table:
    return pa.table({
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "kind": ["like", None, "view", "like", "é ü/x"],
        "n": pa.array([10, None, 30, 40, None], pa.int64()),
        "amount": [1.5, None, 2.25, -3.0, 1e-9],
        "at": pa.array([1_700_000_000_123_456, None, 0, -1, 2**40], pa.timestamp("us")),
        "at_utc": pa.array([1_700_000_000_654_321, 5, None, 7, 8], pa.timestamp("us", tz="UTC")),
        "day": ["2024-01-01", "2024-01-01", "2024-01-02", None, "2024-01-02"],
        "shard": pa.array([0, 1, 0, 1, None], pa.int32()),
    })


def write(path: Path, table: pa.Table, partition_by: list[str] | None = None) -> DeltaTable:
    write_deltalake(str(path), table.slice(0, 3), partition_by=partition_by)
    write_deltalake(str(path), table.slice(3), mode="append", partition_by=partition_by)
    return DeltaTable(str(path))


def as_stored(result: pa.Table, table: DeltaTable) -> pa.Table:
    """`result` cast to the Delta table's storage types, rows sorted by id (row order is not a contract)."""
    schema = delta_schema(pa.schema(table.schema().to_arrow()))
    fields = [schema.field(n) for n in result.schema.names]
    cast = pa.table([result.column(f.name).cast(f.type) for f in fields], schema=pa.schema(fields))
    return cast.sort_by("id") if "id" in cast.schema.names else cast


@pytest.mark.parametrize("partition_by", [None, ["day", "shard"]], ids=["flat", "partitioned"])
def test_read_round_trips_values_types_nulls_and_partitions(
        tmp_path: Path, backend: Backend, partition_by: list[str] | None) -> None:
    table = write(tmp_path / "t", events(), partition_by)
    out = backend.to_arrow(backend.read(table))
    assert out.schema.names == pa.schema(table.schema().to_arrow()).names
    assert out.schema.field("at").type == pa.timestamp("us")
    assert out.schema.field("at_utc").type == pa.timestamp("us", tz="UTC")
    assert as_stored(out, table).to_pylist() == events().sort_by("id").to_pylist()


def test_read_selects_columns_in_the_order_asked(tmp_path: Path, backend: Backend) -> None:
    table = write(tmp_path / "t", events(), ["day", "shard"])
    out = backend.to_arrow(backend.read(table, columns=["shard", "id", "kind"]))
    assert out.schema.names == ["shard", "id", "kind"]
    assert sorted(as_stored(out, table).to_pylist(), key=lambda r: r["id"]) == [
        {"shard": r["shard"], "id": r["id"], "kind": r["kind"]} for r in events().to_pylist()]


def test_read_only_partition_columns(tmp_path: Path, backend: Backend) -> None:
    table = write(tmp_path / "t", events(), ["day"])
    out = backend.to_arrow(backend.read(table, columns=["day"]))
    expected = events().column("day").to_pylist()
    assert sorted(out.column("day").to_pylist(), key=str) == sorted(expected, key=str)


def test_empty_table_reads_as_an_empty_frame(tmp_path: Path, backend: Backend) -> None:
    table = write(tmp_path / "t", events().slice(0, 0))
    out = backend.to_arrow(backend.read(table))
    assert out.num_rows == 0 and "kind" in out.schema.names


def test_from_arrow_to_arrow_keeps_rows(backend: Backend) -> None:
    data = events()
    out = backend.to_arrow(backend.from_arrow(data))
    schema = delta_schema(data.schema)
    back = pa.table([out.column(f.name).cast(f.type) for f in schema], schema=schema)
    assert back.to_pylist() == data.to_pylist()


def test_named_and_multi_index_results_become_columns(tmp_path: Path, backend: Backend) -> None:
    frame = backend.read(write(tmp_path / "t", events(), ["day"]))
    by_kind = backend.to_arrow(frame.groupby("kind")["amount"].sum())
    assert by_kind.schema.names == ["kind", "amount"]
    assert dict(zip(*by_kind.sort_by("kind").to_pydict().values())) == {
        "like": pytest.approx(-1.5), "view": pytest.approx(2.25), "é ü/x": pytest.approx(1e-9)}
    two = backend.to_arrow(frame.groupby(["day", "kind"]).size().rename("rows"))
    assert two.schema.names == ["day", "kind", "rows"]
    assert sum(two.column("rows").to_pylist()) == 3  # rows with a null key are dropped, as in pandas
    positive = backend.to_arrow(frame[frame.amount > 0])
    assert positive.num_rows == 3 and set(events().schema.names) <= set(positive.schema.names)


@pytest.mark.parametrize("result", [42, None, [1, 2], {"a": [1]}], ids=["int", "none", "list", "dict"])
def test_non_frame_results_raise_a_headwater_error(backend: Backend, result: Any) -> None:
    with pytest.raises(HeadwaterError, match="not a .*DataFrame"):
        backend.to_arrow(result)


@pytest.mark.gpu
def test_cudf_refuses_a_pandas_frame() -> None:
    backend = make_backend("cudf")
    with pytest.raises(HeadwaterError, match="not a cudf DataFrame"):
        backend.to_arrow(events().to_pandas())


def test_lake_files_are_read_directly_unless_the_protocol_forbids_it(tmp_path: Path) -> None:
    from engine.transform.backends.cudf import arrow_only  # plain Python: runs without cuDF

    table = write(tmp_path / "t", events(), ["day"])
    assert "timestampNtz" in (table.protocol().reader_features or [])  # allowed: files stay readable
    assert arrow_only(table) is None  # so the cuDF tests above exercise the direct Parquet read


def test_rows_keep_their_partition_values_over_interleaved_appends(tmp_path: Path, backend: Backend) -> None:
    """Appends that alternate partition values leave the files of one value apart in the log;
    every row must still get its own file's value (cuDF's own hive discovery would regroup the
    files by value while the values are laid out in log order)."""
    path = str(tmp_path / "t")
    days = ["a", "b", "b", "a", "a", "b", "a", "b"]
    for i, day in enumerate(days):
        write_deltalake(path, pa.table({"id": [10 * i, 10 * i + 1], "day": [day, day]}),
                        mode="append", partition_by=["day"])
    out = backend.to_arrow(backend.read(DeltaTable(path)))
    assert sorted(zip(out.column("id").to_pylist(), out.column("day").to_pylist())) == sorted(
        (10 * i + k, day) for i, day in enumerate(days) for k in (0, 1))


def test_a_table_written_by_both_lake_writers_reads_whole(tmp_path: Path, backend: Backend) -> None:
    """The lake's own writer (pyarrow) and delta-rs' (a later added column) store the same
    table differently: root names, decimal encodings, a column missing from older files."""
    from engine.lake import Lake

    lake = Lake(str(tmp_path / "lake"))
    first = pa.table({"id": pa.array([1, 2], pa.int64()),
                      "price": pa.array([None, Decimal("2.50")], pa.decimal128(10, 2))})
    lake.write("m.t", first, run_id="r1", meta={})
    later = first.append_column("note", pa.array(["x", None])).set_column(
        0, "id", pa.array([3, 4], pa.int64()))
    write_deltalake(lake.uri("m.t"), later, mode="append", schema_mode="merge")
    table = lake.table("m.t")
    assert len({pq.read_metadata(u.removeprefix("file://")).created_by.split(" ")[0]
                for u in table.file_uris()}) == 2  # both writers' files
    out = backend.to_arrow(backend.read(table))
    expected = lake.read("m.t").sort_by("id")
    assert out.schema.names == expected.schema.names
    assert as_stored(out, table).to_pylist() == expected.to_pylist()


@pytest.mark.gpu
def test_cudf_reads_both_writers_files_on_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of the two writers with the same columns (decimals, lists, times) are decoded by
    cuDF in one go: the Arrow fallback must not be needed."""
    from engine.lake import Lake

    backend = make_backend("cudf")
    lake = Lake(str(tmp_path / "lake"))
    rows = pa.table({"id": pa.array([1, 2], pa.int64()), "kind": ["a", None],
                     "price": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2)),
                     "tags": [[1, 2], None], "at": pa.array([5, None], pa.timestamp("us"))})
    lake.write("m.t", rows, run_id="r1", meta={})
    write_deltalake(lake.uri("m.t"), rows.set_column(0, "id", pa.array([3, 4], pa.int64())), mode="append")

    def no_fallback(*args: Any) -> None:
        raise AssertionError("read through Arrow")

    monkeypatch.setattr(backend, "_read_arrow", no_fallback)
    table = lake.table("m.t")
    out = backend.to_arrow(backend.read(table))
    assert as_stored(out, table).to_pylist() == lake.read("m.t").sort_by("id").to_pylist()


def test_a_date_passed_through_stays_a_date(tmp_path: Path, backend: Backend) -> None:
    """cuDF reads dates as datetime64[s]; what a model hands back is a date again, as on pandas."""
    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"id": [1, 2], "d": pa.array([19000, None], pa.date32())}))
    frame = backend.read(DeltaTable(path))
    out = backend.to_arrow(frame[["id", "d"]])
    assert out.schema.field("d").type == pa.date32()
    assert out.column("d").to_pylist() == DeltaTable(path).to_pyarrow_table().column("d").to_pylist()


def test_dates_restored_only_where_whole_days_are_in_seconds() -> None:
    from engine.transform.backends.cudf import dates_restored  # plain pyarrow: runs without cuDF

    day = dt.datetime(2024, 5, 1)
    table = pa.table({
        "d": pa.array([day, None], pa.timestamp("s")),  # how cuDF hands back a date: a date again
        "late": pa.array([day, day + dt.timedelta(hours=3)], pa.timestamp("s")),  # a time of day
        "lake": pa.array([day, day], pa.timestamp("us")),  # the lake's own timestamps
        "aware": pa.array([day, day], pa.timestamp("s", tz="UTC")),
        "none": pa.array([None, None], pa.timestamp("s")),  # nothing says otherwise: a date
    })
    out = dates_restored(table)
    assert [f.type for f in out.schema] == [pa.date32(), pa.timestamp("s"), pa.timestamp("us"),
                                            pa.timestamp("s", tz="UTC"), pa.date32()]
    assert out.column("d").to_pylist() == [day.date(), None]
    assert out.column("late").equals(table.column("late"))


def test_lake_storage_options_become_fsspec_options() -> None:
    from engine.transform.backends.cudf import fsspec_options

    assert fsspec_options({"AWS_ACCESS_KEY_ID": "k", "aws_secret_access_key": "s",
                           "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu",
                           "AWS_ALLOW_HTTP": "true", "anon": False}) == {
        "key": "k", "secret": "s", "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu"}, "anon": False}


# --- choosing a backend -------------------------------------------------------------------------

no_gpu_here = pytest.mark.skipif(HAS_CUDF, reason="cuDF is installed: auto picks it; see the gpu tests")


@pytest.fixture
def fresh_log() -> None:
    detect._logged.clear()  # "once per process": forget what earlier tests logged


def test_pandas_is_pandas() -> None:
    backend, reason = resolve("pandas")
    assert backend.name == "pandas" and "asked" in reason


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(HeadwaterError, match="unknown backend 'spark'"):
        resolve("spark")


@no_gpu_here
def test_auto_falls_back_to_pandas_and_says_why(fresh_log: None) -> None:
    backend, reason = resolve("auto")
    assert backend.name == "pandas"
    assert "no usable GPU" in reason and ("nvidia-ml-py" in reason or "NVML" in reason)
    assert "pandas" in reason


@no_gpu_here
def test_auto_fallback_is_logged_once_per_process(fresh_log: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="headwater")
    _, first = resolve("auto")
    _, second = resolve("auto", {"AWS_REGION": "x"})
    assert first == second
    mine = [r for r in caplog.records if r.name == "headwater.transform" and r.getMessage() == first]
    assert len(mine) == 1
    assert mine[0].levelno == logging.INFO  # no GPU here: nothing to warn about


@no_gpu_here
def test_forcing_cudf_without_gpu_or_cudf_is_an_error_with_a_hint() -> None:
    with pytest.raises(HeadwaterError) as err:
        resolve("cudf")
    assert "cuDF is not installed" in err.value.message
    assert err.value.hint and "headwater[gpu]" in err.value.hint and "pandas" in err.value.hint


@no_gpu_here
def test_gpu_info_reports_the_error() -> None:
    info = gpu_info()
    assert info["count"] == 0 and info["error"]


@pytest.mark.gpu
def test_auto_picks_cudf_on_a_gpu_machine() -> None:
    pytest.importorskip("cudf", reason=GPU_SKIP)
    info = gpu_info()
    assert info["count"] >= 1, info
    backend, reason = resolve("auto")
    assert backend.name == "cudf" and info["names"][0] in reason
    forced, _ = resolve("cudf")
    assert forced.name == "cudf"


def test_a_shared_frame_is_the_models_own(backend: Backend, tmp_path: Path) -> None:
    """`share` (engine/transform/reads.py) hands each model a frame it may change without changing the
    frame the run keeps for the other models that read the same table."""
    frame = backend.read(write(tmp_path / "t", events()))
    before = backend.to_arrow(frame)
    mine = backend.share(frame, ["id", "amount"])
    assert list(mine.columns) == ["id", "amount"]
    mine.iloc[0:2, 1] = -1.0
    mine["extra"] = 1
    whole = backend.share(frame)
    whole.iloc[0:2, 0] = 99
    assert backend.to_arrow(frame).equals(before)
    assert backend.to_arrow(mine).column("amount").to_pylist()[:2] == [-1.0, -1.0]
    assert backend.to_arrow(whole).column("id").to_pylist()[:2] == [99, 99]
