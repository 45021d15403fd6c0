"""When a step of the `headwater-elt` flow fails: the run plan's failure policy (a failed step
skips only what depends on it), retries only for retryable errors, the user's traceback in the
task's log, and clear errors for a bad pipeline or task runner."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    LogFilter,
    LogFilterTaskRunId,
)
from prefect.logging.handlers import APILogWorker

from flows import elt as elt_module
from flows import tasks
from flows.elt import elt
from tests.support.flow_shop import BAD_PIPELINE, ORDERS, by_table, read_artifacts, task_runs

pytestmark = pytest.mark.prefect


def test_unreadable_source_fails_the_flow_without_retries(
        prefect_server: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file nobody can read is a source error: retrying cannot help, so the task runs once."""
    for step_task in (tasks.load_source, tasks.build_model, tasks.publish_model):
        backoff = tasks.BACKOFF_SECONDS
        assert step_task.retries == 2 and step_task.retry_delay_seconds == [backoff, 2 * backoff]  # exponential
        assert step_task.retry_jitter_factor == tasks.RETRY_JITTER > 0
        assert step_task.retry_condition_fn is tasks.retry_if_retryable
    monkeypatch.setattr(tasks, "load_source", tasks.load_source.with_options(retry_delay_seconds=0))
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
    assert load_run.run_count == 1 and load_run.state.is_failed()
    summary = read_artifacts(state.state_details.flow_run_id, [elt_module.SUMMARY_KEY])
    assert "cannot tell the format" in summary[elt_module.SUMMARY_KEY].data  # written before failing


def test_cli_exit_code_for_a_missing_pipeline(prefect_server: dict[str, Any], tmp_path: Path) -> None:
    assert elt_module.main([str(tmp_path / "nope.py"), "--backend", "pandas"]) == 1


def test_unknown_task_runner_is_a_clear_error(prefect_server: dict[str, Any], flow_shop: dict[str, Any]) -> None:
    state = elt(flow_shop["path"], task_runner="celery", **flow_shop["settings"], return_state=True)
    exc = state.result(raise_on_failure=False)
    assert state.is_failed() and "unknown task runner 'celery'" in str(exc) and "threads, dask" in exc.hint


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
        prefect_server: dict[str, Any], flow_shop: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "half.py"
    path.write_text(FAILING_MODEL.format(orders=str(Path(flow_shop["path"]).parent / "orders" / "*.csv")))
    state = elt(str(path), lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{tmp_path}/wh.duckdb",
                backend="pandas", return_state=True)
    assert state.is_failed()
    steps = by_table(state.result(raise_on_failure=False).steps)
    rows = sum(len(f) for f in ORDERS)
    line = path.read_text().splitlines().index('    raise ValueError("boom at row " + str(len(orders)))') + 1
    assert steps["model", "models.boom"]["status"] == "failed"
    assert steps["model", "models.boom"]["detail"] == f"half.py:{line} in boom: ValueError: boom at row {rows}"
    assert [steps[k]["status"] for k in [("model", "models.after_boom"), ("publish", "boom"),
                                         ("publish", "after_boom")]] == ["skipped"] * 3
    assert steps["publish", "after_boom"]["detail"] == "upstream model 'boom' failed"
    assert (steps["model", "models.fine"]["status"], steps["publish", "fine"]["status"]) == ("built", "published")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM fine").fetchone()[0] == rows
    with get_client(sync_client=True) as client:
        (progress,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert float(progress.data) == 100.0  # skipped steps count as finished
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert "build-after_boom" not in runs and runs["build-boom"].run_count == 1  # a model error: no retry
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[runs["build-boom"].id])))
    text = "\n".join(m.message for m in logs)
    assert f'half.py", line {line}, in boom' in text  # the user's traceback is in the task's log
    assert "ValueError: boom at row" in text


def test_a_transient_storage_error_is_retried(prefect_server: dict[str, Any], flow_shop: dict[str, Any], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A lake whose S3 endpoint refuses connections fails every load with a retryable storage
    error: each load task runs three times (the first try and two retries) before the flow fails."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for var, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(var, value)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pipeline.py").write_text(Path(flow_shop["path"]).read_text())
    (folder / "headwater.toml").write_text('[storage_options]\nmax_retries = "0"\n')  # fail fast inside delta-rs
    monkeypatch.setattr(tasks, "load_source", tasks.load_source.with_options(retry_delay_seconds=0))
    state = elt(str(folder / "pipeline.py"), lake="s3://no-bucket/lake", warehouse=f"duckdb:///{tmp_path}/wh.duckdb",
                backend="pandas", return_state=True)
    assert state.is_failed()
    steps = by_table(state.result(raise_on_failure=False).steps)
    assert steps["load", "raw.orders"]["status"] == "failed" and steps["load", "raw.orders"]["retryable"]
    assert "the endpoint cannot be reached" in steps["load", "raw.orders"]["detail"]
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert runs["load-orders"].run_count == runs["load-customers"].run_count == 3
