"""The run plan: the steps one run takes and what each waits for, made once per run.

A load step lands a source; a build step builds a model once the loads and builds of the tables
it reads (those in this run) are done; a publish step publishes a model once its build is done.
`headwater run` (engine/runs/runner.py) executes the plan in order in one process; the Prefect
flow (flows/elt.py) submits each step as a task as soon as what it needs is done. Both apply
the one failure policy here: a step whose needs failed (or were skipped for that reason) is
skipped, naming the failed step; everything else still runs.

`dry_run` says what each step of a plan would do, and why, without writing anything: a load
asks its source for the extraction it would make (sources plan before they read: the files and
the cursor bounds are known before a row is read, and the batches are never consumed), a build
compares what its model read last time with what its inputs hold now or would hold after this
run's loads and builds, a publish compares the lake with what the warehouse says it published.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from engine.errors import HeadwaterError, exception_line
from engine.graph import TableRef
from engine.lake import Lake
from engine.pipeline import Pipeline
from engine.runs import selection
from engine.runs.selection import Selection
from engine.runs.steps import StepKind
from engine.transform.build import plan_build
from engine.transform.models import Model

Action = Literal["land", "build", "publish", "unchanged", "skip", "fail"]


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


# -- a dry run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preview:
    """What one step would do (`action`) and why; `reads` are what a load would read (its new
    files, or the table it queries)."""

    step: PlannedStep
    action: Action
    why: str
    reads: tuple[str, ...] = ()


def dry_run(plan: RunPlan, pipeline: Pipeline, lake: Lake, published: Callable[[], Mapping[str, int]],
            full_refresh: bool = False) -> list[Preview]:
    """What each step of `plan` would do now, in plan order, reading the lake and the sources
    only; `published()` gives {model: lake version} the warehouse holds (asked at most once, and
    only when a publish depends on it). A step that cannot be previewed is a `fail` saying why."""
    return _DryRun(pipeline, lake, published, full_refresh).all(plan)


@dataclass
class _DryRun:
    pipeline: Pipeline
    lake: Lake
    published: Callable[[], Mapping[str, int]]
    full_refresh: bool
    changing: dict[TableRef, str] = field(default_factory=dict)  # table -> how this run would change it
    rewriting: set[TableRef] = field(default_factory=set)  # tables whose change rewrites rows seen before
    failing: dict[TableRef, PlannedStep] = field(default_factory=dict)  # table -> the step that would fail
    _warehouse: Mapping[str, int] | None = None

    def all(self, plan: RunPlan) -> list[Preview]:
        out = []
        for step in plan.steps:
            try:
                out.append(self.load(step) if step.kind == "load" else
                           self.build(step) if step.kind == "model" else self.publish(step))
            except Exception as exc:  # noqa: BLE001 - the dry run reports it as the step's failure
                self.failing[TableRef.parse(step.table) if step.kind != "publish" else
                             TableRef.model(step.name)] = step
                out.append(Preview(step, "fail", str(exc) if isinstance(exc, HeadwaterError)
                                   else exception_line(exc)))
        return out

    def load(self, step: PlannedStep) -> Preview:
        ref = TableRef.raw(step.name)
        _, meta = self.lake.read_metadata(step.table)
        state = meta.get("state", {})
        extraction = self.pipeline.source(step.name).extract(state, run_id="dry-run",
                                                             loaded_at=datetime.now(timezone.utc))
        close = getattr(extraction.batches, "close", None)
        if close is not None:
            close()  # never read: nothing is landed
        # something lands when there is something to read and the state moves, or the source
        # keeps no state (it is read whole every run)
        if extraction.units and (extraction.state != state or not extraction.state):
            self.changing[ref] = "would land new rows"
            if extraction.mode != "append":
                self.rewriting.add(ref)
            return Preview(step, "land", extraction.planned or "new rows", tuple(extraction.units))
        return Preview(step, "unchanged", extraction.planned or "nothing new")

    def build(self, step: PlannedStep) -> Preview:
        model = self.pipeline.model(step.name)
        table = TableRef.model(model.name)
        refs = list(dict.fromkeys(model.inputs.values()))
        blocked = next((self.failing[r] for r in refs if r in self.failing), None)
        if blocked is not None:
            self.failing[table] = blocked
            return Preview(step, "skip", f"upstream {blocked.describe()} would fail")
        versions = {str(r): self.lake.version(str(r)) for r in refs}
        empty = [r for r in refs if versions[str(r)] is None and r not in self.changing]
        if empty:
            self.failing[table] = step
            return Preview(step, "fail", f"input {empty[0]} has no data in the lake yet "
                                         "(load its source or build that model first)")
        last = self.lake.metadata(str(table))
        if not last:
            self.changing[table] = "would be built"
            self.rewriting.add(table)
            return Preview(step, "build", "first build")
        reasons = ["--full-refresh"] if self.full_refresh else []
        if last.get("code") != model.code_hash:
            reasons.append("code changed")
        before = last.get("inputs") or {}
        for ref in refs:
            key, now = str(ref), versions[str(ref)]
            if ref in self.changing:
                reasons.append(f"{key} {self.changing[ref]}")
            elif before.get(key) != now:
                reasons.append(f"{key} changed since the last build (version {before.get(key)} -> {now})")
        if not reasons:
            return Preview(step, "unchanged", "inputs and code unchanged")
        how = self._how(model, last, versions, pending=any(r in self.changing for r in refs))
        self.changing[table] = "would be rebuilt"
        if how != "incremental" or model.materialized == "merge":
            self.rewriting.add(table)
        return Preview(step, "build", f"{'; '.join(reasons)}: {how}")

    def _how(self, model: Model, last: dict[str, Any], versions: Mapping[str, int | None], pending: bool) -> str:
        """`incremental`, which partitions, or why the build would be a full one (`pending`: an
        input would change in this run first)."""
        if model.materialized == "table" and model.partitioning is None:
            return "full build"
        known = {k: v for k, v in versions.items() if v is not None}
        if len(known) < len(versions):
            return "full build (an input lands for the first time)"
        how = plan_build(model, last, known, self.lake, self.full_refresh)
        if model.partitioning is not None and how.partitions is not None:
            if pending:
                return "the partitions its inputs' new rows fall in"
            return how.reason  # names the partitions and why
        if not how.incremental:
            return how.reason if "rebuild" in how.reason else f"full build ({how.reason})"
        rewritten = [r for p, r in model.inputs.items() if p not in model.full_inputs and r in self.rewriting]
        if rewritten:
            return f"full rebuild: {rewritten[0]} would be rewritten"
        return "incremental"

    def publish(self, step: PlannedStep) -> Preview:
        table = TableRef.model(step.name)
        if table in self.failing:
            return Preview(step, "skip", f"upstream {self.failing[table].describe()} would fail")
        if table in self.changing:
            return Preview(step, "publish", f"{table} {self.changing[table]}")
        version = self.lake.version(str(table))
        if version is None:
            self.failing[table] = step
            return Preview(step, "fail", f"model {step.name!r} has not been built")
        if self._warehouse is None:
            self._warehouse = self.published()
        there = self._warehouse.get(step.name)
        if there == version:
            return Preview(step, "unchanged", f"lake version {version} already published")
        has = "none" if there is None else f"version {there}"
        return Preview(step, "publish", f"lake version {version} (the warehouse has {has})")
