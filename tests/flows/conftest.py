"""Fixtures of the Prefect flow tests: the shop pipeline's files, and its first flow run."""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from flows.elt import elt
from tests.support.flow_shop import BIG, CUSTOMERS, ORDERS, PIPELINE


@pytest.fixture(scope="module")
def flow_shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The pipeline file, its data, and where its lake and warehouse go."""
    root = tmp_path_factory.mktemp("shop")
    (root / "orders").mkdir()
    for i, rows in enumerate(ORDERS):
        lines = ["order_id,customer_id,amount"] + [f"{o},{c},{a}" for o, c, a in rows]
        (root / "orders" / f"orders_{i}.csv").write_text("\n".join(lines) + "\n")
    with sqlite3.connect(root / "crm.sqlite") as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", CUSTOMERS)
    conn.close()
    path = root / "shop_pipeline.py"
    path.write_text(PIPELINE.format(orders=str(root / "orders" / "*.csv"),
                                    db=f"sqlite:///{root / 'crm.sqlite'}", big=BIG))
    return {"path": str(path), "lake": str(root / "lake"), "wh": root / "wh.duckdb",
            "settings": {"lake": str(root / "lake"), "warehouse": f"duckdb:///{root / 'wh.duckdb'}",
                         "backend": "pandas"}}


@pytest.fixture(scope="module")
def first_run(prefect_server: dict[str, Any], flow_shop: dict[str, Any]) -> dict[str, Any]:
    """The first flow run over the shop pipeline: its final state and returned steps."""
    state = elt(flow_shop["path"], **flow_shop["settings"], return_state=True)
    assert state.is_completed(), state.message
    return {"state": state, "steps": state.result(),
            "flow_run_id": state.state_details.flow_run_id}
