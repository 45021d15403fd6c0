"""The `headwater-elt` Prefect flow: an `extract-load` subflow lands every selected source in
parallel, then a `transform` subflow builds the selected models in DAG order (each as soon as
the models it reads are built) and publishes each after its build, one warehouse writer at a
time; the run leaves lineage, summary, table and progress artifacts.

    python -m flows.elt PIPELINE [--select …] [--exclude …] [--full-refresh] [--lake URI]
                                 [--warehouse URL] [--backend NAME] [--task-runner threads|dask]
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from engine.config import BACKENDS, Config
from engine.errors import HeadwaterError
from engine.transform.models import input_table
from engine.pipeline import Pipeline
from engine.runs.runner import Runner
from engine.runs.steps import RunSummary, Step, new_run_id
from flows import artifacts, tasks
from flows.artifacts import COLUMNS, LINEAGE_KEY, PROGRESS_KEY, SUMMARY_KEY, TABLES_KEY
from flows.tasks import Settings, StepDict, StepFailed, pipeline_at, target_of

__all__ = ["COLUMNS", "LINEAGE_KEY", "PROGRESS_KEY", "SUMMARY_KEY", "TABLES_KEY", "PipelineFailed",
           "StepFailed", "elt", "extract_load", "main", "transform"]
TASK_RUNNERS = ("threads", "dask")
DASK_ADDRESS_ENV = "HEADWATER_DASK_ADDRESS"


class PipelineFailed(Exception):
    """At least one step of the flow failed or was skipped; `.steps` holds every step."""

    def __init__(self, message: str, steps: list[StepDict]) -> None:
        super().__init__(message, steps)
        self.steps = steps

    def __str__(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:  # logs show the message, not every step
        return f"{type(self).__name__}({self.args[0]!r})"


# Flow signatures spell their types out (no aliases): Prefect resolves them to validate
# parameters, also when it loads this file by path under another module name (`headwater serve`).

# -- subflows ------------------------------------------------------------------------------------
@flow(name="headwater-extract-load", flow_run_name="extract-load", task_runner=ThreadPoolTaskRunner())
def extract_load(pipeline: str, settings: dict[str, str | None], sources: list[str],
                 run_id: str) -> list[dict[str, Any]]:
    """Land what is new in each source, all in parallel, each task retried with backoff.

    Returns each source's step; raises `PipelineFailed` (with `.steps`) when a load failed."""
    loaded_at = datetime.now(timezone.utc).isoformat()
    loads = {s: tasks.load_source.submit(pipeline, settings, s, run_id, loaded_at) for s in sources}
    steps = [_outcome(f, Step("load", name, f"raw.{name}", "")) for name, f in loads.items()]
    _raise_if_bad(run_id, steps)
    return steps


@flow(name="headwater-transform", flow_run_name="transform", task_runner=ThreadPoolTaskRunner())
def transform(pipeline: str, settings: dict[str, str | None], models: list[str], run_id: str,
              full_refresh: bool = False, missing: list[str] | None = None,
              progress_id: str | None = None) -> list[dict[str, Any]]:
    """Build `models` in DAG order, each after the models it reads, and publish each after its
    build under the warehouse concurrency limit; a model reading a table in `missing` (a source
    whose load did not complete) is skipped, with everything downstream of it.

    Returns the build steps, then the publish steps; raises `PipelineFailed` when one failed."""
    loaded = pipeline_at(pipeline)
    blocked = set(missing or ())
    builds: dict[str, PrefectFuture[StepDict] | None] = {}
    publishes: dict[str, PrefectFuture[StepDict] | None] = {}
    for name in models:  # DAG order: every upstream model is submitted already
        model = loaded.model(name)
        reads = {input_table(ref) for ref in model.inputs.values()}
        if reads & blocked:
            blocked.add(f"models.{name}")
            builds[name] = None
        else:
            upstream = [f for t in sorted(reads) if (f := builds.get(t.removeprefix("models."))) is not None]
            builds[name] = tasks.build_model.submit(pipeline, settings, name, run_id, full_refresh,
                                                    wait_for=upstream)
        if model.publish:
            build = builds[name]
            publishes[name] = None if build is None else tasks.publish_model.submit(
                pipeline, settings, name, run_id, wait_for=[build])

    futures = {f: f"{kind} {name}" for kind, group in (("build", builds), ("publish", publishes))
               for name, f in group.items() if f is not None}
    progress = artifacts.Progress(UUID(progress_id), len(builds) + len(publishes)) if progress_id else None
    if progress and len(futures) < progress.total:
        progress.advance("skipped: upstream load failed", progress.total - len(futures))
    for done in as_completed(list(futures)):
        if progress:
            progress.advance(futures[done])

    steps = [_outcome(f, Step("model", n, input_table(n), "")) for n, f in builds.items()]
    steps += [_outcome(f, Step("publish", n, n, "")) for n, f in publishes.items()]
    _raise_if_bad(run_id, steps)
    return steps


# -- the flow ------------------------------------------------------------------------------------
def _run_name() -> str:
    target = str(flow_run.parameters.get("pipeline", "pipeline"))
    try:
        return pipeline_at(target_of(target)).name
    except Exception:  # the flow itself reports a bad pipeline; the name only needs a fallback
        return Path(target).stem or target


@flow(name="headwater-elt", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner())
def elt(pipeline: str, select: str | list[str] | None = None, exclude: str | list[str] | None = None,
        full_refresh: bool = False, lake: str | None = None, warehouse: str | None = None,
        backend: str | None = None, task_runner: str = "threads") -> list[dict[str, Any]]:
    """Run a Headwater pipeline: load the selected sources, build the selected models, publish.

    `select` / `exclude` take dbt-style selectors (`name`, `+name`, `name+`, `tag:x`,
    `raw.<source>`; several separated by spaces or commas); by default everything runs.
    `full_refresh` rebuilds incremental models from all their input rows. Settings left as None
    come from the environment, `headwater.toml` beside the pipeline, or the defaults.
    `task_runner` is `threads` (this process) or `dask` (the Dask scheduler at
    $HEADWATER_DASK_ADDRESS, else a local cluster). Returns every step as a dict; raises
    `PipelineFailed` (with `.steps`) when a step failed, after the artifacts are written.
    """
    logger = get_run_logger()
    target = target_of(pipeline)
    loaded = pipeline_at(target)
    settings: Settings = {"lake": lake, "warehouse": warehouse, "backend": backend}
    config = Config.load(loaded.base_dir, **settings)  # a bad setting fails here, before any task
    chosen = Runner(loaded, config).select(select, exclude)  # so does a selector that matches nothing
    runner = _task_runner(task_runner)
    run_id, started = new_run_id(), datetime.now(timezone.utc)
    logger.info("run %s of pipeline %r: %d source(s), %d model(s); lake %s, backend %s, %s tasks "
                "(settings from %s)", run_id, loaded.name, len(chosen.sources), len(chosen.models),
                config.lake, config.backend, task_runner, config.source)
    artifacts.lineage(loaded, chosen)

    steps: list[StepDict] = []
    if chosen.sources:
        state = extract_load.with_options(task_runner=runner)(
            target, settings, chosen.sources, run_id, return_state=True)
        steps += _subflow_steps(state, [Step("load", s, f"raw.{s}", "") for s in chosen.sources])
    if chosen.models:
        if any(loaded.model(m).publish for m in chosen.models):
            logger.info("publishes hold the %r concurrency limit (%d slot(s))", tasks.WAREHOUSE_LIMIT,
                        tasks.ensure_warehouse_limit())
        total = len(chosen.models) + sum(loaded.model(m).publish for m in chosen.models)
        progress = artifacts.Progress.create(total, run_id)
        missing = [s["table"] for s in steps if s["status"] in ("failed", "skipped")]
        state = transform.with_options(task_runner=_task_runner(task_runner))(
            target, settings, chosen.models, run_id, full_refresh, missing, str(progress.id),
            return_state=True)
        blanks = [Step("model", m, input_table(m), "") for m in chosen.models]
        blanks += [Step("publish", m, m, "") for m in chosen.models if loaded.model(m).publish]
        steps += _subflow_steps(state, blanks)

    artifacts.summary(run_id, loaded.name, steps)
    _record(loaded, config, run_id, started, steps, {"select": select, "exclude": exclude,
                                                     "full_refresh": full_refresh})
    for s in steps:
        logger.info("%-7s %-28s %-9s %8s rows  version %s", s["kind"], s["table"], s["status"],
                    s["rows"], "-" if s["version"] is None else s["version"])
    _raise_if_bad(run_id, steps)
    return steps


def _record(pipeline: Pipeline, config: Config, run_id: str, started: datetime, steps: list[StepDict],
            selection: dict[str, Any]) -> None:
    """Write the run to the lake's run manifest, as `headwater run` does."""
    summary = RunSummary(run_id, pipeline.name, started_at=started, selection=selection,
                         steps=[Step(**s) for s in steps])
    bad = [s for s in summary.steps if s.status == "failed"]
    summary.error = f"{bad[0].kind} {bad[0].name!r} failed: {bad[0].detail}" if bad else None
    Runner(pipeline, config).record(summary)
    if summary.error and not bad:  # the manifest itself could not be written
        get_run_logger().warning("%s", summary.error)


def _task_runner(name: str) -> TaskRunner[Any]:
    """A fresh task runner of the kind `name` says."""
    if name == "threads":
        return ThreadPoolTaskRunner()
    if name == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise HeadwaterError("task_runner='dask' needs prefect-dask",
                                 "pip install -e '.[dask]'") from exc
        return DaskTaskRunner(address=os.environ.get(DASK_ADDRESS_ENV))
    raise HeadwaterError(f"unknown task runner {name!r}", f"use one of {', '.join(TASK_RUNNERS)}")


def _subflow_steps(state: State[list[StepDict]], blanks: list[Step]) -> list[StepDict]:
    """The steps a subflow returned, or carried on its `PipelineFailed`; when it died another
    way, `blanks` marked failed with its error."""
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, PipelineFailed):
        return exc.steps
    detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(state.message)
    for blank in blanks:
        blank.status, blank.detail = "failed", detail
    return [b.to_dict() for b in blanks]


def _outcome(future: PrefectFuture[StepDict] | None, blank: Step) -> StepDict:
    """The step a task returned; for a task that raised or never ran, `blank` marked so."""
    if future is None:
        blank.status, blank.detail = "skipped", "an upstream load did not complete"
        return blank.to_dict()
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result()
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, StepFailed):
            return exc.step
        blank.status = "failed"  # the task died outside its Runner step (e.g. a bad pipeline file)
        blank.detail = f"{type(exc).__name__}: {exc}" if exc else str(state.message)
        return blank.to_dict()
    blank.status, blank.detail = "skipped", "an upstream step did not complete"
    return blank.to_dict()


def _raise_if_bad(run_id: str, steps: list[StepDict]) -> None:
    """Raise `PipelineFailed` when a step failed or was skipped."""
    bad = [s for s in steps if s["status"] in ("failed", "skipped")]
    if bad:
        failed = [f"{s['kind']} {s['name']!r}: {s['detail']}" for s in bad if s["status"] == "failed"]
        raise PipelineFailed(f"run {run_id}: {len(failed)} step(s) failed, "
                             f"{len(bad) - len(failed)} skipped; " + "; ".join(failed), steps)


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run `elt` from the command line; 0 when every step succeeded, else 1."""
    parser = argparse.ArgumentParser(prog="python -m flows.elt",
                                     description="Run a Headwater pipeline as a Prefect flow.")
    parser.add_argument("pipeline", help="a .py file or module that defines `pipeline`")
    parser.add_argument("--select", help="dbt-style selectors: name, +name, name+, tag:x, raw.<source>")
    parser.add_argument("--exclude", help="selectors to leave out")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from all rows")
    parser.add_argument("--lake", help="lake URI (a folder or s3://…)")
    parser.add_argument("--warehouse", help="warehouse SQLAlchemy URL")
    parser.add_argument("--backend", choices=BACKENDS, help="which backend runs models")
    parser.add_argument("--task-runner", choices=TASK_RUNNERS, default="threads",
                        help=f"where tasks run (dask: the scheduler at ${DASK_ADDRESS_ENV}, else local)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        elt(args.pipeline, select=args.select, exclude=args.exclude, full_refresh=args.full_refresh,
            lake=args.lake, warehouse=args.warehouse, backend=args.backend, task_runner=args.task_runner)
    except (PipelineFailed, HeadwaterError) as exc:
        print(f"headwater-elt failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from flows.elt import main as imported_main  # the module `flows` imported, not this copy

    sys.exit(imported_main())
