"""Backfills: rebuild a date range of a partitioned model, one partition per step, resumable.

Each partition's build is its own commit, tagged with the backfill's id (`<model>:<first>:<last>`
partition). A backfill that died is resumed by running it again: the partitions whose commits
carry its id since it last completed are skipped. Steps run `parallel` at a time (delta-rs
commits replaces of different partitions side by side); the model is published once, at the
end, replacing only the partitions rebuilt. The run is recorded in the runs table like any
run, one step per partition.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone

from engine.errors import ConfigError
from engine.graph import TableRef
from engine.lake import Lake
from engine.runs.runner import Runner
from engine.runs.steps import RunSummary, Step, new_run_id
from engine.transform.partitions import between, parse

log = logging.getLogger("headwater.runs")


@dataclass(frozen=True)
class BackfillPlan:
    """The partitions of a backfill, and those left to do (the rest were done by a run of it
    that did not finish)."""

    model: str
    id: str
    partitions: list[str]
    todo: list[str]

    @property
    def done(self) -> list[str]:
        return [p for p in self.partitions if p not in self.todo]


def plan_backfill(runner: Runner, model_name: str, start: str | date, end: str | date,
                  restart: bool = False) -> BackfillPlan:
    """What backfilling `model_name` from `start` to `end` (dates, inclusive) rebuilds."""
    model = runner.pipeline.model(model_name)
    if model.partitioning is None:
        raise ConfigError(f"model {model.name!r} is not partitioned: a backfill rebuilds partitions",
                          "declare it with partition_by='<date column>' (see docs/materializations.md)")
    grain = model.partitioning.grain
    first, last = (parse(str(d), grain) for d in (start, end))
    partitions = between(first, last, grain)
    backfill_id = f"{model.name}:{partitions[0]}:{partitions[-1]}"
    done = set() if restart else unfinished(runner.lake, str(TableRef.model(model.name)), backfill_id, partitions)
    return BackfillPlan(model.name, backfill_id, partitions, [p for p in partitions if p not in done])


def unfinished(lake: Lake, table: str, backfill_id: str, partitions: Sequence[str]) -> set[str]:
    """The partitions a run of backfill `backfill_id` committed since the last run of it that
    completed (all of `partitions`); empty when none is half done."""
    if not lake.exists(table):
        return set()
    done: set[str] = set()
    for commit in reversed(lake.history(table)):  # oldest first
        if commit.get("backfill") == backfill_id and isinstance(commit.get("partitions"), list):
            done.update(commit["partitions"])
            if done >= set(partitions):
                done = set()  # that run completed: a new one starts over
    return done


def backfill(runner: Runner, plan: BackfillPlan, parallel: int = 1, publish: bool = True,
             on_step: Callable[[Step], None] | None = None) -> RunSummary:
    """Run `plan`: build each partition left to do (`parallel` at a time), then publish the
    model once if it is published; the summary lists one step per partition and is recorded."""
    if parallel < 1:
        raise ConfigError(f"--parallel {parallel} is below 1", "run at least one partition at a time")
    summary = RunSummary(new_run_id(), runner.pipeline.name, started_at=datetime.now(timezone.utc),
                         selection={"select": [plan.model], "backfill": plan.id, "partitions": plan.todo})
    log.info("backfill %s: %d partition(s), %d done before, %d to build", plan.id, len(plan.partitions),
             len(plan.done), len(plan.todo))

    def one(partition: str) -> Step:
        step = runner.build(plan.model, summary.run_id, partitions=[partition], backfill=plan.id)
        step.name = f"{plan.model}[{partition}]"  # the table stays the model's: the runs table looks it up
        if on_step is not None:
            on_step(step)
        return step

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") as pool:
        summary.steps.extend(pool.map(one, plan.todo))
    model = runner.pipeline.model(plan.model)
    if publish and model.publish and plan.todo and not summary.failed:
        summary.steps.append(runner.publish(plan.model, summary.run_id))
    summary.error = summary.describe_failure("run the same backfill again: it goes on from the partitions not done")
    runner.record(summary)
    runner.close()
    return summary
