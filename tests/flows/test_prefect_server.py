"""End to end on a real Prefect server: `prefect server start` on loopback, a process work pool,
`headwater deploy` of prefect.yaml's process deployment, `prefect deployment run`, a worker with
`--run-once`; the flow run must end COMPLETED and the warehouse hold the example's tables. Then
`headwater serve` runs the same flow as its own deployment. Every Prefect process is a real
subprocess with its own PREFECT_HOME; the worker is stopped before the server. The server is the
session's `prefect_server` (tests/conftest.py), shared with the other Prefect tests."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from typing import Any

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)

from engine.demo.generate import generate
from engine.demo.pipeline import make_pipeline
from engine.errors import HeadwaterError
from engine.lake import Lake
from flows.deploy import deploy
from tests.support.demo import assert_matches_oracle
from tests.support.flow_shop import wait_for_final
from tests.support.processes import ROOT, start, stop

pytestmark = pytest.mark.prefect

POOL = "headwater-process"
DEPLOYMENT = "photo-popularity-process"
MODELS = tuple(m.name for m in make_pipeline("unused").models)  # what the example builds


def prefect(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def example(prefect_server: dict[str, Any]) -> dict[str, Any]:
    """The photo-popularity data generated under tmp, and where its lake and warehouse go."""
    directory = prefect_server["root"] / "example"
    data = directory / "data" / "photo_popularity"
    generate(data, seed=11, users=40, photos=150, days=10)
    env = {**prefect_server["env"], "PHOTO_POPULARITY_DATA": str(data), "HEADWATER_LAKE": str(directory / "lake"),
           "HEADWATER_WAREHOUSE": f"duckdb:///{directory / 'warehouse.duckdb'}", "HEADWATER_BACKEND": "pandas"}
    return {"dir": directory, "data": data, "env": env}


def table_artifact(flow_run_id: Any) -> list[dict[str, Any]]:
    import json

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["headwater-tables"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


@pytest.fixture(scope="module")
def deployed_run(prefect_server: dict[str, Any], example: dict[str, Any]) -> Any:
    """Pool, deployment, flow run, and one worker pass; the worker always stops before the server."""
    env = prefect_server["env"]
    prefect("work-pool", "create", POOL, "--type", "process", env=env)
    deployed = subprocess.run([sys.executable, "-m", "engine.cli", "deploy", "--name", DEPLOYMENT],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    prefect("deployment", "run", f"headwater-elt/{DEPLOYMENT}", env=env)
    with get_client(sync_client=True) as client:
        (deployment,) = client.read_deployments(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=[DEPLOYMENT])))
        (flow_run,) = client.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=[DEPLOYMENT])))
    log = prefect_server["root"] / "worker.log"
    worker = start([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
                   example["env"], log, cwd=example["dir"].parent)
    try:
        worker.wait(150)
    finally:
        stop(worker)
    run = wait_for_final(flow_run.id, 30)
    return {"deployment": deployment, "flow_run": run, "worker_log": log.read_text()}


def test_deployment_is_what_prefect_yaml_says(deployed_run: dict[str, Any]) -> None:
    import yaml

    spec = next(d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
                if d["name"] == DEPLOYMENT)
    deployment = deployed_run["deployment"]
    assert deployment.work_pool_name == POOL == spec["work_pool"]["name"]
    assert deployment.entrypoint == spec["entrypoint"] == "flows/elt.py:elt"
    assert deployment.parameters == spec["parameters"]
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 6 * * *" and schedule.schedule.timezone == "UTC"
    assert schedule.active is False  # daily, but inactive until someone turns it on
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]


def test_worker_runs_the_flow_to_completed(deployed_run: dict[str, Any]) -> None:
    run = deployed_run["flow_run"]
    assert run.state.is_completed(), f"{run.state}\n{deployed_run['worker_log'][-4000:]}"
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
    assert [(c.name, c.state_name) for c in children] == [("steps", "Completed")]


def test_warehouse_holds_the_lake_tables(deployed_run: dict[str, Any], example: dict[str, Any]) -> None:
    assert deployed_run["flow_run"].state.is_completed()
    lake = Lake(str(example["dir"] / "lake"))
    with closing(sqlite3.connect(example["data"] / "photos.sqlite")) as db:
        users = db.execute("select count(*) from users").fetchone()[0]
    assert lake.read("raw.users").num_rows == users
    with duckdb.connect(str(example["dir"] / "warehouse.duckdb"), read_only=True) as con:
        for model in MODELS:
            want = lake.read(f"models.{model}")
            got = con.execute(f"select count(*) from {model}").fetchone()[0]
            assert want.num_rows > 0 and got == want.num_rows, model
    assert_matches_oracle(example["dir"])  # training_set row for row against plain pandas
    rows = table_artifact(deployed_run["flow_run"].id)
    assert {(r["kind"], r["status"]) for r in rows} == {("load", "landed"), ("model", "built"),
                                                        ("publish", "published")}


def test_serve_runs_the_flow_as_its_own_deployment(deployed_run: dict[str, Any], prefect_server: dict[str, Any],
                                                   example: dict[str, Any]) -> None:
    """After the worker's run, a served run of the same pipeline changes nothing."""
    log = prefect_server["root"] / "serve.log"
    served = start([sys.executable, "-m", "engine.cli", "serve", str(ROOT / "examples/photo_popularity/pipeline.py"),
                    "--name", "e2e-serve"], example["env"], log)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 90
            while not client.read_deployments(deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["e2e-serve"]))):
                assert served.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(1)
            flow_run = client.create_flow_run_from_deployment(
                client.read_deployment_by_name("headwater-elt/e2e-serve").id)
        run = wait_for_final(flow_run.id, 120)
    finally:
        stop(served)
    assert run.state.is_completed(), f"{run.state}\n{log.read_text()[-4000:]}"
    assert {r["status"] for r in table_artifact(run.id)} == {"unchanged"}


def test_deploy_to_a_missing_pool_says_how_to_create_it(prefect_server: dict[str, Any]) -> None:
    with pytest.raises(HeadwaterError, match="work pool 'headwater-docker' does not exist") as err:
        deploy(["photo-popularity-docker"])
    assert err.value.hint == "create it: prefect work-pool create headwater-docker --type docker"
