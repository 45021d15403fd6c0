"""Every reader gets the same answer: lake tables written by Headwater (appended, merged,
compacted, vacuumed) read through deltalake's Arrow dataset, DataFusion, polars and DuckDB
(as `headwater query` runs it), unfiltered and with filters on every column type, against the
rows the test wrote, filtered in Python (tests/support/readers.py).

The loads hold what broke readers before: strings over 4 KiB (pyarrow keeps no Parquet bounds
for them, and deltalake's dataset skipped such a file), a file whose float column is all NaN
(no bound at all), sub-millisecond times (Delta's bounds are in milliseconds), and merges
(delta-rs' MERGE wrote string_view, which pyarrow's filters cannot compare)."""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from engine.lake import Lake
from tests.support.readers import READERS, Filter, expected, read

BASE = dt.datetime(2024, 3, 1, 12, 0, 0, 123_456)
SCHEMA = pa.schema([
    ("id", pa.int64()), ("i32", pa.int32()), ("x", pa.float64()), ("nan", pa.float64()),
    ("dec", pa.decimal128(12, 2)), ("s", pa.string()), ("body", pa.string()), ("flag", pa.bool_()),
    ("d", pa.date32()), ("ts", pa.timestamp("us")), ("tz", pa.timestamp("us", "UTC")), ("b", pa.binary()),
])
COLUMNS = SCHEMA.names
HISTORIES = ("raw.appended", "raw.merged", "raw.compacted", "raw.vacuumed")


def rows(ids: range, version: int, long: bool = False, all_nan: bool = False) -> list[dict[str, Any]]:
    """Rows of every column type, with nulls; `long`: bodies over 4 KiB; `all_nan`: no number in `nan`."""
    out = []
    for k in ids:
        out.append({
            "id": k,
            "i32": None if k % 7 == 0 else (k * 7 + version) % 1000,
            "x": None if k % 11 == 0 else k * 0.5 + version,
            "nan": math.nan if all_nan or k % 5 == 0 else float(k % 13),
            "dec": None if k % 4 == 0 else Decimal(k * 3 + version).scaleb(-2),
            "s": None if k % 6 == 0 else f"v{k:05d}-{version}",
            "body": chr(97 + k % 26) * (5000 if long else 3) + str(k),
            "flag": None if k % 10 == 0 else k % 3 == 0,
            "d": dt.date(2020, 1, 1) + dt.timedelta(days=(k * 5 + version) % 400),
            "ts": BASE + dt.timedelta(microseconds=k * 1001 + version),
            "tz": (BASE + dt.timedelta(microseconds=k * 999 + version)).replace(tzinfo=dt.timezone.utc),
            "b": None if k % 9 == 0 else bytes([k % 256, version]),
        })
    return out


def batches(load: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> list[pa.RecordBatch]:
    return pa.Table.from_pylist(load, schema=schema).to_batches(max_chunksize=70)


def merged(state: dict[int, dict[str, Any]], load: list[dict[str, Any]]) -> None:
    for row in load:
        state[row["id"]] = row


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, dict[str, list[dict[str, Any]]]]:
    """One lake with a table per history, and the rows each must hold."""
    lake = Lake(str(tmp_path_factory.mktemp("readers")))
    tables: dict[str, list[dict[str, Any]]] = {}

    loads = [rows(range(0, 300), 0), rows(range(300, 600), 1, long=True), rows(range(600, 900), 2, all_nan=True)]
    for i, load in enumerate(loads):
        lake.land("raw.appended", batches(load), run_id=f"a{i}", state={"load": i})
    tables["raw.appended"] = [r for load in loads for r in load]

    state: dict[int, dict[str, Any]] = {}
    extra = pa.schema([*SCHEMA, ("extra", pa.string())])
    m3 = [{**r, "extra": f"e{r['id']}"} for r in rows(range(500, 700), 2)]
    for i, (load, schema) in enumerate([(rows(range(0, 400), 0), SCHEMA),  # creates it (delta-rs' writer)
                                        (rows(range(200, 600), 1, long=True), SCHEMA),
                                        (m3, extra)]):  # a new column
        lake.land("raw.merged", batches(load, schema), run_id=f"m{i}", state={"load": i}, mode="merge",
                  primary_key=["id"], schema=schema)
        merged(state, load)
    tables["raw.merged"] = list(state.values())

    loads = [rows(range(i * 100, i * 100 + 100), i, long=i == 2, all_nan=i == 3) for i in range(4)]
    for i, load in enumerate(loads):
        lake.land("raw.compacted", batches(load), run_id=f"c{i}", state={"load": i})
    DeltaTable(lake.uri("raw.compacted")).optimize.compact()
    tables["raw.compacted"] = [r for load in loads for r in load]

    state = {}
    history = [(rows(range(0, 200), 0), "replace"), (rows(range(100, 300), 1, long=True), "replace"),
               (rows(range(300, 400), 2), "append"), (rows(range(350, 450), 3), "merge")]
    for i, (load, mode) in enumerate(history):
        lake.land("raw.vacuumed", batches(load), run_id=f"v{i}", state={"load": i}, mode=mode, primary_key=["id"])
        state = {} if mode == "replace" else state
        merged(state, load)
    DeltaTable(lake.uri("raw.vacuumed")).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    tables["raw.vacuumed"] = list(state.values())
    return lake, tables


def filters(column: str, table: list[dict[str, Any]]) -> list[Filter]:
    """Filters on `column` that cut through the table: at a middle value (rows equal to it
    must not be skipped), at its extremes, unequal to it, and on nulls."""
    kind = SCHEMA.field(column).type
    values = sorted({r[column] for r in table if r[column] is not None
                     and not (isinstance(r[column], float) and math.isnan(r[column]))})
    if column == "nan":  # NaN orders differently in each engine: only (in)equality is common ground
        return [Filter(column, "!=", 1.0, kind), Filter(column, "=", values[0], kind)]
    if column == "flag":
        return [Filter(column, "=", True, kind), Filter(column, "=", False, kind),
                Filter(column, "is null", None, kind)]
    middle, low, high = values[len(values) // 2], values[0], values[-1]
    out = [Filter(column, op, middle, kind) for op in (">=", "<=", "=", "!=", "<", ">")]
    out += [Filter(column, "<=", low, kind), Filter(column, ">=", high, kind)]
    if column == "body":
        out += [Filter(column, ">=", "a", kind), Filter(column, "<", "b", kind)]  # the filter
    if any(r[column] is None for r in table):
        out.append(Filter(column, "is null", None, kind))
    return out


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", HISTORIES)
def test_every_reader_reads_every_row_and_value(built: tuple[Lake, dict], name: str, reader: str) -> None:
    lake, tables = built
    columns = COLUMNS + (["extra"] if name == "raw.merged" else [])
    assert read(reader, lake, name, None, columns) == expected(tables[name], None, columns)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("name", HISTORIES)
def test_every_reader_filters_every_column_type_alike(built: tuple[Lake, dict], name: str, column: str) -> None:
    lake, tables = built
    wrong = []
    for where in filters(column, tables[name]):
        want = expected(tables[name], where, ["id"])
        for reader in READERS:
            got = read(reader, lake, name, where, ["id"])
            if got != want:
                wrong.append(f"{reader} where {where}: {len(got)} rows, want {len(want)}")
    assert not wrong, "\n".join(wrong)


def test_the_lake_holds_no_string_view_and_bounds_every_long_string(built: tuple[Lake, dict]) -> None:
    lake, _ = built
    for name in HISTORIES:
        table = DeltaTable(lake.uri(name))
        for uri in table.file_uris():
            schema = pq.read_schema(uri)
            assert not any(pa.types.is_string_view(f.type) for f in schema), (name, uri, schema)
        files = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        # a file has bounds for every column that has values, or none at all (the all-NaN file)
        bounded = [f for f in files if f["min.id"] is not None]
        assert all(f["min.body"] is not None and f["max.body"] is not None for f in bounded), name
        assert all(f["min.nan"] is not None for f in bounded), name
        long = [f for f in bounded if len(f["max.body"]) >= 32]
        assert long, name  # the load of long bodies has them, cut short
        assert all(len(f["min.body"]) <= 64 and f["min.body"] <= f["max.body"] for f in long)


def test_a_vacuumed_version_names_the_oldest_readable_one(built: tuple[Lake, dict]) -> None:
    from engine.errors import ConfigError

    lake, tables = built
    latest = lake.version("raw.vacuumed")
    assert latest is not None
    # versions: 0 and 1 replace, 2 appends, 3 merges into 2's file (removing it), 4 and 5 vacuum
    assert latest == 5
    for version in (0, 2):
        with pytest.raises(ConfigError, match=rf"^version {version} of raw\.vacuumed was vacuumed \(1 of its data "
                                              r"files are gone; the latest VACUUM is version 5\); the oldest "
                                              r"readable is 3 \(read that version or a later one"):
            lake.table("raw.vacuumed", version)
    assert {r["id"] for r in lake.read("raw.vacuumed", 3).to_pylist()} == {r["id"] for r in tables["raw.vacuumed"]}
    # version 1's one file is still the latest's: it can be read
    assert sorted(r["id"] for r in lake.read("raw.vacuumed", 1, columns=["id"]).to_pylist()) == list(range(100, 300))


def test_every_write_path_stores_plain_strings(tmp_path: Path) -> None:
    """string_view and large_string in, at any depth: the lake's files hold plain strings
    (appends by the parallel writer, a new column by delta-rs' writer, merges, model writes)."""
    lake = Lake(str(tmp_path))
    view = pa.schema([("id", pa.int64()), ("s", pa.string_view()), ("big", pa.large_string()),
                      ("l", pa.list_(pa.string_view())), ("m", pa.map_(pa.string_view(), pa.int64()))])

    def table(ids: range, extra: bool = False) -> pa.Table:
        data = {"id": list(ids), "s": [f"s{i}" for i in ids], "big": [f"b{i}" for i in ids],
                "l": [[f"l{i}"] for i in ids], "m": [[(f"k{i}", i)] for i in ids]}
        schema = pa.schema([*view, ("new", pa.string_view())]) if extra else view
        return pa.table({**data, **({"new": [f"n{i}" for i in ids]} if extra else {})}, schema=schema)

    lake.land("raw.v", table(range(0, 10)).to_batches(), run_id="a", state={})
    lake.land("raw.v", table(range(10, 20), extra=True).to_batches(), run_id="b", state={})  # a new column
    lake.land("raw.v", table(range(5, 25), extra=True).to_batches(), run_id="c", state={}, mode="merge",
              primary_key=["id"])
    lake.write("models.v", table(range(3)), run_id="d", meta={})
    for name in ("raw.v", "models.v"):
        for uri in DeltaTable(lake.uri(name)).file_uris():
            types = {str(f.type) for f in pq.read_schema(uri)}
            assert not any("view" in t or "large" in t for t in types), (name, types)
    got = lake.dataset("raw.v").to_table(filter=ds.field("s") >= "s20").column("id").to_pylist()
    assert sorted(got) == sorted(i for i in range(25) if f"s{i}" >= "s20")


def test_changes_since_a_vacuumed_version_are_still_known(built: tuple[Lake, dict]) -> None:
    """An incremental build only needs the names of the files a version had, which its log keeps."""
    from engine.lake.changes import changes

    lake, tables = built
    since_vacuumed = changes(lake, "raw.vacuumed", 0, 5)
    assert since_vacuumed.rewritten
    got = sorted(since_vacuumed.dataset.to_table(columns=["id"]).column("id").to_pylist())
    assert got == sorted(r["id"] for r in tables["raw.vacuumed"])  # every file is new since version 0
    since_merge = changes(lake, "raw.vacuumed", 3, 5)  # the two VACUUM commits change no data
    assert not since_merge.rewritten and since_merge.dataset.count_rows() == 0
