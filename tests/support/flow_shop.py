"""The shop pipeline the Prefect flow tests run (two sources, two models), what it should
produce, and readers of what a flow run left on the Prefect server (and of when it ended)."""
from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)

ORDERS = [[(1, 1, 10.0), (2, 2, 25.5), (3, 1, 40.0)],  # two CSV files of (order_id, customer_id, amount)
          [(4, 3, 5.0), (5, 2, 30.0), (6, 9, 99.0)]]  # customer 9 is unknown: the join drops it
CUSTOMERS = [(1, "ada"), (2, "bob"), (3, "cy"), (4, "dee")]
BIG = 50.0

PIPELINE = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", {orders!r})
customers = sources.sql("customers", {db!r}, table="customers", cursor="customer_id")


@model(inputs={{"orders": "raw.orders", "customers": "raw.customers"}})
def order_totals(orders, customers):
    joined = orders[["customer_id", "amount"]].merge(customers[["customer_id", "name"]], on="customer_id")
    out = joined.groupby(["customer_id", "name"], as_index=False)["amount"].sum()
    return out.sort_values("customer_id").reset_index(drop=True)


@model(inputs={{"totals": "order_totals"}})
def big_customers(totals):
    return totals[totals["amount"] >= {big}].reset_index(drop=True)


pipeline = Pipeline("shop", sources=[orders, customers], models=[order_totals, big_customers])
'''

BAD_PIPELINE = '''
from engine import Pipeline, model, sources

bad = sources.files("bad", {path!r})


@model(inputs={{"bad": "raw.bad"}})
def copy_of_bad(bad):
    return bad


pipeline = Pipeline("broken", sources=[bad], models=[copy_of_bad])
'''


def expected_totals() -> list[tuple[int, str, float]]:
    """order_totals computed here from the rows written: amount per known customer."""
    names = dict(CUSTOMERS)
    totals: dict[int, float] = {}
    for _order_id, customer, amount in (o for f in ORDERS for o in f):
        if customer in names:
            totals[customer] = totals.get(customer, 0.0) + amount
    return [(c, names[c], totals[c]) for c in sorted(totals)]


def by_table(steps: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["kind"], s["table"]): s for s in steps}


def read_artifacts(flow_run_id: Any, keys: list[str]) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=keys), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}


def task_runs(flow_run_id: Any) -> list[Any]:
    """The task runs of a flow run's subflow (`steps`: every step of the run plan)."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        return client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[c.id for c in children])))


def wait_for_final(flow_run_id: Any, timeout: float) -> Any:
    """The flow run once it is in a final state (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run still {run.state_name} after {timeout} s"
            time.sleep(1)
