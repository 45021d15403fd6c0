"""A PostgreSQL replace while a long reader holds the old table: the swap waits its turn in
short `lock_timeout` tries, so the reader delays the publish but other readers never queue
behind it long enough to hit their own statement timeout. On a real PostgreSQL server."""
from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from engine.errors import WarehouseError
from engine.publish import BOOKKEEPING, connect
from engine.publish.postgres import PostgresWarehouse

HOLD_S = 4.0  # how long the long reader keeps its transaction (and its lock on the old table) open
READERS = 4  # other readers polling the table meanwhile
READER_TIMEOUT = "1s"  # each of their queries' statement_timeout
POLL_S = 0.1


def rows(n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int64()), "v": [float(i) for i in range(n)]})


def dsn(wh: PostgresWarehouse) -> str:
    return wh.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def hold(url: str, seconds: float, holding: threading.Event) -> None:
    """A reader that opens a transaction, reads t and keeps the transaction open for `seconds`."""
    with psycopg.connect(url) as con:  # not autocommit: the SELECT's lock lasts until commit
        con.execute("SELECT count(*) FROM t").fetchone()
        holding.set()
        time.sleep(seconds)
        con.commit()


def poll(url: str, stop: threading.Event, results: list[Any]) -> None:
    """Read t's row count every POLL_S with a short statement timeout until `stop`; record each
    count or error."""
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"SET statement_timeout = '{READER_TIMEOUT}'")
        while not stop.is_set():
            try:
                results.append(con.execute("SELECT count(*) FROM t").fetchone()[0])
            except psycopg.Error as exc:
                results.append(exc)
            time.sleep(POLL_S)


def test_a_held_reader_delays_the_swap_without_failing_other_readers(pg_url: str) -> None:
    wh = connect(pg_url)
    assert isinstance(wh, PostgresWarehouse)
    wh.publish("t", rows(1000), lake_version=1, run_id="r1")
    url = dsn(wh)
    holding, stop = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold, args=(url, HOLD_S, holding))
    holder.start()
    assert holding.wait(10)
    results: list[list[Any]] = [[] for _ in range(READERS)]
    pollers = [threading.Thread(target=poll, args=(url, stop, r)) for r in results]
    for p in pollers:
        p.start()
    time.sleep(0.5)  # the pollers are reading before the publish starts
    started = time.monotonic()
    wh.publish("t", rows(2000), lake_version=2, run_id="r2")
    took = time.monotonic() - started
    time.sleep(0.5)  # and after it ends
    stop.set()
    for p in pollers:
        p.join(30)
    holder.join(30)
    wh.dispose()

    polls = [r for rs in results for r in rs]
    failures = [r for r in polls if isinstance(r, BaseException)]
    print(f"\nswap under a {HOLD_S:.0f} s reader: {len(polls)} polls by {READERS} readers "
          f"(statement_timeout {READER_TIMEOUT}), {len(failures)} failed, publish took {took:.2f} s")
    assert failures == [], f"{len(failures)} of {len(polls)} polls failed: {failures[:3]}"
    assert set(polls) <= {1000, 2000} and 1000 in polls and 2000 in polls
    assert took >= HOLD_S - 1.0  # it did wait for the long reader (who held it from before the publish)
    with psycopg.connect(url, autocommit=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2000
        assert con.execute(f"SELECT lake_version FROM {BOOKKEEPING} WHERE name = 't'").fetchone()[0] == 2


def test_a_reader_that_never_lets_go_fails_the_publish_retryably(pg_url: str) -> None:
    wh = connect(pg_url)
    assert isinstance(wh, PostgresWarehouse)
    wh.publish("t", rows(10), lake_version=1, run_id="r1")
    wh.swap_wait_s = 1.5  # give up after this long
    holding = threading.Event()
    holder = threading.Thread(target=hold, args=(dsn(wh), 4.0, holding))
    holder.start()
    assert holding.wait(10)
    started = time.monotonic()
    try:
        with pytest.raises(WarehouseError, match="another session holds 't'") as err:
            wh.publish("t", rows(20), lake_version=2, run_id="r2")
        took = time.monotonic() - started
    finally:
        holder.join(30)
    assert err.value.retryable and "\n" not in str(err.value)
    assert 1.5 <= took < 3.0  # gave up at swap_wait_s (plus one lock_timeout try), not when the reader let go
    with psycopg.connect(dsn(wh), autocommit=True) as con:  # the old table and its bookkeeping stay
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 10
        assert con.execute(f"SELECT lake_version FROM {BOOKKEEPING} WHERE name = 't'").fetchone()[0] == 1
        names = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert names == {"t", BOOKKEEPING}  # no staging table left
    wh.dispose()
