"""The Prefect path in a container, as the compose stack's worker runs it: the session's Prefect
server on this machine's loopback (tests/conftest.py; the containers share the host's network), a
process work pool, prefect.yaml's `photo-popularity-process` deployment registered by `headwater
deploy` from inside the image (its build step records the folder it runs in, /opt/headwater, where
the image keeps the code, and its pull step changes into it on the worker), a flow run, and a
container of the CPU image running `prefect worker start --pool headwater-process --run-once`. The
flow run must end COMPLETED, and the volume hold the example's tables, checked by value against the
independent pandas oracle. The worker's container is gone before the test ends (so before the
server), and the deployment and pool it made are deleted for the flow tests that share the server.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.exceptions import ObjectNotFound

from engine.demo.generate import generate
from tests.support.containers import Podman, assert_demo_folder
from tests.support.flow_shop import wait_for_final

pytestmark = [pytest.mark.containers, pytest.mark.prefect, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
POOL = "headwater-process"
DEPLOYMENT = "photo-popularity-process"
CODE = "/opt/headwater"  # where the image keeps the source (docker/Dockerfile's WORKDIR for COPY)
DATA = "/data/data/photo_popularity"  # prefect.yaml's PHOTO_POPULARITY_DATA for container runs


def delete_deployment_and_pool() -> None:
    with get_client(sync_client=True) as client:
        try:
            client.delete_deployment(client.read_deployment_by_name(f"headwater-elt/{DEPLOYMENT}").id)
        except ObjectNotFound:
            pass
        try:
            client.delete_work_pool(POOL)
        except ObjectNotFound:
            pass


@pytest.fixture
def pool_and_deployment(podman: Podman, image: str, prefect_server: dict[str, Any]) -> Iterator[Any]:
    """The process pool and the deployment, made for this test and deleted after it: the flow tests
    on the same server make their own."""
    delete_deployment_and_pool()
    try:
        made = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
                              env=prefect_server["env"], capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        # `headwater deploy` in the image, from /opt/headwater, with the repository's prefect.yaml there
        deployed = podman.run(image, "deploy", "--name", DEPLOYMENT, entrypoint="headwater", workdir=CODE,
                              volumes=(f"{REPO / 'prefect.yaml'}:{CODE}/prefect.yaml:ro",),
                              env={"PREFECT_API_URL": prefect_server["url"], "COLUMNS": "200"}, timeout=180)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with get_client(sync_client=True) as client:
            yield client.read_deployment_by_name(f"headwater-elt/{DEPLOYMENT}")
    finally:
        delete_deployment_and_pool()


def test_worker_in_a_container_runs_the_deployment_to_completed(
        podman: Podman, image: str, image_user: tuple[int, int], prefect_server: dict[str, Any],
        pool_and_deployment: Any, new_volume: Callable[[], tuple[str, Path]],
        container_times: dict[str, float]) -> None:
    deployment = pool_and_deployment
    assert deployment.work_pool_name == POOL
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": CODE}}]

    volume, root = new_volume()  # the example's data, generated here, in the volume the worker mounts
    generate(root / "data" / "photo_popularity", seed=18, users=40, photos=150, days=10)
    uid, gid = image_user
    for path in (root, *root.rglob("*")):
        os.chown(path, uid, gid)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment.id)

    name = f"hwtest-worker-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    try:
        worker = podman.run(image, "worker", "start", "--pool", POOL, "--run-once", entrypoint="prefect",
                            volumes=(f"{volume}:/data",), name=name, timeout=300,
                            env={"PREFECT_API_URL": prefect_server["url"], "PHOTO_POPULARITY_DATA": DATA})
    finally:  # a worker that timed out is still running: it goes before the server does
        podman("rm", "--force", "--ignore", name, check=False)
    container_times["prefect worker run"] = time.monotonic() - start
    output = worker.stdout + worker.stderr
    log = output[-6000:]
    assert worker.returncode == 0, log

    run = wait_for_final(flow_run.id, 30)
    assert run.state.is_completed(), f"{run.state}\n{log}"
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
    assert [(c.name, c.state_name) for c in children] == [("steps", "Completed")]
    assert str(flow_run.id) in output  # this worker, in the container, ran it
    assert_demo_folder(root)  # lake, warehouse and training set, by value, from the volume
    assert (root / "warehouse.duckdb").stat().st_uid == uid
