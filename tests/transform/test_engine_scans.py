"""How the SQL and polars engines read lake tables: DuckDB's and polars' own Parquet readers over
a Delta table's files where the files hold every column (deltalake's datasets put each file's
statistics into its fragment's partition expression, which once sent every table through the
slow Arrow-dataset scans), the Arrow dataset where they do not (partitioned tables, a column
added after the first file). Values are checked against rows written here, not against
another engine."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable, write_deltalake

from engine import sql_model
from engine.lake.storage import arrow_dataset
from engine.transform.backends import duckdb as duck
from engine.transform.backends.duckdb import DuckDBEngine
from engine.transform.backends.polars import PolarsEngine, file_uris

polars = pytest.importorskip("polars")
SUM = sql_model("sums", "select p, sum(x) as total, count(y) as ys from raw.t group by p order by p")


def dataset(path: Path) -> ds.Dataset:
    return arrow_dataset(DeltaTable(str(path)))


def sums(engine: DuckDBEngine | PolarsEngine, data: ds.Dataset) -> list[dict]:
    return engine.run(SUM, {"raw.t": data}).sort_by("p").to_pylist()


def duck_view(data: ds.Dataset) -> str:
    import duckdb

    con = duckdb.connect()
    try:
        DuckDBEngine().scan(con, "t", data)
        sql = con.execute("select sql from duckdb_views() where view_name = 't'").fetchall()[0][0]
        return "read_parquet" if "read_parquet(" in sql else "registered"
    finally:
        con.close()


def test_plain_tables_are_read_by_the_engines_own_parquet_readers(tmp_path: Path) -> None:
    for part in range(2):  # two files, each with statistics in its fragment's expression
        write_deltalake(str(tmp_path / "t"), pa.table({"p": ["a", "b"], "x": [1 + part, 10], "y": [None, "q"]}),
                        mode="append")
    data = dataset(tmp_path / "t")
    assert len(data.files) == 2 and file_uris(data) == [str(tmp_path / "t" / f) for f in data.files]
    assert duck_view(data) == "read_parquet"
    assert "PYTHON SCAN" not in PolarsEngine().scan(data).explain()
    expected = [{"p": "a", "total": 3, "ys": 0}, {"p": "b", "total": 20, "ys": 2}]
    assert sums(DuckDBEngine(), data) == expected
    assert [{**r, "ys": int(r["ys"])} for r in sums(PolarsEngine(), data)] == expected


def test_partition_values_outside_the_files_go_through_the_arrow_dataset(tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "t"), pa.table({"p": ["a", "b", "b"], "x": [1, 2, 3], "y": ["u", None, "w"]}),
                    partition_by=["p"])
    data = dataset(tmp_path / "t")
    assert file_uris(data) is None and duck_view(data) == "registered"
    expected = [{"p": "a", "total": 1, "ys": 1}, {"p": "b", "total": 5, "ys": 1}]
    assert sums(DuckDBEngine(), data) == expected
    assert [{**r, "ys": int(r["ys"])} for r in sums(PolarsEngine(), data)] == expected


def test_a_column_added_after_a_file_was_written_reads_as_null_there(tmp_path: Path) -> None:
    """Whichever file the dataset lists first (the Parquet readers when it holds every column,
    else the Arrow dataset), the older file's rows have no `y`."""
    write_deltalake(str(tmp_path / "t"), pa.table({"p": ["a"], "x": [1]}))
    write_deltalake(str(tmp_path / "t"), pa.table({"p": ["a"], "x": [2], "y": ["v"]}), mode="append",
                    schema_mode="merge")
    data = dataset(tmp_path / "t")
    first_has_y = "y" in next(iter(data.get_fragments())).physical_schema.names
    assert duck_view(data) == ("read_parquet" if first_has_y else "registered")
    assert sums(DuckDBEngine(), data) == [{"p": "a", "total": 3, "ys": 1}]
    assert [{**r, "ys": int(r["ys"])} for r in sums(PolarsEngine(), data)] == [{"p": "a", "total": 3, "ys": 1}]


def test_duckdb_falls_back_to_the_arrow_dataset_when_its_reader_cannot_bind(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Files that hold fewer columns than the dataset (here: a plain dataset with a column that
    no file has) make DuckDB's view fail to bind; the Arrow dataset is registered instead."""
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"p": ["a"], "x": [4]}), tmp_path / "f.parquet")
    schema = pa.schema([("p", pa.string()), ("x", pa.int64()), ("y", pa.string())])
    data = ds.dataset(str(tmp_path / "f.parquet"), schema=schema)
    monkeypatch.setattr(duck, "file_uris", lambda d, local_only=False: [str(tmp_path / "f.parquet")])
    assert duck_view(data) == "registered"
    assert sums(DuckDBEngine(), data) == [{"p": "a", "total": 4, "ys": 0}]
