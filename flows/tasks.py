"""Prefect tasks over single Runner steps: load one source, build one model, publish one model.

Tasks pass only strings and small dicts. Each task makes its own `Runner` from the pipeline
path and the flow's settings (and closes it, with the backend it resolved, when the step is
done), so no frame, connection or pipeline object crosses a task boundary, and tasks run the
same on threads and on Dask workers in other processes.

A failed step raises `StepFailed` from the step's own exception, so the task run fails with the
user's traceback in its log. Every task retries, with backoff, only a step whose error is
retryable (a store or warehouse that cannot be reached, a lock, another run's commit); a bad
setting or a model that raises fails at once.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging.handlers import APILogHandler
from prefect.states import State
from prefect.tasks import exponential_backoff

from engine.config import Config
from engine.pipeline import Pipeline, load_pipeline
from engine.redact import MaskFilter, guard
from engine.runs.runner import Runner
from engine.runs.steps import Step

RETRIES = 2
BACKOFF_SECONDS = 2.0  # first retry after ~2 s, the second after ~4 s
RETRY_JITTER = 0.5  # each delay varies by up to ±50%, so parallel tasks do not retry in step
WAREHOUSE_LIMIT = "headwater-warehouse"  # global concurrency limit held by every publish
WAREHOUSE_SLOTS = 1  # created with one slot: DuckDB takes one writer; raise it for a server warehouse

Settings = dict[str, str | None]  # lake / warehouse / backend as given to the flow (None: not set)
StepDict = dict[str, Any]  # a `Step.to_dict()`


class StepFailed(Exception):
    """A Runner step ended `failed`: the message is the step's detail, `.step` the whole step,
    `.retryable` whether running it again unchanged may succeed."""

    def __init__(self, detail: str, step: StepDict) -> None:
        super().__init__(detail, step)  # both in args, so the exception pickles
        self.step = step

    @property
    def retryable(self) -> bool:
        return bool(self.step.get("retryable"))

    def __str__(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:  # logs show the message, not every step
        return f"{type(self).__name__}({self.args[0]!r})"


def retry_if_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry a failed step only when its error is retryable."""
    return bool(getattr(state.result(raise_on_failure=False), "retryable", False))


class _RunLogHandler(APILogHandler):
    """Sends the engine's log records (the `headwater` loggers) to the Prefect API while a flow
    or task run is active here, so they show in that run's log; silent outside runs."""

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


# Prefect's own loggers of flow and task runs: they log a failed task's exception, whose cause
# is the step's error, traceback and all.
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def _capture_engine_logs() -> None:
    engine_log = logging.getLogger("headwater")
    if not any(isinstance(h, _RunLogHandler) for h in engine_log.handlers):
        handler = _RunLogHandler(level=logging.INFO)
        handler.addFilter(MaskFilter())  # every record it sends, whichever headwater logger made it
        engine_log.addHandler(handler)
        if engine_log.level == logging.NOTSET or engine_log.level > logging.INFO:
            engine_log.setLevel(logging.INFO)
    guard(PREFECT_RUN_LOGGERS)


_capture_engine_logs()

_loaded: dict[tuple[str, float], Pipeline] = {}
_loading = threading.Lock()


def pipeline_at(target: str) -> Pipeline:
    """The pipeline `target` defines, executed once per version of its file (tasks share it)."""
    path = Path(target)
    key = (str(path.resolve()), path.stat().st_mtime_ns) if path.exists() else (target, 0)
    with _loading:  # task threads must not execute the user's file at the same time
        if key not in _loaded:
            _loaded[key] = load_pipeline(target)
        return _loaded[key]


def target_of(pipeline: str) -> str:
    """An existing pipeline path made absolute (tasks may run elsewhere); a module name as is."""
    return str(Path(pipeline).resolve()) if Path(pipeline).exists() else pipeline


def runner_for(pipeline: str, settings: Settings) -> Runner:
    """A Runner over the pipeline at `pipeline` with the flow's settings."""
    loaded = pipeline_at(pipeline)
    return Runner(loaded, Config.load(loaded.base_dir, **settings).mask_secrets())


def _finish(step: Step) -> StepDict:
    """The step as a dict; a failed step logs its traceback and raises, so Prefect marks the task
    run failed (and retries it when the error is retryable)."""
    data = step.to_dict()
    if step.status == "failed":
        if step.traceback:
            get_run_logger().error("%s %s failed: %s\n%s", step.kind, step.table, data["detail"],
                                   data["traceback"])
        raise StepFailed(data["detail"], data) from step.error
    return data


_RETRIES: dict[str, Any] = {
    "retries": RETRIES, "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_SECONDS),
    "retry_jitter_factor": RETRY_JITTER, "retry_condition_fn": retry_if_retryable, "cache_policy": NO_CACHE}


@task(task_run_name="load-{source}", **_RETRIES)
def load_source(pipeline: str, settings: Settings, source: str, run_id: str, loaded_at: str) -> StepDict:
    """Land what is new in one source as one Delta commit."""
    with runner_for(pipeline, settings) as runner:
        return _finish(runner.load(source, run_id, datetime.fromisoformat(loaded_at)))


@task(task_run_name="build-{model}", **_RETRIES)
def build_model(pipeline: str, settings: Settings, model: str, run_id: str,
                full_refresh: bool = False) -> StepDict:
    """Build one model into the lake, unless its inputs and code are unchanged."""
    with runner_for(pipeline, settings) as runner:
        return _finish(runner.build(model, run_id, full_refresh))


@task(task_run_name="publish-{model}", **_RETRIES)
def publish_model(pipeline: str, settings: Settings, model: str, run_id: str) -> StepDict:
    """Publish one model's latest lake version to the warehouse, unless already there.

    Holds a slot of the `headwater-warehouse` global concurrency limit while it writes, so
    publishes of every flow run on this Prefect server take turns."""
    with concurrency(WAREHOUSE_LIMIT, occupy=1, strict=True), runner_for(pipeline, settings) as runner:
        return _finish(runner.publish(model, run_id))


def ensure_warehouse_limit() -> int:
    """Create the `headwater-warehouse` global concurrency limit (one slot) unless it exists;
    returns its number of slots. An existing limit is left as the operator set it."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(WAREHOUSE_LIMIT).limit
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=WAREHOUSE_LIMIT, limit=WAREHOUSE_SLOTS))
        except ObjectAlreadyExists:  # another flow run created it meanwhile
            pass
        return client.read_global_concurrency_limit_by_name(WAREHOUSE_LIMIT).limit
