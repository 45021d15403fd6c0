"""The "Warehouse types" table of docs/configuration.md, row by row, on a real DuckDB file, PostgreSQL server
and SQLite file: the column type each Arrow type becomes, and values read back equal."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import sqlalchemy as sa

from engine.publish import Warehouse, connect
from engine.publish.postgres import PostgresWarehouse

PARIS = ZoneInfo("Europe/Paris")
BIG = {"duckdb": 2**64 - 1, "postgresql": 2**64 - 1, "sqlite": 2**53}  # SQLite: NUMERIC is a double
DEC = {"duckdb": Decimal("12345678901234567890123456789.123456789"),  # 38 digits
       "postgresql": Decimal("12345678901234567890123456789.123456789"),
       "sqlite": Decimal("1234567.891")}  # SQLite keeps NUMERIC as a double: 15 significant digits

# column: (Arrow type, expected column type on duckdb / postgresql / sqlite)
TYPES: dict[str, tuple[pa.DataType, dict[str, str]]] = {
    "b": (pa.bool_(), {"duckdb": "BOOLEAN", "postgresql": "boolean", "sqlite": "BOOLEAN"}),
    "i16": (pa.int16(), {"duckdb": "SMALLINT", "postgresql": "integer", "sqlite": "INTEGER"}),
    "i32": (pa.int32(), {"duckdb": "INTEGER", "postgresql": "integer", "sqlite": "INTEGER"}),
    "i64": (pa.int64(), {"duckdb": "BIGINT", "postgresql": "bigint", "sqlite": "BIGINT"}),
    "u8": (pa.uint8(), {"duckdb": "UTINYINT", "postgresql": "integer", "sqlite": "INTEGER"}),
    "u32": (pa.uint32(), {"duckdb": "UINTEGER", "postgresql": "bigint", "sqlite": "BIGINT"}),
    "u64": (pa.uint64(), {"duckdb": "UBIGINT", "postgresql": "numeric(20,0)", "sqlite": "NUMERIC(20, 0)"}),
    "f64": (pa.float64(), {"duckdb": "DOUBLE", "postgresql": "double precision", "sqlite": "DOUBLE"}),
    "f32": (pa.float32(), {"duckdb": "FLOAT", "postgresql": "double precision", "sqlite": "DOUBLE"}),
    "s": (pa.string(), {"duckdb": "VARCHAR", "postgresql": "text", "sqlite": "TEXT"}),
    "ls": (pa.large_string(), {"duckdb": "VARCHAR", "postgresql": "text", "sqlite": "TEXT"}),
    "sv": (pa.string_view(), {"duckdb": "VARCHAR", "postgresql": "text", "sqlite": "TEXT"}),
    "cat": (pa.dictionary(pa.int32(), pa.string()), {"duckdb": "VARCHAR", "postgresql": "text", "sqlite": "TEXT"}),
    "nul": (pa.null(), {"duckdb": "VARCHAR", "postgresql": "text", "sqlite": "TEXT"}),
    "dec": (pa.decimal128(38, 9), {"duckdb": "DECIMAL(38,9)", "postgresql": "numeric(38,9)",
                                   "sqlite": "NUMERIC(38, 9)"}),
    "ts_tz": (pa.timestamp("us", "Europe/Paris"), {"duckdb": "TIMESTAMP WITH TIME ZONE",
                                                   "postgresql": "timestamp with time zone", "sqlite": "DATETIME"}),
    "ts": (pa.timestamp("us"), {"duckdb": "TIMESTAMP", "postgresql": "timestamp without time zone",
                                "sqlite": "DATETIME"}),
    "ts_ns": (pa.timestamp("ns"), {"duckdb": "TIMESTAMP", "postgresql": "timestamp without time zone",
                                   "sqlite": "DATETIME"}),
    "d": (pa.date32(), {"duckdb": "DATE", "postgresql": "date", "sqlite": "DATE"}),
    "d64": (pa.date64(), {"duckdb": "DATE", "postgresql": "date", "sqlite": "DATE"}),
    "t": (pa.time64("us"), {"duckdb": "TIME", "postgresql": "time without time zone", "sqlite": "TIME"}),
    "bin": (pa.binary(), {"duckdb": "BLOB", "postgresql": "bytea", "sqlite": "BLOB"}),
    "lbin": (pa.large_binary(), {"duckdb": "BLOB", "postgresql": "bytea", "sqlite": "BLOB"}),
    "fbin": (pa.binary(2), {"duckdb": "BLOB", "postgresql": "bytea", "sqlite": "BLOB"}),
    "l": (pa.list_(pa.int64()), {"duckdb": "BIGINT[]", "postgresql": "jsonb", "sqlite": "TEXT"}),
    "st": (pa.struct([("a", pa.int64()), ("b", pa.string())]),
           {"duckdb": "STRUCT(a BIGINT, b VARCHAR)", "postgresql": "jsonb", "sqlite": "TEXT"}),
    "m": (pa.map_(pa.string(), pa.int64()), {"duckdb": "MAP(VARCHAR, BIGINT)", "postgresql": "jsonb",
                                            "sqlite": "TEXT"}),
}


def values(dialect: str) -> dict[str, list[Any]]:
    """Three rows per column: typical values, edge values (empty, extremes, NaN) and nulls."""
    return {
        "id": [0, 1, 2],
        "b": [True, False, None],
        "i16": [-(2**15), 2**15 - 1, None],
        "i32": [-(2**31), 2**31 - 1, None],
        "i64": [-(2**63), 2**63 - 1, None],
        "u8": [0, 255, None],
        "u32": [0, 2**32 - 1, None],
        "f32": [1.5, -0.25, None],
        "ls": ["large", "", None],
        "sv": ["view", "", None],
        "d64": [date(2024, 2, 29), date(1970, 1, 1), None],
        "lbin": [b"\x01", b"", None],
        "fbin": [b"\x00\x01", b"\xff\xfe", None],
        "m": [[("a", 1), ("b", 2)], [], None],
        "u64": [0, BIG[dialect], None],
        "f64": [1.5, float("inf"), None],
        "s": ["héllo, \"wörld\"\nnext line", "", None],  # CSV quoting; empty string is not null
        "cat": ["a", "b", None],
        "nul": [None, None, None],
        "dec": [DEC[dialect], -DEC[dialect], None],
        "ts_tz": [datetime(2024, 3, 1, 12, 30, tzinfo=PARIS), datetime(1970, 1, 1, tzinfo=timezone.utc), None],
        "ts": [datetime(2024, 3, 1, 12, 30, 0, 123456), datetime(1999, 12, 31, 23, 59, 59), None],
        "ts_ns": [1_709_296_200_123_456_789, 0, None],
        "d": [date(2024, 2, 29), date(1, 1, 1), None],
        "t": [time(12, 30, 0, 123456), time(0, 0), None],
        "bin": [b"\x00\xff\n,\"", b"", None],
        "l": [[1, 2], [], None],
        "st": [{"a": 1, "b": "x"}, {"a": None, "b": "y, \"z\""}, None],
    }


def typed_table(dialect: str) -> pa.Table:
    vals = values(dialect)
    arrays = {"id": pa.array(vals["id"], pa.int64())}
    for name, (arrow, _) in TYPES.items():
        if pa.types.is_dictionary(arrow):
            arrays[name] = pa.array(vals[name]).dictionary_encode()
        else:
            arrays[name] = pa.array(vals[name], arrow)
    return pa.table(arrays)


def expected(dialect: str, table: pa.Table) -> dict[str, list[Any]]:
    """What a client reads back, derived from the input: instants in UTC (naive UTC on SQLite),
    nanoseconds cut to microseconds."""
    want = table.to_pydict()
    utc = [None if v is None else v.astimezone(timezone.utc) for v in want["ts_tz"]]
    want["ts_tz"] = [v.replace(tzinfo=None) if v and dialect == "sqlite" else v for v in utc]
    want["ts_ns"] = table.column("ts_ns").cast(pa.timestamp("us"), safe=False).to_pylist()
    if dialect != "duckdb":  # JSON: a map is an object
        want["m"] = [None if v is None else dict(v) for v in want["m"]]
    return want


@pytest.fixture(params=["duckdb", "postgresql", "sqlite"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    url = {"duckdb": f"duckdb:///{tmp_path}/wh.duckdb", "sqlite": f"sqlite:///{tmp_path}/wh.sqlite"}.get(
        request.param) or request.getfixturevalue("pg_url")
    warehouse = connect(url)
    if request.param == "postgresql":
        assert isinstance(warehouse, PostgresWarehouse)
    yield warehouse
    warehouse.dispose()


def read_back(wh: Warehouse, name: str) -> dict[str, list[Any]]:
    """Columns as a client of that database reads them: DuckDB through query() (Arrow), the
    others through SQLAlchemy with the reflected column types; JSON text parsed."""
    if wh.dialect == "duckdb":
        return wh.query(f"SELECT * FROM {name} ORDER BY id").to_pydict()
    table = sa.Table(name, sa.MetaData(), autoload_with=wh.engine)
    with wh.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    got = {c: [r[c] for r in rows] for c in rows[0]}
    if wh.dialect == "sqlite":
        for c in ("l", "st", "m"):
            got[c] = [None if v is None else json.loads(v) for v in got[c]]
    for c in ("bin", "lbin", "fbin"):
        got[c] = [None if v is None else bytes(v) for v in got[c]]
    return got


def column_types(wh: Warehouse, name: str) -> dict[str, str]:
    if wh.dialect == "sqlite":
        return {c["name"]: str(c["type"]) for c in sa.inspect(wh.engine).get_columns(name)}
    sql = ("SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
           f"WHERE table_name = '{name}'")
    rows = wh.query(sql).to_pylist()
    return {r["column_name"]: r["data_type"] + (f"({r['numeric_precision']},{r['numeric_scale']})"
                                                if r["data_type"] == "numeric" else "") for r in rows}


def test_every_type_maps_as_documented_and_round_trips(wh: Warehouse) -> None:
    table = typed_table(wh.dialect)
    assert wh.publish("typed", table, lake_version=1, run_id="r1") == 3
    types = column_types(wh, "typed")
    for name, (_, want) in TYPES.items():
        assert types[name] == want[wh.dialect], name
    got, want = read_back(wh, "typed"), expected(wh.dialect, table)
    for name in ["id", *TYPES]:
        assert got[name] == want[name], name
    tz = [v for v in got["ts_tz"] if v is not None]
    assert all((v.tzinfo is None) == (wh.dialect == "sqlite") for v in tz)  # only SQLite drops the zone


def test_nan_and_null_floats(wh: Warehouse) -> None:
    wh.publish("floats", pa.table({"id": [0, 1], "f": [float("nan"), None]}), lake_version=1, run_id="r1")
    got = wh.query("SELECT f FROM floats ORDER BY id").column("f").to_pylist()
    assert got[1] is None
    if wh.dialect == "sqlite":
        assert got[0] is None  # SQLite has no NaN: it stores NULL
    else:
        assert math.isnan(got[0])
