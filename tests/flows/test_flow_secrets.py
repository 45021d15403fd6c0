"""No secret reaches Prefect: the `headwater-elt` flow over a pipeline whose lake is on S3 (moto,
its secret key in the environment), whose warehouse is PostgreSQL (a password in
HEADWATER_WAREHOUSE), with a model whose error quotes both and a SQL source whose URL carries a
third. Each secret is looked for in every artifact, every log line and every flow and task run
(names, parameters, state messages) of the flow run and its subflow, in the Prefect server's own
database files, and in the run manifest the flow writes."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker

from engine import redact
from engine.lake import Lake
from engine.lake.storage import AWS_ENV
from engine.runs.manifest import RUNS
from flows import tasks
from flows.elt import PipelineFailed, elt
from tests.cli.test_secrets import PIPELINE
from tests.support.s3 import S3Server

pytestmark = pytest.mark.prefect


def test_no_secret_reaches_prefect(prefect_server: dict[str, Any], pg_url: str, s3_server: S3Server,
                                   s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_remembered", set())
    monkeypatch.setattr(tasks, "load_source", tasks.load_source.with_options(retry_delay_seconds=0))
    for var in AWS_ENV + ("AWS_PROFILE",):
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    password, crm_password = "S3cret-" + uuid.uuid4().hex[:10], "Crm-" + uuid.uuid4().hex[:10]
    warehouse = sa.make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    monkeypatch.setenv("HEADWATER_WAREHOUSE", warehouse)
    secrets = [password, s3_server.secret, crm_password]
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "a.csv").write_text("order_id,customer_id,amount\n1,1,10.5\n2,1,4.5\n3,2,7.0\n")
    path = tmp_path / "leaky.py"
    path.write_text(PIPELINE.format(orders=str(tmp_path / "orders" / "*.csv"), aws_secret=s3_server.secret,
                                    crm=f"postgresql+psycopg://crm_user:{crm_password}@127.0.0.1:1/crm"))

    state = elt(str(path), lake=f"s3://{s3_bucket}/lake", backend="pandas", return_state=True)
    assert state.is_failed()
    failed = state.result(raise_on_failure=False)
    assert isinstance(failed, PipelineFailed)
    details = {(s["kind"], s["name"]): s for s in failed.steps}
    assert details["model", "leaky"]["status"] == "failed" and "with key ***" in details["model", "leaky"]["detail"]
    assert details["publish", "totals"]["status"] == "published"
    APILogWorker.drain_all(timeout=10)

    flow_run_id = state.state_details.flow_run_id
    outputs: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [flow_run_id] + [c.id for c in children]
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        outputs["flow runs"] = json.dumps([r.model_dump(mode="json") for r in runs])
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        outputs["task runs"] = json.dumps([r.model_dump(mode="json") for r in task_runs])
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        outputs["logs"] = "\n".join(f"{m.name} {m.message}" for m in logs)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        outputs["artifacts"] = json.dumps([a.model_dump(mode="json") for a in artifacts])
    assert {"headwater-run-summary", "headwater-tables", "headwater-lineage"} <= {a.key for a in artifacts}
    assert "with key ***" in outputs["artifacts"]  # the leaky model's error, masked
    assert any(m.name == "headwater.runs" for m in logs)  # the engine's own log lines came through
    assert "Traceback" in outputs["logs"]  # the failed task's traceback, masked

    home = Path(prefect_server["root"]) / "home"
    outputs["server database"] = "".join(
        f.read_bytes().decode("utf-8", "replace") for f in home.rglob("*.db*") if f.is_file())
    assert "with key ***" in outputs["server database"]  # what the flow sent is in there, as text

    lake = Lake(f"s3://{s3_bucket}/lake", s3_server.env())
    (row,) = [r for r in lake.read(RUNS).to_pylist() if r["status"] == "failed"]
    outputs["runs table"] = json.dumps(row, default=str)

    found = {where: [s[:4] for s in secrets if s in text] for where, text in outputs.items()
             if any(s in text for s in secrets)}
    assert found == {}, f"secrets found in {sorted(found)}"
