"""engine.publish against real DuckDB and SQLite files: types, replace, bookkeeping,
atomicity, lake views and name checks."""
from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable, write_deltalake

from engine.errors import HeadwaterError
from engine.lake.storage import arrow_dataset
from engine.publish import BOOKKEEPING, Warehouse, connect
from engine.publish.duckdb import DuckDBWarehouse
from engine.publish.generic import GenericWarehouse

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(params=["duckdb", "sqlite"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    url = f"duckdb:///{tmp_path}/wh.duckdb" if request.param == "duckdb" else f"sqlite:///{tmp_path}/wh.sqlite"
    warehouse = connect(url)
    yield warehouse
    warehouse.dispose()


def every_type() -> pa.Table:
    return pa.table({
        "i8": pa.array([1, -2, None], pa.int8()),
        "i32": pa.array([2**31 - 1, 0, None], pa.int32()),
        "i64": pa.array([-(2**62), 0, 2**62], pa.int64()),  # ORDER BY key
        "f": pa.array([1.5, float("nan"), None], pa.float64()),
        "b": pa.array([True, False, None]),
        "s": pa.array(["héllo", "日本語 🚀", None]),
        "ts_tz": pa.array([datetime(2024, 3, 1, 12, 30, tzinfo=PARIS), None,
                           datetime(2024, 7, 1, 0, 0, 0, 123456, tzinfo=PARIS)], pa.timestamp("us", "Europe/Paris")),
        "ts": pa.array([datetime(2024, 3, 1, 12, 30), datetime(1999, 12, 31, 23, 59, 59), None], pa.timestamp("us")),
        "d": pa.array([date(2024, 2, 29), None, date(1970, 1, 1)], pa.date32()),
        "dec": pa.array([Decimal("12345678.91"), Decimal("-0.05"), None], pa.decimal128(10, 2)),
        "l": pa.array([[1, 2], [], None], pa.list_(pa.int64())),
        "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
    })


def read_back(wh: Warehouse, name: str) -> list[dict]:
    """Rows as a client of that database gets them: DuckDB through query(), SQLite through
    SQLAlchemy with the reflected column types (so bools, dates and decimals come back typed)."""
    if wh.dialect == "duckdb":
        return wh.query(f"SELECT * FROM {name} ORDER BY i64").to_pylist()
    table = sa.Table(name, sa.MetaData(), autoload_with=wh.engine)
    with wh.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.i64))]


def test_every_mapped_type_round_trips(wh: Warehouse) -> None:
    assert wh.publish("typed", every_type(), lake_version=1, run_id="r1") == 3
    rows = read_back(wh, "typed")
    assert [r["i8"] for r in rows] == [1, -2, None]
    assert [r["i32"] for r in rows] == [2**31 - 1, 0, None]
    assert [r["i64"] for r in rows] == [-(2**62), 0, 2**62]
    assert rows[0]["f"] == 1.5 and rows[2]["f"] is None
    if wh.dialect == "duckdb":
        assert math.isnan(rows[1]["f"])  # NaN and NULL stay distinct
    else:
        assert rows[1]["f"] is None  # SQLite stores NaN as NULL
    assert [r["b"] for r in rows] == [True, False, None]
    assert [r["s"] for r in rows] == ["héllo", "日本語 🚀", None]
    assert [r["cat"] for r in rows] == ["a", "b", "a"]
    assert [r["d"] for r in rows] == [date(2024, 2, 29), None, date(1970, 1, 1)]
    assert [r["dec"] for r in rows] == [Decimal("12345678.91"), Decimal("-0.05"), None]
    assert [r["ts"] for r in rows] == [datetime(2024, 3, 1, 12, 30), datetime(1999, 12, 31, 23, 59, 59), None]
    assert rows[1]["ts_tz"] is None
    want_tz = [datetime(2024, 3, 1, 11, 30, tzinfo=timezone.utc),
               datetime(2024, 6, 30, 22, 0, 0, 123456, tzinfo=timezone.utc)]
    got_tz = [rows[0]["ts_tz"], rows[2]["ts_tz"]]
    if wh.dialect == "duckdb":
        assert got_tz == want_tz and all(t.tzinfo is not None for t in got_tz)
        assert [r["l"] for r in rows] == [[1, 2], [], None]  # DuckDB keeps lists native
    else:
        assert got_tz == [t.replace(tzinfo=None) for t in want_tz]  # SQLite: stored as UTC, read back naive
        assert [r["l"] for r in rows] == ["[1, 2]", "[]", None]  # elsewhere nested values are JSON text


def test_generic_column_types_follow_the_mapping(tmp_path: Path) -> None:
    wh = connect(f"sqlite:///{tmp_path}/wh.sqlite")
    wh.publish("typed", every_type(), lake_version=1, run_id="r1")
    cols = {c["name"]: c["type"] for c in sa.inspect(wh.engine).get_columns("typed")}
    wh.dispose()
    kinds = {name: type(t) for name, t in cols.items()}
    assert kinds["i8"] is sa.INTEGER and kinds["i64"] is sa.BIGINT and kinds["b"] is sa.BOOLEAN
    assert kinds["s"] is sa.TEXT and kinds["l"] is sa.TEXT and kinds["cat"] is sa.TEXT
    assert kinds["ts"] is sa.DATETIME and kinds["d"] is sa.DATE and kinds["f"] is sa.DOUBLE
    assert (cols["dec"].precision, cols["dec"].scale) == (10, 2)


def test_second_publish_replaces_rows_and_schema(wh: Warehouse) -> None:
    assert wh.publish("t", pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}), lake_version=1, run_id="r1") == 3
    assert wh.publish("t", pa.table({"a": [10, 20], "c": [0.5, 1.5]}), lake_version=2, run_id="r2") == 2
    got = wh.query("SELECT * FROM t ORDER BY a")
    assert got.column_names == ["a", "c"]
    assert got.to_pydict() == {"a": [10, 20], "c": [0.5, 1.5]}
    assert wh.publish("t", pa.table({"a": pa.array([], pa.int64())}), lake_version=3, run_id="r3") == 0
    assert wh.query("SELECT count(*) AS n FROM t").to_pydict() == {"n": [0]}
    assert wh.tables() == ["t"]


def test_bookkeeping_records_each_publish(wh: Warehouse) -> None:
    assert wh.published_version("t") is None
    before = datetime.now(timezone.utc)
    wh.publish("t", pa.table({"a": [1]}), lake_version=5, run_id="run-a")
    wh.publish("u", pa.table({"a": [1, 2]}), lake_version=1, run_id="run-a")
    wh.publish("t", pa.table({"a": [1, 2, 3]}), lake_version=7, run_id="run-b")
    assert (wh.published_version("t"), wh.published_version("u"), wh.published_version("v")) == (7, 1, None)
    assert wh.tables() == ["t", "u"]  # the bookkeeping table is not a user table
    rows = wh.query(f"SELECT name, lake_version, run_id, rows, published_at FROM {BOOKKEEPING} ORDER BY name")
    book = rows.to_pylist()
    assert [(r["name"], r["lake_version"], r["run_id"], r["rows"]) for r in book] == [
        ("t", 7, "run-b", 3), ("u", 1, "run-a", 2)]
    stamp = book[0]["published_at"]
    stamp = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)  # SQLite: naive UTC text
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(timezone.utc) + timedelta(seconds=1)
    with wh.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE t")
    assert wh.published_version("t") is None  # dropped by hand: must be published again


def test_failed_generic_publish_leaves_old_table(tmp_path: Path) -> None:
    wh = connect(f"sqlite:///{tmp_path}/wh.sqlite")
    assert isinstance(wh, GenericWarehouse)
    wh.publish("t", pa.table({"id": [1, 2]}), lake_version=1, run_id="r1")
    wh.batch_rows = 2  # so the bad row lands in the second batch, after a batch was inserted
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    bad = pa.Table.from_arrays([pa.array([10, 20, None, 40])], schema=strict)
    with pytest.raises(HeadwaterError, match="NOT NULL") as err:
        wh.publish("t", bad, lake_version=2, run_id="r2")
    assert "unchanged" in str(err.value)
    assert wh.query("SELECT id FROM t ORDER BY id").to_pydict() == {"id": [1, 2]}
    assert wh.published_version("t") == 1
    with sqlite3.connect(tmp_path / "wh.sqlite") as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"t", BOOKKEEPING}  # the half-built t__hw_new was rolled back too
    wh.dispose()


def test_reader_sees_old_table_during_generic_publish(tmp_path: Path) -> None:
    path = tmp_path / "wh.sqlite"
    wh = connect(f"sqlite:///{path}")
    wh.publish("t", pa.table({"id": [1, 2, 3]}), lake_version=1, run_id="r1")
    wh.batch_rows = 10
    seen: list[tuple[int, set[str]]] = []

    @sa.event.listens_for(wh.engine, "after_cursor_execute")
    def read_meanwhile(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith(("INSERT INTO t__hw_new", "ALTER TABLE")):
            reader = sqlite3.connect(path, timeout=0)
            try:
                count = reader.execute("SELECT count(*) FROM t").fetchone()[0]
                tables = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                reader.close()
            seen.append((count, tables))

    wh.publish("t", pa.table({"id": list(range(35))}), lake_version=2, run_id="r2")
    assert len(seen) == 5  # four insert batches and the rename, each with a reader in between
    assert all(s == (3, {"t", BOOKKEEPING}) for s in seen)
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 35
    wh.dispose()


def test_reader_sees_old_table_during_duckdb_publish(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path}/wh.duckdb")
    wh.publish("t", pa.table({"id": [1, 2, 3]}), lake_version=1, run_id="r1")
    seen: list[int] = []

    @sa.event.listens_for(wh.engine, "after_cursor_execute")
    def read_meanwhile(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith(("CREATE OR REPLACE TABLE", "INSERT INTO _headwater_published")):
            with wh.engine.connect() as reader:  # a second connection to the same file
                seen.append(reader.exec_driver_sql("SELECT count(*) FROM t").scalar())

    wh.publish("t", pa.table({"id": list(range(35))}), lake_version=2, run_id="r2")
    assert seen == [3, 3]
    assert wh.query("SELECT count(*) AS n FROM t").to_pydict() == {"n": [35]}
    wh.dispose()


def hold_file(path: Path) -> subprocess.Popen:
    """Another process that opens the DuckDB file for writing and keeps it until stdin closes."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
            "print(c.sql('SELECT count(*) FROM t').fetchall()[0][0], flush=True); sys.stdin.read()")
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_duckdb_releases_the_file_and_explains_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "wh.duckdb"
    wh = connect(f"duckdb:///{path}")
    assert isinstance(wh, DuckDBWarehouse) and wh.dialect == "duckdb"
    wh.publish("t", pa.table({"a": [1, 2]}), lake_version=1, run_id="r1")  # parent folders created
    other = hold_file(path)  # works only if publish let go of the file (no dispose() yet)
    try:
        assert other.stdout.readline().strip() == "2", other.communicate("")[1]
        with pytest.raises(HeadwaterError, match="one writer at a time"):
            wh.publish("t", pa.table({"a": [9]}), lake_version=2, run_id="r2")
        with pytest.raises(HeadwaterError, match="one writer at a time"):
            wh.describe()
    finally:
        other.communicate("")
    assert wh.query("SELECT a FROM t ORDER BY a").to_pydict() == {"a": [1, 2]}
    assert wh.published_version("t") == 1


def write_lake(root: Path) -> dict:
    write_deltalake(str(root / "raw" / "photos"), pa.table({"photo_id": [1, 2, 3], "owner": ["ann", "bo", "ann"]}))
    write_deltalake(str(root / "models" / "training_set"), pa.table({"photo_id": [1, 3], "label": [True, False]}))
    return {f"{zone}.{name}": arrow_dataset(DeltaTable(str(root / zone / name)))
            for zone, name in [("raw", "photos"), ("models", "training_set")]}


@pytest.mark.parametrize("where", ["file", "memory"])
def test_duckdb_query_joins_warehouse_and_lake(tmp_path: Path, where: str) -> None:
    lake = write_lake(tmp_path / "lake")
    wh = connect(f"duckdb:///{tmp_path}/wh.duckdb" if where == "file" else "duckdb:///:memory:")
    assert wh.query("SELECT count(*) AS n FROM raw.photos", lake=lake).to_pydict() == {"n": [3]}  # no file yet
    wh.publish("likes", pa.table({"photo_id": [1, 2, 3], "likes": [10, 0, 5]}), lake_version=1, run_id="r1")
    got = wh.query("""
        SELECT p.owner, sum(l.likes) AS likes, count(t.label) AS labelled
        FROM raw.photos p JOIN likes l USING (photo_id) LEFT JOIN models.training_set t USING (photo_id)
        GROUP BY p.owner ORDER BY p.owner""", lake=lake)
    assert got.to_pydict() == {"owner": ["ann", "bo"], "likes": [15, 0], "labelled": [2, 0]}
    assert wh.query("SELECT photo_id FROM models.training_set WHERE label", lake=lake).to_pydict() == {"photo_id": [1]}
    with pytest.raises(HeadwaterError, match="raw.photos"):
        wh.query("SELECT * FROM raw.photos")  # no lake given: the name doesn't resolve
    assert wh.tables() == ["likes"]  # lake views leave nothing behind
    if where == "file":
        with pytest.raises(HeadwaterError, match="read-only"):
            wh.query("CREATE TABLE warehouse.main.sneaky AS SELECT 1")
    wh.dispose()


def test_generic_query_refuses_lake_tables(tmp_path: Path) -> None:
    lake = write_lake(tmp_path / "lake")
    wh = connect(f"sqlite:///{tmp_path}/wh.sqlite")
    wh.publish("likes", pa.table({"photo_id": [1, 2], "likes": [3, 4]}), lake_version=1, run_id="r1")
    with pytest.raises(HeadwaterError, match="DuckDB") as err:
        wh.query("SELECT * FROM likes JOIN Raw.Photos USING (photo_id)", lake=lake)
    assert "raw.photos" in str(err.value)
    got = wh.query("SELECT photo_id, likes, 'raw.photosynthesis' AS note FROM likes ORDER BY photo_id", lake=lake)
    assert got.to_pydict() == {"photo_id": [1, 2], "likes": [3, 4], "note": ["raw.photosynthesis"] * 2}
    wh.dispose()


@pytest.mark.parametrize("name", ["bad-name", "two words", "t;drop", "", "naïve", "x" * 56,
                                  BOOKKEEPING, "t__hw_new"])
def test_bad_table_names_are_refused(tmp_path: Path, name: str) -> None:
    wh = connect(f"sqlite:///{tmp_path}/wh.sqlite")
    with pytest.raises(HeadwaterError, match="rename the model|pick another name"):
        wh.publish(name, pa.table({"a": [1]}), lake_version=1, run_id="r1")
    with pytest.raises(HeadwaterError):
        wh.published_version(name)
    assert not (tmp_path / "wh.sqlite").exists() or wh.tables() == []
    wh.dispose()


def test_bad_tables_and_urls_are_explained(tmp_path: Path) -> None:
    wh = connect("duckdb:///:memory:")
    with pytest.raises(HeadwaterError, match="duplicate column names"):
        wh.publish("t", pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]),
                   lake_version=1, run_id="r1")
    with pytest.raises(HeadwaterError, match="not a SQLAlchemy URL"):
        connect("warehouse.duckdb")
    with pytest.raises(HeadwaterError, match="no driver"):
        connect("nosuchdb://host/db")
    with pytest.raises(HeadwaterError, match="check the warehouse URL"):
        connect(f"sqlite:///{tmp_path}/missing/dir/wh.sqlite").describe()
    (tmp_path / "junk.duckdb").write_text("not a database")
    with pytest.raises(HeadwaterError, match="not a DuckDB file"):
        connect(f"duckdb:///{tmp_path}/junk.duckdb").describe()


def test_describe_says_dialect_version_and_where(tmp_path: Path) -> None:
    duck = connect(f"duckdb:///{tmp_path}/wh.duckdb")
    duck.publish("t", pa.table({"a": [1]}), lake_version=1, run_id="r1")
    assert duck.describe().startswith("duckdb v") and f"{tmp_path}/wh.duckdb, 1 tables" in duck.describe()
    lite = connect(f"sqlite:///{tmp_path}/wh.sqlite")
    assert lite.describe() == f"sqlite {sqlite3.sqlite_version} at sqlite:///{tmp_path}/wh.sqlite, 0 tables"
    duck.dispose()
    lite.dispose()
