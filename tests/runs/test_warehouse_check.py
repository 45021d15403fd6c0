"""A run that publishes checks the warehouse first (connect and a no-op): a wrong warehouse URL
fails the run at once, with one line naming the warehouse, before anything lands. The shop
pipeline (tests/support/shop.py) against real DuckDB files and a PostgreSQL port nobody listens on."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from engine import Config, Runner
from engine.errors import WarehouseError
from engine.lake import Lake
from engine.pipeline import load_pipeline
from engine.publish import connect
from engine.runs.steps import RunSummary
from tests.support.shop import write_pipeline


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_with(shop: Path, warehouse: str, select: list[str] | None = None) -> RunSummary:
    runner = Runner(load_pipeline(write_pipeline(shop)),
                    Config(lake=str(shop / "lake"), warehouse=warehouse, backend="pandas"))
    return runner.run(select=select)


def bad_warehouses(shop: Path) -> dict[str, tuple[str, str]]:
    """Wrong warehouse URLs, each with what its error must say."""
    (shop / "not-duckdb.duckdb").write_text("these are not the bytes of a DuckDB database\n")
    (shop / "a-file").write_text("")
    return {
        "server down": (f"postgresql+psycopg://etl@127.0.0.1:{free_port()}/wh",
                        "a connection check on postgresql warehouse"),
        "not a DuckDB file": (f"duckdb:///{shop / 'not-duckdb.duckdb'}", "is not a DuckDB file"),
        "a folder under a file": (f"duckdb:///{shop / 'a-file' / 'wh.duckdb'}", "cannot make the folder"),
        "not a URL": ("warehouse.duckdb", "is not a SQLAlchemy URL"),
    }


@pytest.mark.parametrize("case", ["server down", "not a DuckDB file", "a folder under a file", "not a URL"])
def test_a_wrong_warehouse_fails_the_run_before_anything_lands(shop: Path, case: str) -> None:
    url, says = bad_warehouses(shop)[case]
    started = time.perf_counter()
    summary = run_with(shop, url)
    took = time.perf_counter() - started
    assert summary.error is not None and says in summary.error and "\n" not in summary.error
    assert summary.steps == []
    assert Lake(str(shop / "lake")).tables() == []  # nothing landed, no manifest row
    assert took < 10, took  # at once, not after loading and building


def test_a_run_that_publishes_nothing_does_not_need_the_warehouse(shop: Path) -> None:
    url, _ = bad_warehouses(shop)["server down"]
    summary = run_with(shop, url, select=["raw.orders"])
    assert summary.ok, summary.error
    assert [(s.kind, s.name, s.status, s.rows) for s in summary.steps] == [("load", "orders", "landed", 4)]


def test_the_check_is_a_connect_and_a_no_op_well_under_a_second(shop: Path) -> None:
    url = f"duckdb:///{shop / 'wh.duckdb'}"
    runner = Runner(load_pipeline(write_pipeline(shop)), Config(lake=str(shop / "lake"), warehouse=url))
    runner.check_warehouse()  # imports the driver once
    started = time.perf_counter()
    runner.check_warehouse()
    assert time.perf_counter() - started < 0.5
    assert connect(url).tables() == []  # it wrote nothing


def test_ping_raises_a_retryable_warehouse_error_when_the_server_is_down() -> None:
    warehouse = connect(f"postgresql+psycopg://etl@127.0.0.1:{free_port()}/wh")
    try:
        with pytest.raises(WarehouseError) as info:
            warehouse.ping()
    finally:
        warehouse.dispose()
    assert info.value.retryable and "check the warehouse URL" in str(info.value)
