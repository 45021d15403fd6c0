"""The `headwater-elt` Prefect flow: the run plan `headwater run` executes, driven as tasks.

`elt` makes the plan once (engine/runs/plan.py), then its `steps` subflow submits each step as a
task (load a source, build a model, publish a model) as soon as the steps it needs are done:
loads in parallel, each build after the loads and builds of what it reads, each publish after
its build, one warehouse writer at a time. A step whose needs failed is skipped, naming the
failed step; the rest still run, as with `headwater run`. The run leaves lineage, summary,
table and progress artifacts and a row in the lake's run manifest.

    python -m flows.elt PIPELINE [-s SELECTOR …] [--exclude SELECTOR …] [--full-refresh] [--lake URI]
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
from engine.errors import ConfigError, HeadwaterError, exception_line
from engine.pipeline import Pipeline
from engine.redact import mask
from engine.runs.plan import PlannedStep, RunPlan, skipped_detail
from engine.runs.runner import Runner
from engine.runs.steps import RunSummary, Step, new_run_id
from flows import artifacts, tasks
from flows.artifacts import COLUMNS, LINEAGE_KEY, PROGRESS_KEY, SUMMARY_KEY, TABLES_KEY
from flows.tasks import Settings, StepDict, StepFailed, pipeline_at, target_of

__all__ = ["COLUMNS", "LINEAGE_KEY", "PROGRESS_KEY", "SUMMARY_KEY", "TABLES_KEY", "PipelineFailed",
           "StepFailed", "elt", "main", "steps"]
TASK_RUNNERS = ("threads", "dask")


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

# -- the plan's steps as tasks -------------------------------------------------------------------
@flow(name="headwater-steps", flow_run_name="steps", task_runner=ThreadPoolTaskRunner())
def steps(pipeline: str, settings: dict[str, str | None], plan: list[dict[str, Any]], run_id: str,
          full_refresh: bool = False, progress_id: str | None = None) -> list[dict[str, Any]]:
    """Run every step of `plan` (a `RunPlan.to_dicts()`) as a task, each as soon as the steps it
    needs are done; a step whose needs failed or were skipped is skipped itself.

    Returns every step's dict, in plan order; raises `PipelineFailed` (with `.steps`) when one
    failed or was skipped."""
    run_plan = RunPlan.from_dicts(plan)
    loaded_at = datetime.now(timezone.utc).isoformat()
    progress = artifacts.Progress(UUID(progress_id), len(run_plan.steps)) if progress_id else None
    done: dict[str, StepDict] = {}
    statuses: dict[str, str] = {}
    running: dict[PrefectFuture[StepDict], PlannedStep] = {}
    submitted: dict[str, PrefectFuture[StepDict]] = {}
    waiting = list(run_plan.steps)

    def finished(planned: PlannedStep, step: StepDict) -> None:
        done[planned.id], statuses[planned.id] = step, step["status"]
        if progress:
            progress.advance(f"{planned.describe()} {step['status']}")

    def start_ready() -> None:
        """Submit (or skip, when what it needs failed) every waiting step whose needs are done."""
        while ready := [s for s in waiting if run_plan.ready(s, statuses)]:
            for planned in ready:
                waiting.remove(planned)
                root = run_plan.blocked_by(planned, statuses)
                if root is not None:
                    finished(planned, _blank(planned, "skipped", skipped_detail(root)))
                    continue
                wait_for = [submitted[n] for n in planned.needs]  # done already: drawn as edges in the UI
                future = _submit(planned, pipeline, settings, run_id, loaded_at, full_refresh, wait_for)
                submitted[planned.id], running[future] = future, planned

    start_ready()
    while running:
        for future in as_completed(list(running)):
            planned = running.pop(future)
            finished(planned, _outcome(future, planned))
            break
        start_ready()
    result = [done[s.id] for s in run_plan.steps]
    _raise_if_bad(run_id, result)
    return result


def _submit(planned: PlannedStep, pipeline: str, settings: Settings, run_id: str, loaded_at: str,
            full_refresh: bool, wait_for: list[PrefectFuture[StepDict]]) -> PrefectFuture[StepDict]:
    if planned.kind == "load":
        return tasks.load_source.submit(pipeline, settings, planned.name, run_id, loaded_at, wait_for=wait_for)
    if planned.kind == "model":
        return tasks.build_model.submit(pipeline, settings, planned.name, run_id, full_refresh, wait_for=wait_for)
    return tasks.publish_model.submit(pipeline, settings, planned.name, run_id, wait_for=wait_for)


# -- the flow ------------------------------------------------------------------------------------
def _run_name() -> str:
    target = str(flow_run.parameters.get("pipeline", "pipeline"))
    try:
        return pipeline_at(target_of(target)).name
    except Exception:  # noqa: BLE001 - the flow itself reports a bad pipeline; the name needs a fallback
        return Path(target).stem or target


@flow(name="headwater-elt", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner())
def elt(pipeline: str, select: str | list[str] | None = None, exclude: str | list[str] | None = None,
        full_refresh: bool = False, lake: str | None = None, warehouse: str | None = None,
        backend: str | None = None, task_runner: str = "threads") -> list[dict[str, Any]]:
    """Run a Headwater pipeline: load the selected sources, build the selected models, publish.

    `select` / `exclude` take dbt-style selectors (`name`, `+name`, `name+`, `tag:x`,
    `raw.<source>`; several as a list, or in one string separated by spaces or commas); by
    default everything runs.
    `full_refresh` rebuilds incremental models from all their input rows. Settings left as None
    come from the environment, `headwater.toml` beside the pipeline, or the defaults.
    `task_runner` is `threads` (this process) or `dask` (the Dask scheduler the settings name,
    HEADWATER_DASK_ADDRESS, else a local cluster). Returns every step as a dict; raises
    `PipelineFailed` (with `.steps`) when a step failed or was skipped, after the artifacts are
    written.
    """
    logger = get_run_logger()
    target = target_of(pipeline)
    loaded = pipeline_at(target)
    settings: Settings = {"lake": lake, "warehouse": warehouse, "backend": backend}
    config = Config.load(loaded.base_dir, **settings).mask_secrets()  # a bad setting fails here
    planner = Runner(loaded, config)
    run_plan = planner.plan(select, exclude)  # so does a bad selector
    if run_plan.of_kind("publish"):
        planner.check_warehouse()  # and a warehouse that cannot be reached, before anything lands
    runner = _task_runner(task_runner, config)
    run_id, started = new_run_id(), datetime.now(timezone.utc)
    logger.info("run %s of pipeline %r: %d source(s), %d model(s), %d step(s); lake %s, backend %s, "
                "%s tasks (settings from %s)", run_id, loaded.name, len(run_plan.selection.sources),
                len(run_plan.selection.models), len(run_plan.steps), mask(config.lake), config.backend,
                task_runner, config.source)
    artifacts.lineage(loaded, run_plan.selection)

    done: list[StepDict] = []
    if run_plan.steps:
        if run_plan.of_kind("publish"):
            logger.info("publishes hold the %r concurrency limit (%d slot(s))", tasks.WAREHOUSE_LIMIT,
                        tasks.ensure_warehouse_limit())
        progress = artifacts.Progress.create(len(run_plan.steps), run_id)
        state = steps.with_options(task_runner=runner)(
            target, settings, run_plan.to_dicts(), run_id, full_refresh, str(progress.id), return_state=True)
        done = _subflow_steps(state, run_plan)

    artifacts.summary(run_id, loaded.name, done)
    _record(loaded, config, run_id, started, done, {"select": select, "exclude": exclude,
                                                    "full_refresh": full_refresh})
    for s in done:
        logger.info("%-7s %-28s %-9s %8s rows  version %s", s["kind"], s["table"], s["status"],
                    s["rows"], "-" if s["version"] is None else s["version"])
    _raise_if_bad(run_id, done)
    return done


def _record(pipeline: Pipeline, config: Config, run_id: str, started: datetime, steps: list[StepDict],
            selection: dict[str, Any]) -> None:
    """Write the run to the lake's run manifest, as `headwater run` does."""
    summary = RunSummary(run_id, pipeline.name, started_at=started, selection=selection,
                         steps=[Step(**s) for s in steps])
    summary.error = summary.describe_failure()
    Runner(pipeline, config).record(summary)
    if summary.error and not summary.failed:  # the manifest itself could not be written
        get_run_logger().warning("%s", mask(summary.error))


def _task_runner(name: str, config: Config) -> TaskRunner[Any]:
    """A fresh task runner of the kind `name` says (Dask: at the scheduler `config` names)."""
    if name == "threads":
        return ThreadPoolTaskRunner()
    if name == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise ConfigError("task_runner='dask' needs prefect-dask", "pip install -e '.[dask]'") from exc
        return DaskTaskRunner(address=config.dask_address)
    raise ConfigError(f"unknown task runner {name!r}", f"use one of {', '.join(TASK_RUNNERS)}")


def _blank(planned: PlannedStep, status: str, detail: str) -> StepDict:
    return Step(planned.kind, planned.name, planned.table, status, detail=detail).to_dict()  # type: ignore[arg-type]


def _subflow_steps(state: State[list[StepDict]], plan: RunPlan) -> list[StepDict]:
    """The steps the subflow returned, or carried on its `PipelineFailed`; when it died another
    way, every step marked failed with its error."""
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, PipelineFailed):
        return exc.steps
    detail = exception_line(exc) if isinstance(exc, BaseException) else mask(str(state.message))
    return [_blank(s, "failed", detail) for s in plan.steps]


def _outcome(future: PrefectFuture[StepDict], planned: PlannedStep) -> StepDict:
    """The step a task returned or carried on its `StepFailed`; a task that died outside its
    Runner step (e.g. a bad pipeline file) is a failed step with its error."""
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, StepFailed):
        return exc.step
    detail = exception_line(exc) if isinstance(exc, BaseException) else mask(str(state.message))
    return _blank(planned, "failed", detail)


def _raise_if_bad(run_id: str, steps: list[StepDict]) -> None:
    """Raise `PipelineFailed` when a step failed or was skipped."""
    bad = [s for s in steps if s["status"] in ("failed", "skipped")]
    if bad:
        failed = [f"{s['kind']} {s['name']!r}: {s['detail']}" for s in bad if s["status"] == "failed"]
        raise PipelineFailed(mask(f"run {run_id}: {len(failed)} step(s) failed, "
                                  f"{len(bad) - len(failed)} skipped; " + "; ".join(failed)), steps)


# -- command line --------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    """`python -m flows.elt`'s options: `-s/--select`, `--exclude` and `--full-refresh` as
    `headwater run` spells them (repeatable selectors, a plain flag)."""
    from engine.cli.app import EXCLUDE_HELP, FULL_REFRESH_HELP, PIPELINE_HELP, SELECT_HELP

    parser = argparse.ArgumentParser(prog="python -m flows.elt",
                                     description="Run a Headwater pipeline as a Prefect flow.")
    parser.add_argument("pipeline", metavar="PIPELINE", help=PIPELINE_HELP)
    parser.add_argument("-s", "--select", action="append", metavar="SELECTOR", help=SELECT_HELP)
    parser.add_argument("--exclude", action="append", metavar="SELECTOR", help=EXCLUDE_HELP)
    parser.add_argument("--full-refresh", action="store_true", help=FULL_REFRESH_HELP)
    parser.add_argument("--lake", help="lake URI (a folder or s3://…)")
    parser.add_argument("--warehouse", help="warehouse SQLAlchemy URL")
    parser.add_argument("--backend", choices=BACKENDS, help="which backend runs models")
    parser.add_argument("--task-runner", choices=TASK_RUNNERS, default="threads",
                        help="where tasks run (dask: the scheduler at $HEADWATER_DASK_ADDRESS, else local)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `elt` from the command line; 0 when every step succeeded, else 1."""
    args = parser().parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        elt(args.pipeline, select=args.select, exclude=args.exclude, full_refresh=args.full_refresh,
            lake=args.lake, warehouse=args.warehouse, backend=args.backend, task_runner=args.task_runner)
    except (PipelineFailed, HeadwaterError) as exc:
        print(f"headwater-elt failed: {mask(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
