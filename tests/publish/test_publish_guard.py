"""A publish based on what the caller found published (`based_on`) changes nothing when another
run published the table since, so two runs can never append or merge the same rows twice; on
PostgreSQL two such publishes at once take turns on the table's advisory lock."""
from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from engine.errors import ConcurrentRunError
from engine.lake import Based
from engine.publish import BOOKKEEPING, Warehouse, connect


def rows(ids: range) -> pa.Table:
    return pa.table({"id": pa.array(list(ids), pa.int64()), "v": pa.array([float(i) for i in ids])})


def state(wh: Warehouse, name: str) -> tuple[list[int], list[tuple[int, str]]]:
    ids = sorted(r["id"] for r in wh.query(f"SELECT id FROM {name}").to_pylist())
    book = [(r["lake_version"], r["run_id"]) for r in
            wh.query(f"SELECT lake_version, run_id FROM {BOOKKEEPING} WHERE name = '{name}'").to_pylist()]
    return ids, book


@pytest.mark.parametrize("mode", ["append", "merge", "replace"])
def test_a_publish_based_on_a_stale_version_changes_nothing(wh: Warehouse, mode: str) -> None:
    wh.publish("t", rows(range(3)), lake_version=1, run_id="r1", mode="append", based_on=Based(None))
    wh.publish("t", rows(range(3, 6)), lake_version=2, run_id="r2", mode=mode, primary_key="id",
               based_on=Based(1))
    before = state(wh, "t")
    with pytest.raises(ConcurrentRunError, match=r"warehouse table 't': another run published lake version 2 "
                                                 r"while this run was publishing from 1; this run changed nothing"):
        wh.publish("t", rows(range(3, 6)), lake_version=2, run_id="r3", mode=mode, primary_key="id",
                   based_on=Based(1))  # the same new rows again, from what it read before r2
    assert state(wh, "t") == before
    assert before[1] == [(2, "r2")]


def test_two_appends_at_once_land_once_on_postgres(pg_url: str) -> None:
    warehouses = [connect(pg_url) for _ in range(2)]
    warehouses[0].publish("t", rows(range(3)), lake_version=1, run_id="r0", mode="append", based_on=Based(None))
    go = threading.Barrier(2)
    outcomes: list[str] = []

    def publish(wh: Warehouse, run: str) -> None:
        go.wait()
        try:
            wh.publish("t", rows(range(3, 50_003)), lake_version=2, run_id=run, mode="append", based_on=Based(1))
            outcomes.append("published")
        except ConcurrentRunError:
            outcomes.append("refused")

    threads = [threading.Thread(target=publish, args=(wh, f"r{i + 1}")) for i, wh in enumerate(warehouses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ids, book = state(warehouses[0], "t")
    for wh in warehouses:
        wh.dispose()
    assert sorted(outcomes) == ["published", "refused"]
    assert ids == list(range(50_003))  # the new rows once
    assert [v for v, _ in book] == [2]
