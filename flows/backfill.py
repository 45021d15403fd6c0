"""The `headwater-backfill` flow: a date range of a partitioned model rebuilt as one task per
partition, at most `parallel` at a time, with a progress artifact, then one publish; the same
plan as `headwater backfill` (engine/runs/backfill.py), so a backfill that died goes on from
the partitions not yet done when run again.

    python -m flows.backfill pipeline.py -s MODEL --from 2026-03-01 --to 2026-03-31 [--parallel 4]
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from engine.config import Config
from engine.errors import HeadwaterError, exception_line
from engine.redact import mask
from engine.runs.backfill import plan_backfill
from engine.runs.runner import Runner
from engine.runs.steps import RunSummary, Step, new_run_id
from flows import artifacts, tasks
from flows.elt import PipelineFailed
from flows.tasks import Settings, StepDict, StepFailed, pipeline_at, runner_for, target_of


@task(task_run_name="backfill-{model}-{partition}", **tasks._RETRIES)
def build_partition(pipeline: str, settings: Settings, model: str, partition: str, run_id: str,
                    backfill_id: str) -> StepDict:
    """Rebuild one partition of `model` (one commit, tagged with the backfill's id)."""
    with runner_for(pipeline, settings) as runner:
        step = runner.build(model, run_id, partitions=[partition], backfill=backfill_id)
        step.name = f"{model}[{partition}]"
        return tasks._finish(step)


@flow(name="headwater-backfill", flow_run_name="backfill-{model}-{start}-{end}",
      task_runner=ThreadPoolTaskRunner())
def backfill(pipeline: str, model: str, start: str, end: str, parallel: int = 4, restart: bool = False,
             lake: str | None = None, warehouse: str | None = None, backend: str | None = None) -> list[StepDict]:
    """Rebuild the partitions of `model` from `start` to `end` (dates, inclusive), `parallel`
    tasks at a time, then publish them; returns every step as a dict and raises `PipelineFailed`
    when one failed. `restart` rebuilds the partitions a backfill that died had done too."""
    logger = get_run_logger()
    target = target_of(pipeline)
    loaded = pipeline_at(target)
    settings: Settings = {"lake": lake, "warehouse": warehouse, "backend": backend}
    config = Config.load(loaded.base_dir, **settings).mask_secrets()
    planner = Runner(loaded, config)
    plan = plan_backfill(planner, model, start, end, restart=restart)
    if loaded.model(model).publish:
        planner.check_warehouse()  # before anything is rebuilt
    run_id, started = new_run_id(), datetime.now(timezone.utc)
    logger.info("backfill %s: %d partition(s), %d done before, %d to build, %d at a time", plan.id,
                len(plan.partitions), len(plan.done), len(plan.todo), parallel)
    progress = artifacts.Progress.create(len(plan.todo), run_id)
    waiting = list(plan.todo)
    running: dict[PrefectFuture[StepDict], str] = {}  # a task -> its partition
    built: dict[str, StepDict] = {}
    while waiting or running:
        while waiting and len(running) < max(1, parallel):  # the concurrency limit
            partition = waiting.pop(0)
            running[build_partition.submit(target, settings, model, partition, run_id, plan.id)] = partition
        finished = next(iter(as_completed(list(running))))
        partition = running.pop(finished)
        built[partition] = _outcome(finished, model, partition)
        progress.advance(f"{built[partition]['name']} {built[partition]['status']}")
    steps = [built[p] for p in plan.todo]
    if loaded.model(model).publish and steps and all(s["status"] != "failed" for s in steps):
        tasks.ensure_warehouse_limit()  # publishes of every flow take turns, as in headwater-elt
        steps.append(_outcome(tasks.publish_model.submit(target, settings, model, run_id), model, None))
    artifacts.summary(run_id, loaded.name, steps)
    summary = RunSummary(run_id, loaded.name, started_at=started, steps=[Step(**s) for s in steps],
                         selection={"select": [model], "backfill": plan.id, "partitions": plan.todo})
    summary.error = summary.describe_failure("run the backfill again: it goes on from the partitions not done")
    Runner(loaded, config).record(summary)
    failed = [s for s in steps if s["status"] == "failed"]
    if failed:
        raise PipelineFailed(f"backfill {plan.id}: {len(failed)} step(s) failed, the first "
                                   f"{failed[0]['name']!r}: {failed[0]['detail']}", steps)
    return steps


def _outcome(future: PrefectFuture[StepDict], model: str, partition: str | None) -> StepDict:
    """The step a task returned, or carried on its failure."""
    future.wait()
    if future.state.is_completed():
        return future.result()
    exc = future.state.result(raise_on_failure=False)
    if isinstance(exc, StepFailed):
        return exc.step
    name = model if partition is None else f"{model}[{partition}]"
    detail = exception_line(exc) if isinstance(exc, BaseException) else str(future.state.message)
    return Step("model" if partition else "publish", name, f"models.{model}", "failed", detail=detail).to_dict()


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.backfill`: run the backfill flow once against the Prefect API configured."""
    parser = argparse.ArgumentParser(prog="python -m flows.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("-s", "--select", required=True, metavar="MODEL", help="the partitioned model")
    parser.add_argument("--from", dest="start", required=True, metavar="DATE", help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", required=True, metavar="DATE", help="last day, included")
    parser.add_argument("--parallel", type=int, default=4, help="partitions built at a time")
    parser.add_argument("--restart", action="store_true", help="rebuild partitions a dead backfill had done")
    for option in ("lake", "warehouse", "backend"):
        parser.add_argument(f"--{option}", default=None, help=f"the {option} (default: as headwater run)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        backfill(args.pipeline, args.select, args.start, args.end, args.parallel, args.restart,
                 args.lake, args.warehouse, args.backend)
    except (HeadwaterError, PipelineFailed) as exc:
        print(f"headwater-backfill failed: {mask(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

