"""The `headwater-elt` Prefect flow against the session's Prefect server (`prefect_server`,
tests/conftest.py): the shop pipeline's CSV and SQLite sources landed, two models built (one
reading the other) and published to a DuckDB warehouse, each step a task of the `steps`
subflow; artifacts, task logs and the run manifest read back (failures: test_flow_failures.py)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTaskRunId,
)
from prefect.concurrency.sync import concurrency
from prefect.logging.handlers import APILogWorker

from engine.lake import Lake
from engine.pipeline import load_pipeline
from engine.runs.lineage import mermaid
from flows import elt as elt_module
from flows import tasks
from flows.elt import elt
from tests.support.flow_shop import BIG, CUSTOMERS, ORDERS, by_table, expected_totals, read_artifacts, task_runs

pytestmark = pytest.mark.prefect


def test_first_run_lands_builds_and_publishes(first_run: dict[str, Any]) -> None:
    steps = by_table(first_run["steps"])
    totals = expected_totals()
    big = [t for t in totals if t[2] >= BIG]
    assert len(first_run["steps"]) == 6
    assert steps["load", "raw.orders"]["status"] == "landed"
    assert steps["load", "raw.orders"]["rows"] == sum(len(f) for f in ORDERS)
    assert steps["load", "raw.customers"]["rows"] == len(CUSTOMERS)
    assert steps["model", "models.order_totals"]["status"] == "built"
    assert steps["model", "models.order_totals"]["rows"] == len(totals)
    assert steps["model", "models.big_customers"]["rows"] == len(big)
    assert steps["publish", "order_totals"]["status"] == "published"
    assert steps["publish", "order_totals"]["rows"] == len(totals)
    assert steps["publish", "big_customers"]["rows"] == len(big)
    assert all(s["version"] is not None for s in first_run["steps"])


def test_warehouse_holds_the_model_rows(first_run: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    with duckdb.connect(str(flow_shop["wh"]), read_only=True) as con:
        totals = con.execute("SELECT customer_id, name, amount FROM order_totals "
                             "ORDER BY customer_id").fetchall()
        big = con.execute("SELECT customer_id FROM big_customers ORDER BY customer_id").fetchall()
    assert totals == expected_totals()
    assert big == [(c,) for c, _, amount in expected_totals() if amount >= BIG]


def test_artifacts_summarise_the_run(first_run: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    artifacts = read_artifacts(first_run["flow_run_id"], [elt_module.SUMMARY_KEY, elt_module.TABLES_KEY])
    assert set(artifacts) == {"headwater-run-summary", "headwater-tables"}
    (run_id,) = set(Lake(flow_shop["lake"]).read("raw.orders", columns=["_hw_run_id"]).column(0).to_pylist())
    markdown = artifacts["headwater-run-summary"].data
    assert run_id in markdown
    assert f"| `models.order_totals` | model | built | {len(expected_totals())} |" in markdown
    table = artifacts["headwater-tables"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [(r["table"], r["status"], r["rows"], r["version"]) for r in rows] == [
        (s["table"], s["status"], s["rows"], s["version"]) for s in first_run["steps"]]
    assert all(isinstance(r["seconds"], float) for r in rows)


def test_lineage_artifact_is_a_table_of_edges_and_a_mermaid_graph(first_run: dict[str, Any],
                                                                   flow_shop: dict[str, Any]) -> None:
    artifact = read_artifacts(first_run["flow_run_id"], [elt_module.LINEAGE_KEY])[elt_module.LINEAGE_KEY]
    table = {tuple(c.strip(" `") for c in line.strip("|").split("|")) for line in artifact.data.splitlines()
             if line.startswith("| `")}  # what the default UI shows: a markdown table
    assert table == {("raw.orders", "read by", "models.order_totals"),
                     ("raw.customers", "read by", "models.order_totals"),
                     ("models.order_totals", "read by", "models.big_customers"),
                     ("models.order_totals", "published as", "order_totals"),
                     ("models.big_customers", "published as", "big_customers")}
    graph = artifact.data.split("```mermaid\n")[1].split("```")[0]
    assert graph == mermaid(load_pipeline(flow_shop["path"]))
    labels = {line.split("[", 1)[0].strip(): line.split('"')[1] for line in graph.splitlines() if '"' in line
              and "subgraph" not in line}
    edges = {(labels[a], labels[b]) for a, b in
             (line.strip().split(" --> ") for line in graph.splitlines() if "-->" in line)}
    assert edges == {("raw.orders", "models.order_totals"), ("raw.customers", "models.order_totals"),
                     ("models.order_totals", "models.big_customers"),
                     ("models.order_totals", "order_totals"), ("models.big_customers", "big_customers")}


def test_progress_artifact_reaches_100_as_models_finish(first_run: dict[str, Any]) -> None:
    APILogWorker.drain_all(timeout=10)  # logs reach the server in batches
    with get_client(sync_client=True) as client:
        (progress,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[first_run["flow_run_id"]])))
        assert progress.key == elt_module.PROGRESS_KEY and float(progress.data) == 100.0
        (steps_run,) = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[first_run["flow_run_id"]])))
            if r.name == "steps"]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[steps_run.id])))
    # one update per step, in the order they finished
    steps = first_run["steps"]
    done = [m.message.split(" ")[1] for m in sorted(logs, key=lambda m: m.timestamp)
            if m.message.startswith("progress ")]
    assert done == [f"{i}/{len(steps)}" for i in range(1, len(steps) + 1)]


def test_task_graph(first_run: dict[str, Any]) -> None:
    """Loads wait for nothing, builds for the loads and builds of what they read, publishes for
    their build: the run plan's needs, drawn as the task graph."""
    runs = task_runs(first_run["flow_run_id"])
    names = {r.id: r.name for r in runs}
    waits = {r.name: {names[i.id] for i in r.task_inputs.get("wait_for", [])} for r in runs}
    assert waits == {
        "load-orders": set(), "load-customers": set(),
        "build-order_totals": {"load-orders", "load-customers"},
        "build-big_customers": {"build-order_totals"},
        "publish-order_totals": {"build-order_totals"},
        "publish-big_customers": {"build-big_customers"}}


def test_publishes_hold_the_warehouse_concurrency_limit(first_run: dict[str, Any],
                                                        flow_shop: dict[str, Any]) -> None:
    """With the limit's only slot held elsewhere, the flow's publish waits until it is released."""
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(tasks.WAREHOUSE_LIMIT)
    assert limit.limit == tasks.WAREHOUSE_SLOTS == 1
    held, released = threading.Event(), []

    def hold() -> None:
        with concurrency(tasks.WAREHOUSE_LIMIT, occupy=1, strict=True):
            held.set()
            time.sleep(4)
            released.append(time.time())

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(60)
    state = elt(flow_shop["path"], select="big_customers", **flow_shop["settings"], return_state=True)
    holder.join()
    assert state.is_completed(), state.message
    assert [(s["kind"], s["table"]) for s in state.result()] == [
        ("model", "models.big_customers"), ("publish", "big_customers")]
    (publish,) = [r for r in task_runs(state.state_details.flow_run_id) if r.name == "publish-big_customers"]
    assert publish.end_time.timestamp() >= released[0]  # the slot is taken even for an unchanged table


def test_select_runs_only_what_it_names(first_run: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    steps = elt(flow_shop["path"], select="raw.customers", **flow_shop["settings"])
    assert [(s["kind"], s["table"], s["status"]) for s in steps] == [("load", "raw.customers", "unchanged")]
    state = elt(flow_shop["path"], select="no_such_model", **flow_shop["settings"], return_state=True)
    assert state.is_failed() and "matches no model" in str(state.result(raise_on_failure=False))


def test_second_run_changes_nothing(first_run: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    steps = elt(flow_shop["path"], **flow_shop["settings"])
    assert [(s["kind"], s["table"]) for s in steps] == [(s["kind"], s["table"]) for s in first_run["steps"]]
    assert sum(s["rows"] for s in steps if s["kind"] == "load") == 0
    assert all(s["status"] == "unchanged" for s in steps)
    assert [s["version"] for s in steps] == [s["version"] for s in first_run["steps"]]


def test_dask_task_runner_runs_the_tasks_on_a_dask_cluster(
        prefect_server: dict[str, Any], flow_shop: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """task_runner="dask" sends every task to the scheduler at $HEADWATER_DASK_ADDRESS: a
    LocalCluster on loopback with one worker process."""
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        monkeypatch.setenv("HEADWATER_DASK_ADDRESS", cluster.scheduler_address)  # through Config
        settings = {**flow_shop["settings"], "lake": str(tmp_path / "lake"),
                    "warehouse": f"duckdb:///{tmp_path / 'wh.duckdb'}"}
        with get_task_stream(client) as stream:
            steps = elt(flow_shop["path"], **settings, task_runner="dask")
        ran_on_dask = len(stream.data)  # a record per task a Dask worker ran
    assert [s["status"] for s in steps] == ["landed"] * 2 + ["built"] * 2 + ["published"] * 2
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT customer_id, name, amount FROM order_totals "
                           "ORDER BY customer_id").fetchall() == expected_totals()
    assert ran_on_dask == len(steps)


def test_engine_logs_reach_the_task_run_log(first_run: dict[str, Any]) -> None:
    APILogWorker.drain_all(timeout=10)
    runs = {r.name: r for r in task_runs(first_run["flow_run_id"])}
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[runs["load-orders"].id])))
    engine = [m for m in logs if m.name == "headwater.runs"]
    assert [m.message.split(",")[0] for m in engine] == ["load raw.orders: landed"]


def test_flow_runs_are_recorded_in_the_run_manifest(first_run: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    from engine.runs.manifest import runs

    (run_id,) = set(Lake(flow_shop["lake"]).read("raw.orders", columns=["_hw_run_id"]).column(0).to_pylist())
    (recorded,) = [r for r in runs(Lake(flow_shop["lake"])) if r["run_id"] == run_id]
    assert recorded["status"] == "ok" and recorded["backend"] == "pandas"
    assert [(s["kind"], s["name"], s["status"], s["rows"], s["version"]) for s in recorded["steps"]] == [
        (s["kind"], s["name"], s["status"], s["rows"], s["version"]) for s in first_run["steps"]]
    built = next(s for s in recorded["steps"] if s["kind"] == "model")
    assert built["inputs"] == Lake(flow_shop["lake"]).metadata(built["table"])["inputs"]
