"""Publish modes (replace, append, merge), streaming input, atomicity and bookkeeping, on a real
DuckDB file, PostgreSQL server (COPY) and SQLite file (generic executemany)."""
from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable, write_deltalake

from engine.errors import HeadwaterError
from engine.lake.storage import arrow_dataset
from engine.publish import BOOKKEEPING, Warehouse, connect
from engine.publish.base import STAGING_SUFFIX

SCHEMA = pa.schema([("id", pa.int64()), ("shard", pa.string()), ("value", pa.float64())])


def rows(ids: range | list[int], value: Callable[[int], float] = float, shard: Callable[[int], str] = str) -> pa.Table:
    ids = list(ids)
    return pa.table({"id": ids, "shard": [shard(i) for i in ids], "value": [value(i) for i in ids]}, schema=SCHEMA)


def content(wh: Warehouse, name: str) -> list[tuple]:
    got = wh.query(f"SELECT id, shard, value FROM {name} ORDER BY id, shard").to_pylist()
    return [(r["id"], r["shard"], r["value"]) for r in got]


def book(wh: Warehouse, name: str) -> tuple | None:
    got = wh.query(f"SELECT lake_version, run_id, rows FROM {BOOKKEEPING} WHERE name = '{name}'").to_pylist()
    return (got[0]["lake_version"], got[0]["run_id"], got[0]["rows"]) if got else None


def user_tables(wh: Warehouse) -> set[str]:
    with wh.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names()) - {BOOKKEEPING}


def test_append_creates_then_adds(wh: Warehouse) -> None:
    assert wh.publish("t", rows(range(5)), lake_version=1, run_id="r1", mode="append") == 5
    assert book(wh, "t") == (1, "r1", 5)
    # columns in another order: appended by name
    more = rows(range(5, 12)).select(["value", "id", "shard"])
    assert wh.publish("t", more, lake_version=2, run_id="r2", mode="append") == 7
    assert content(wh, "t") == [(i, str(i), float(i)) for i in range(12)]
    assert book(wh, "t") == (2, "r2", 12)  # rows: what the table holds now
    assert wh.publish("t", rows([]), lake_version=3, run_id="r3", mode="append") == 0
    assert book(wh, "t") == (3, "r3", 12) and wh.published_version("t") == 3


def test_merge_updates_matching_keys_and_adds_the_rest(wh: Warehouse) -> None:
    wh.publish("t", rows(range(100), value=lambda i: i * 1.0), lake_version=1, run_id="r1")
    change = rows(range(50, 150, 2), value=lambda i: i * -10.0)
    assert wh.publish("t", change, lake_version=2, run_id="r2", mode="merge", primary_key="id") == 50
    want = {i: (i, str(i), i * 1.0) for i in range(100)}
    want.update({i: (i, str(i), i * -10.0) for i in range(50, 150, 2)})
    assert content(wh, "t") == [want[i] for i in sorted(want)]
    assert book(wh, "t") == (2, "r2", len(want))
    assert user_tables(wh) == {"t"}  # the staging table is gone


def test_merge_on_a_composite_key(wh: Warehouse) -> None:
    first = pa.concat_tables([rows(range(10), shard=lambda _: "a"), rows(range(10), shard=lambda _: "b")])
    wh.publish("t", first, lake_version=1, run_id="r1")
    change = pa.concat_tables([rows([3, 20], value=lambda i: -1.0, shard=lambda _: "a"),
                               rows([3], value=lambda i: -2.0, shard=lambda _: "c")])
    wh.publish("t", change, lake_version=2, run_id="r2", mode="merge", primary_key=["id", "shard"])
    want = {(r[0], r[1]): r for r in content_of(first)}
    want.update({(r[0], r[1]): r for r in content_of(change)})
    assert content(wh, "t") == sorted(want.values())


def content_of(table: pa.Table) -> list[tuple]:
    return [(r["id"], r["shard"], r["value"]) for r in table.to_pylist()]


def test_merge_into_a_missing_table_creates_it(wh: Warehouse) -> None:
    assert wh.publish("t", rows(range(3)), lake_version=4, run_id="r4", mode="merge", primary_key=["id"]) == 3
    assert content(wh, "t") == content_of(rows(range(3)))
    assert book(wh, "t") == (4, "r4", 3) and user_tables(wh) == {"t"}


def test_replace_after_merge_changes_columns(wh: Warehouse) -> None:
    wh.publish("t", rows(range(3)), lake_version=1, run_id="r1", mode="merge", primary_key="id")
    assert wh.publish("t", pa.table({"x": ["only"]}), lake_version=2, run_id="r2") == 1
    assert wh.query("SELECT * FROM t").to_pydict() == {"x": ["only"]}
    assert book(wh, "t") == (2, "r2", 1)


def test_bad_merges_and_appends_are_refused_and_change_nothing(wh: Warehouse) -> None:
    wh.publish("t", rows(range(3)), lake_version=1, run_id="r1")
    before = content(wh, "t")
    cases = [
        (dict(mode="merge"), "without a primary key", "primary_key=["),
        (dict(mode="merge", primary_key="nope"), r"key column\(s\) \['nope'\] are not in the table",
         "model's primary_key"),
        (dict(mode="upsert"), "unknown mode 'upsert'", "replace, append, merge"),
    ]
    for kwargs, message, hint in cases:
        with pytest.raises(HeadwaterError, match=message) as err:
            wh.publish("t", rows(range(9)), lake_version=2, run_id="r2", **kwargs)
        assert hint in err.value.hint
    with pytest.raises(HeadwaterError, match="the warehouse table has columns") as err:
        wh.publish("t", rows(range(9)).drop_columns(["value"]), lake_version=2, run_id="r2", mode="append")
    assert "mode='replace'" in err.value.hint
    with pytest.raises(HeadwaterError, match="null key"):
        wh.publish("t", pa.table({"id": [7, None], "shard": ["x", "y"], "value": [1.0, 2.0]}, schema=SCHEMA),
                   lake_version=2, run_id="r2", mode="merge", primary_key="id")
    with pytest.raises(HeadwaterError, match=r"key \{'id': 1\} is in the rows more than once"):
        wh.publish("t", rows([5, 1, 1]), lake_version=2, run_id="r2", mode="merge", primary_key="id")
    assert content(wh, "t") == before and book(wh, "t") == (1, "r1", 3)
    assert user_tables(wh) == {"t"}


def batches(n: int, size: int, meanwhile: Callable[[int], None] = lambda i: None,
            held: list | None = None) -> pa.RecordBatchReader:
    """A stream of `n` batches of `size` rows (ids from 1000 on), calling `meanwhile(i)` after
    batch i has been taken; weak references to the batches handed out go to `held`."""
    def gen() -> Iterator[pa.RecordBatch]:
        for i in range(n):
            ids = range(1000 + i * size, 1000 + (i + 1) * size)
            batch = rows(ids).to_batches()[0]
            if held is not None:
                held.append(weakref.ref(batch))
            yield batch
            del batch
            meanwhile(i)
    return pa.RecordBatchReader.from_batches(SCHEMA, gen())


@pytest.mark.parametrize("mode", ["replace", "append", "merge"])
def test_stream_of_batches_is_published_without_holding_it(wh: Warehouse, mode: str) -> None:
    wh.publish("t", rows(range(10)), lake_version=1, run_id="r1")
    held: list[weakref.ref] = []
    alive: list[int] = []

    def count_alive(i: int) -> None:
        gc.collect()
        alive.append(sum(ref() is not None for ref in held[:-1]))  # earlier batches still referenced

    n, size = 12, 500
    written = wh.publish("t", batches(n, size, count_alive, held), lake_version=2, run_id="r2", mode=mode,
                         primary_key="id")
    assert written == n * size
    assert max(alive) <= 2, alive  # a batch or two in flight, never the whole stream
    new = [(i, str(i), float(i)) for i in range(1000, 1000 + n * size)]
    want = new if mode == "replace" else content_of(rows(range(10))) + new
    assert content(wh, "t") == want
    assert book(wh, "t") == (2, "r2", len(want))


def reader_count(wh: Warehouse, path: Path) -> Callable[[], tuple[int, int | None]]:
    """A function that reads, on its own connection, t's row count and the version published to t."""
    def duckdb_read() -> tuple[int, int | None]:
        with wh.engine.connect() as conn:  # another connection to the same file
            return (conn.exec_driver_sql("SELECT count(*) FROM t").scalar(),
                    conn.exec_driver_sql(f"SELECT lake_version FROM {BOOKKEEPING}").scalar())

    def sqlite_read() -> tuple[int, int | None]:
        con = sqlite3.connect(path / "wh.sqlite", timeout=0)
        try:
            return (con.execute("SELECT count(*) FROM t").fetchone()[0],
                    con.execute(f"SELECT lake_version FROM {BOOKKEEPING}").fetchone()[0])
        finally:
            con.close()

    def pg_read() -> tuple[int, int | None]:
        dsn = wh.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True, options="-c lock_timeout=2000") as con:
            return (con.execute("SELECT count(*) FROM t").fetchone()[0],
                    con.execute(f"SELECT lake_version FROM {BOOKKEEPING}").fetchone()[0])

    return {"duckdb": duckdb_read, "sqlite": sqlite_read, "postgresql": pg_read}[wh.dialect]


@pytest.mark.parametrize("mode", ["replace", "append", "merge"])
def test_readers_see_the_old_table_until_commit(wh: Warehouse, tmp_path: Path, mode: str) -> None:
    wh.publish("t", rows(range(10)), lake_version=1, run_id="r1")
    read = reader_count(wh, tmp_path)
    seen: list[tuple[int, int | None]] = []
    wh.publish("t", batches(4, 100, lambda i: seen.append(read())), lake_version=2, run_id="r2",
               mode=mode, primary_key="id")
    assert seen == [(10, 1)] * 4  # between every batch, another connection sees the old table
    assert read() == (10 + 400 if mode != "replace" else 400, 2)


class DiskGone(OSError):
    """What a lake read failing mid-stream raises."""


@pytest.mark.parametrize("mode", ["replace", "append", "merge"])
def test_failure_mid_stream_leaves_table_and_bookkeeping(wh: Warehouse, mode: str) -> None:
    wh.publish("t", rows(range(10)), lake_version=1, run_id="r1")

    def fail(i: int) -> None:
        if i == 2:
            raise DiskGone("the lake went away after three batches")

    with pytest.raises((HeadwaterError, DiskGone), match="the lake went away"):
        wh.publish("t", batches(6, 100, fail), lake_version=2, run_id="r2", mode=mode, primary_key="id")
    assert content(wh, "t") == content_of(rows(range(10)))
    assert book(wh, "t") == (1, "r1", 10)
    assert user_tables(wh) == {"t"}  # no staging table left behind


def test_postgres_bad_row_mid_copy_leaves_table(pg_url: str) -> None:
    wh = connect(pg_url)
    wh.publish("t", rows(range(10)), lake_version=1, run_id="r1")
    wh.copy_rows = 100  # so the bad row is in a later COPY chunk than the first
    bad = rows(range(1000), shard=lambda i: "nul \x00 byte" if i == 750 else str(i))
    with pytest.raises(HeadwaterError, match="0x00") as err:
        wh.publish("t", bad, lake_version=2, run_id="r2")
    assert "unchanged" in str(err.value)
    assert content(wh, "t") == content_of(rows(range(10)))
    assert book(wh, "t") == (1, "r1", 10) and user_tables(wh) == {"t"}
    wh.dispose()


def test_postgres_loads_through_copy_not_inserts(pg_url: str) -> None:
    wh = connect(pg_url)
    statements: list[str] = []
    sa.event.listen(wh.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    for mode in ("replace", "append", "merge"):  # 5,000 rows, then 10,000, then 5,000 merged over both
        wh.publish("t", rows(range(5000)), lake_version=1, run_id="r1", mode=mode, primary_key="id")
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT") and BOOKKEEPING not in s]
    assert inserts == [f'INSERT INTO t (id, shard, value) SELECT id, shard, value FROM t{STAGING_SUFFIX}']
    assert wh.query("SELECT count(*) AS n FROM t").to_pydict() == {"n": [5000]}
    wh.dispose()


def test_stream_from_a_delta_table_and_non_arrow_input(wh: Warehouse, tmp_path: Path) -> None:
    """What the runner passes: a reader over the lake's Arrow dataset, scanned in small batches."""
    lake = tmp_path / "lake" / "models" / "m"
    write_deltalake(str(lake), rows(range(100)))
    write_deltalake(str(lake), rows(range(100, 130)), mode="append")
    reader = arrow_dataset(DeltaTable(str(lake))).scanner(batch_size=16).to_reader()
    assert wh.publish("m", reader, lake_version=1, run_id="r1") == 130
    assert content(wh, "m") == content_of(rows(range(130)))
    with pytest.raises(HeadwaterError, match="cannot publish a DataFrame") as err:
        wh.publish("m", rows(range(3)).to_pandas(), lake_version=2, run_id="r2")
    assert "pyarrow.Table" in err.value.hint
    assert book(wh, "m") == (1, "r1", 130)


def test_postgres_reader_blocked_by_the_swap_gets_the_new_table(pg_url: str) -> None:
    """A query that arrives between the swap's DROP and its COMMIT waits for the lock, then reads
    the new table (PostgreSQL looks the name up again): it neither fails nor sees a half table."""
    wh = connect(pg_url)
    wh.publish("t", rows(range(10)), lake_version=1, run_id="r1")
    dsn = wh.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    got: list[object] = []

    def read() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as con:
                got.append(con.execute("SELECT count(*) FROM t").fetchone()[0])
        except psycopg.Error as exc:  # what the test exists to rule out
            got.append(exc)

    reader = threading.Thread(target=read)

    @sa.event.listens_for(wh.engine, "after_cursor_execute")
    def during_swap(conn, cursor, statement, *rest) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("ALTER TABLE") or reader.is_alive():
            return
        reader.start()  # the old t is dropped and the new one renamed, not yet committed
        with psycopg.connect(dsn, autocommit=True) as watcher:
            for _ in range(100):
                waiting = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND query LIKE 'SELECT count(*) FROM t%'").fetchone()[0]
                if waiting:
                    break
                time.sleep(0.05)
        assert waiting == 1, "the reader should be waiting on the swap's lock"

    wh.publish("t", rows(range(25)), lake_version=2, run_id="r2")
    reader.join(timeout=30)
    assert got == [25]
    wh.dispose()
