"""The pipeline two runs race on (tests/runs/test_concurrent_runs.py, tests/flows/
test_concurrent_flows.py): CSV files a day at a time, an incremental model and a table model
over it; what it should hold, computed here."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from engine.lake import Lake

FILES, ROWS = 3, 4000  # rows per file: enough that two loads overlap
PIPELINE = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", {orders!r})


@model(inputs={{"orders": "raw.orders"}}, materialized="incremental")
def order_log(orders):
    return orders[["order_id", "customer", "amount"]]


@model(inputs={{"log": "order_log"}})
def totals(log):
    return log.groupby("customer", as_index=False)["amount"].sum()


pipeline = Pipeline("race", sources=[orders], models=[order_log, totals])
'''


def write_day(folder: Path, day: int) -> Counter[int]:
    """Day `day`'s CSV files; the amount per customer they add, computed here."""
    (folder / "orders").mkdir(parents=True, exist_ok=True)
    added: Counter[int] = Counter()
    for f in range(FILES):
        lines = ["order_id,customer,amount"]
        for i in range(ROWS):
            order = (day * FILES + f) * ROWS + i
            lines.append(f"{order},{order % 7},{order % 100 / 4}")
            added[order % 7] += order % 100 / 4
        (folder / "orders" / f"day{day}-{f}.csv").write_text("\n".join(lines) + "\n")
    return added


def check_exactly_once(lake: Lake, expected: dict[int, float]) -> None:
    every = list(range(2 * FILES * ROWS))
    assert sorted(lake.read("raw.orders").column("order_id").to_pylist()) == every
    assert sorted(lake.read("models.order_log").column("order_id").to_pylist()) == every
    totals = {r["customer"]: r["amount"] for r in lake.read("models.totals").to_pylist()}
    assert totals == pytest.approx(expected)


