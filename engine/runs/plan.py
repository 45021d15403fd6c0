"""The run plan: the steps one run takes and what each waits for, made once per run.

A load step lands a source; a build step builds a model once the loads and builds of the tables
it reads (those in this run) are done; a publish step publishes a model once its build is done.
`headwater run` (engine/runs/runner.py) executes the plan in order in one process; the Prefect
flow (flows/elt.py) submits each step as a task as soon as what it needs is done. Both apply
the one failure policy here: a step whose needs failed (or were skipped for that reason) is
skipped, naming the failed step; everything else still runs.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.graph import TableRef
from engine.pipeline import Pipeline
from engine.runs import selection
from engine.runs.selection import Selection
from engine.runs.steps import StepKind


@dataclass(frozen=True)
class PlannedStep:
    """One step of a run: land source `name`, build model `name`, or publish model `name`."""

    kind: StepKind
    name: str
    table: str  # raw.<source>, models.<model>, or the warehouse table (the model's name)
    needs: tuple[str, ...] = ()  # ids of the steps it waits for

    @property
    def id(self) -> str:
        """`load:<source>`, `model:<model>` or `publish:<model>`."""
        return f"{self.kind}:{self.name}"

    def describe(self) -> str:
        """`model 'photo_likes'`: the step in the words of a message."""
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class RunPlan:
    """Every step of a run, each after the steps it needs: loads, builds in DAG order, publishes."""

    steps: tuple[PlannedStep, ...]
    selection: Selection

    @classmethod
    def make(cls, pipeline: Pipeline, select: Iterable[str] | str | None = None,
             exclude: Iterable[str] | str | None = None) -> RunPlan:
        """The plan for the sources and models the selectors pick (default: all)."""
        chosen = selection.select(pipeline.graph, select, exclude)
        loads = {TableRef.raw(s): PlannedStep("load", s, str(TableRef.raw(s))) for s in chosen.sources}
        builds: dict[TableRef, PlannedStep] = {}
        for name in chosen.models:
            table = TableRef.model(name)
            needs = tuple(step.id for ref in pipeline.graph.inputs(table)
                          if (step := loads.get(ref) or builds.get(ref)) is not None)
            builds[table] = PlannedStep("model", name, str(table), needs)
        publishes = [PlannedStep("publish", name, name, (builds[TableRef.model(name)].id,))
                     for name in chosen.models if pipeline.model(name).publish]
        return cls((*loads.values(), *builds.values(), *publishes), chosen)

    def step(self, step_id: str) -> PlannedStep:
        """The step with id `step_id`."""
        return next(s for s in self.steps if s.id == step_id)

    def of_kind(self, kind: StepKind) -> list[PlannedStep]:
        """The plan's steps of one kind, in plan order."""
        return [s for s in self.steps if s.kind == kind]

    def blocked_by(self, step: PlannedStep, statuses: Mapping[str, str]) -> PlannedStep | None:
        """The failed step that keeps `step` from running (through a chain of skipped steps, the
        failed one at its start), or None when every step it needs ran without failing.
        `statuses` maps the ids of finished steps to their status."""
        for need in step.needs:
            status = statuses.get(need)
            if status == "failed":
                return self.step(need)
            if status == "skipped":
                root = self.blocked_by(self.step(need), statuses)
                if root is not None:
                    return root
        return None

    def ready(self, step: PlannedStep, statuses: Mapping[str, str]) -> bool:
        """Whether every step `step` needs has finished."""
        return all(need in statuses for need in step.needs)

    def to_dicts(self) -> list[dict[str, Any]]:
        """The steps as plain dicts (a Prefect parameter); `from_dicts` reads them back."""
        return [{**asdict(s), "needs": list(s.needs)} for s in self.steps]

    @classmethod
    def from_dicts(cls, steps: Iterable[Mapping[str, Any]]) -> RunPlan:
        """The plan whose `to_dicts()` gave `steps`."""
        planned = tuple(PlannedStep(d["kind"], d["name"], d["table"], tuple(d["needs"])) for d in steps)
        chosen = Selection([s.name for s in planned if s.kind == "load"],
                           [s.name for s in planned if s.kind == "model"])
        return cls(planned, chosen)


def skipped_detail(root: PlannedStep) -> str:
    """What a step skipped because `root` failed says about it."""
    return f"upstream {root.describe()} failed"
