"""The `headwater-elt` Prefect flow against the session's Prefect server (`prefect_server`,
tests/conftest.py): a CSV source and a SQLite source landed (the `extract-load` subflow), two
models built (one reading the other) and published to a DuckDB warehouse (the `transform`
subflow), artifacts read back from the server."""
from __future__ import annotations

import importlib
import json
import sqlite3
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
    ArtifactFilterKey,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.concurrency.sync import concurrency
from prefect.logging.handlers import APILogWorker

from engine.lake import Lake
from engine.runs.lineage import mermaid
from engine.pipeline import load_pipeline
from flows import tasks
from flows import elt as elt_module
from flows.elt import elt

pytestmark = pytest.mark.prefect

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
    for order_id, customer, amount in (o for f in ORDERS for o in f):
        if customer in names:
            totals[customer] = totals.get(customer, 0.0) + amount
    return [(c, names[c], totals[c]) for c in sorted(totals)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
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
def first_run(prefect_server: dict[str, Any], shop: dict[str, Any]) -> dict[str, Any]:
    """The first flow run over the shop pipeline: its final state and returned steps."""
    state = elt(shop["path"], **shop["settings"], return_state=True)
    assert state.is_completed(), state.message
    return {"state": state, "steps": state.result(),
            "flow_run_id": state.state_details.flow_run_id}


def by_table(steps: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["kind"], s["table"]): s for s in steps}


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


def test_warehouse_holds_the_model_rows(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    with duckdb.connect(str(shop["wh"]), read_only=True) as con:
        totals = con.execute("SELECT customer_id, name, amount FROM order_totals "
                             "ORDER BY customer_id").fetchall()
        big = con.execute("SELECT customer_id FROM big_customers ORDER BY customer_id").fetchall()
    assert totals == expected_totals()
    assert big == [(c,) for c, _, amount in expected_totals() if amount >= BIG]


def read_artifacts(flow_run_id: Any, keys: list[str]) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=keys), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}


def task_runs(flow_run_id: Any) -> list[Any]:
    """The task runs of a flow run's subflows (extract-load and transform)."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        return client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[c.id for c in children])))


def test_artifacts_summarise_the_run(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    artifacts = read_artifacts(first_run["flow_run_id"], [elt_module.SUMMARY_KEY, elt_module.TABLES_KEY])
    assert set(artifacts) == {"headwater-run-summary", "headwater-tables"}
    (run_id,) = set(Lake(shop["lake"]).read("raw.orders", columns=["_hw_run_id"]).column(0).to_pylist())
    markdown = artifacts["headwater-run-summary"].data
    assert run_id in markdown
    assert f"| `models.order_totals` | model | built | {len(expected_totals())} |" in markdown
    table = artifacts["headwater-tables"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [(r["table"], r["status"], r["rows"], r["version"]) for r in rows] == [
        (s["table"], s["status"], s["rows"], s["version"]) for s in first_run["steps"]]
    assert all(isinstance(r["seconds"], float) for r in rows)


def test_lineage_artifact_is_a_mermaid_graph(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    artifact = read_artifacts(first_run["flow_run_id"], [elt_module.LINEAGE_KEY])[elt_module.LINEAGE_KEY]
    graph = artifact.data.split("```mermaid\n")[1].split("```")[0]
    assert graph == mermaid(load_pipeline(shop["path"]))
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
        (transform_run,) = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[first_run["flow_run_id"]])))
            if r.name == "transform"]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[transform_run.id])))
    # one update per build and per publish, in the order they finished
    steps = [s for s in first_run["steps"] if s["kind"] != "load"]
    done = [m.message.split(" ")[1] for m in sorted(logs, key=lambda m: m.timestamp)
            if m.message.startswith("progress ")]
    assert done == [f"{i}/{len(steps)}" for i in range(1, len(steps) + 1)]


def test_task_graph(first_run: dict[str, Any]) -> None:
    """Loads wait for nothing, builds for the models they read, publishes for their build."""
    runs = task_runs(first_run["flow_run_id"])
    names = {r.id: r.name for r in runs}
    waits = {r.name: {names[i.id] for i in r.task_inputs.get("wait_for", [])} for r in runs}
    assert waits == {
        "load-orders": set(), "load-customers": set(),
        "build-order_totals": set(),  # its inputs are raw tables, landed by the extract-load subflow
        "build-big_customers": {"build-order_totals"},
        "publish-order_totals": {"build-order_totals"},
        "publish-big_customers": {"build-big_customers"}}


def test_publishes_hold_the_warehouse_concurrency_limit(first_run: dict[str, Any],
                                                        shop: dict[str, Any]) -> None:
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
    state = elt(shop["path"], select="big_customers", **shop["settings"], return_state=True)
    holder.join()
    assert state.is_completed(), state.message
    assert [(s["kind"], s["table"]) for s in state.result()] == [
        ("model", "models.big_customers"), ("publish", "big_customers")]
    (publish,) = [r for r in task_runs(state.state_details.flow_run_id) if r.name == "publish-big_customers"]
    assert publish.end_time.timestamp() >= released[0]  # the slot is taken even for an unchanged table


def test_select_runs_only_what_it_names(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    steps = elt(shop["path"], select="raw.customers", **shop["settings"])
    assert [(s["kind"], s["table"], s["status"]) for s in steps] == [("load", "raw.customers", "unchanged")]
    state = elt(shop["path"], select="no_such_model", **shop["settings"], return_state=True)
    assert state.is_failed() and "matches no model" in str(state.result(raise_on_failure=False))


def test_second_run_changes_nothing(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    steps = elt(shop["path"], **shop["settings"])
    assert [(s["kind"], s["table"]) for s in steps] == [(s["kind"], s["table"]) for s in first_run["steps"]]
    assert sum(s["rows"] for s in steps if s["kind"] == "load") == 0
    assert all(s["status"] == "unchanged" for s in steps)
    assert [s["version"] for s in steps] == [s["version"] for s in first_run["steps"]]


def test_unreadable_source_fails_the_flow_after_retries(
        prefect_server: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load = tasks.load_source
    backoff = tasks.LOAD_BACKOFF_SECONDS
    assert load.retries == 2 and load.retry_delay_seconds == [backoff, 2 * backoff]  # exponential
    assert load.retry_jitter_factor == tasks.LOAD_RETRY_JITTER > 0
    monkeypatch.setattr(tasks, "load_source", load.with_options(retry_delay_seconds=0))  # no waiting
    (tmp_path / "bad.data").write_text("a,b\n1,2\n")  # bad rows are quarantined; an unknown format fails
    path = tmp_path / "broken.py"
    path.write_text(BAD_PIPELINE.format(path=str(tmp_path / "bad.data")))
    state = elt(str(path), lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{tmp_path}/wh.duckdb",
                backend="pandas", return_state=True)
    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, elt_module.PipelineFailed)
    steps = by_table(exc.steps)
    assert steps["load", "raw.bad"]["status"] == "failed"
    assert "cannot tell the format" in steps["load", "raw.bad"]["detail"]
    assert steps["model", "models.copy_of_bad"]["status"] == "skipped"
    assert steps["publish", "copy_of_bad"]["status"] == "skipped"
    load_run = next(r for r in task_runs(state.state_details.flow_run_id) if r.name == "load-bad")
    assert load_run.run_count == 3 and load_run.state.is_failed()
    summary = read_artifacts(state.state_details.flow_run_id, [elt_module.SUMMARY_KEY])
    assert "cannot tell the format" in summary[elt_module.SUMMARY_KEY].data  # written before failing


def test_cli_exit_code_for_a_missing_pipeline(prefect_server: dict[str, Any], tmp_path: Path) -> None:
    assert elt_module.main([str(tmp_path / "nope.py"), "--backend", "pandas"]) == 1


def test_unknown_task_runner_is_a_clear_error(prefect_server: dict[str, Any], shop: dict[str, Any]) -> None:
    state = elt(shop["path"], task_runner="celery", **shop["settings"], return_state=True)
    exc = state.result(raise_on_failure=False)
    assert state.is_failed() and "unknown task runner 'celery'" in str(exc) and "threads, dask" in exc.hint


def test_dask_task_runner_runs_the_tasks_on_a_dask_cluster(
        prefect_server: dict[str, Any], shop: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """task_runner="dask" sends every task to the scheduler at $HEADWATER_DASK_ADDRESS: a
    LocalCluster on loopback with one worker process."""
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        monkeypatch.setenv(elt_module.DASK_ADDRESS_ENV, cluster.scheduler_address)
        settings = {**shop["settings"], "lake": str(tmp_path / "lake"),
                    "warehouse": f"duckdb:///{tmp_path / 'wh.duckdb'}"}
        with get_task_stream(client) as stream:
            steps = elt(shop["path"], **settings, task_runner="dask")
        ran_on_dask = len(stream.data)  # a record per task a Dask worker ran
    assert [s["status"] for s in steps] == ["landed"] * 2 + ["built"] * 2 + ["published"] * 2
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT customer_id, name, amount FROM order_totals "
                           "ORDER BY customer_id").fetchall() == expected_totals()
    assert ran_on_dask == len(steps)


FAILING_MODEL = '''
from engine import Pipeline, model, sources

orders = sources.files("orders", {orders!r})


@model(inputs={{"orders": "raw.orders"}})
def boom(orders):
    raise ValueError("boom at row " + str(len(orders)))


@model(inputs={{"boom": "boom"}})
def after_boom(boom):
    return boom


@model(inputs={{"orders": "raw.orders"}})
def fine(orders):
    return orders[["order_id"]]


pipeline = Pipeline("half", sources=[orders], models=[boom, after_boom, fine])
'''


def test_failed_model_skips_downstream_and_the_rest_still_runs(
        prefect_server: dict[str, Any], shop: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "half.py"
    path.write_text(FAILING_MODEL.format(orders=str(Path(shop["path"]).parent / "orders" / "*.csv")))
    state = elt(str(path), lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{tmp_path}/wh.duckdb",
                backend="pandas", return_state=True)
    assert state.is_failed()
    steps = by_table(state.result(raise_on_failure=False).steps)
    rows = sum(len(f) for f in ORDERS)
    assert steps["model", "models.boom"]["status"] == "failed"
    assert steps["model", "models.boom"]["detail"] == f"ValueError: boom at row {rows}"
    assert [steps[k]["status"] for k in [("model", "models.after_boom"), ("publish", "boom"),
                                         ("publish", "after_boom")]] == ["skipped"] * 3
    assert (steps["model", "models.fine"]["status"], steps["publish", "fine"]["status"]) == ("built", "published")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM fine").fetchone()[0] == rows
    with get_client(sync_client=True) as client:
        (progress,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert float(progress.data) == 100.0  # skipped steps count as finished


def test_flow_runs_are_recorded_in_the_run_manifest(first_run: dict[str, Any], shop: dict[str, Any]) -> None:
    from engine.runs.manifest import runs

    (run_id,) = set(Lake(shop["lake"]).read("raw.orders", columns=["_hw_run_id"]).column(0).to_pylist())
    (recorded,) = [r for r in runs(Lake(shop["lake"])) if r["run_id"] == run_id]
    assert recorded["status"] == "ok" and recorded["backend"] == "pandas"
    assert [(s["kind"], s["name"], s["status"], s["rows"], s["version"]) for s in recorded["steps"]] == [
        (s["kind"], s["name"], s["status"], s["rows"], s["version"]) for s in first_run["steps"]]
    built = next(s for s in recorded["steps"] if s["kind"] == "model")
    assert built["inputs"] == Lake(shop["lake"]).metadata(built["table"])["inputs"]
