"""The `headwater-elt` Prefect flow: every source landed in parallel, models built in DAG order
as soon as their inputs are ready, each model published after its build, and a run summary
left as artifacts.

Tasks pass only strings and small dicts. Each task rebuilds its own `Runner` from the pipeline
path and the flow's settings, so no frame, connection or pipeline object crosses a task boundary.

    python -m flows.elt PIPELINE [--lake URI] [--warehouse URL] [--backend NAME]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import allow_failure, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from engine.config import BACKENDS, Config
from engine.errors import HeadwaterError
from engine.models import Model, input_table
from engine.pipeline import Pipeline, load_pipeline
from engine.runner import Runner, Step, new_run_id

SUMMARY_KEY = "headwater-run-summary"
TABLES_KEY = "headwater-tables"
COLUMNS = ("table", "kind", "status", "rows", "quarantined", "version", "seconds", "detail")
LOAD_RETRIES = 2
LOAD_RETRY_DELAYS = [1, 5]  # seconds before the first and the second retry

Settings = dict[str, str | None]  # lake / warehouse / backend as given to the flow (None: not set)
StepDict = dict[str, Any]  # a `Step.to_dict()`


class StepFailed(Exception):
    """A Runner step ended `failed`: the message is the step's detail, `.step` the whole step."""

    def __init__(self, detail: str, step: StepDict) -> None:
        super().__init__(detail, step)  # both in args, so the exception pickles
        self.step = step

    def __str__(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:  # logs show the message, not every step
        return f"{type(self).__name__}({self.args[0]!r})"


class PipelineFailed(Exception):
    """At least one step of the flow failed or was skipped; `.steps` holds every step."""

    def __init__(self, message: str, steps: list[StepDict]) -> None:
        super().__init__(message, steps)
        self.steps = steps

    def __str__(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:  # logs show the message, not every step
        return f"{type(self).__name__}({self.args[0]!r})"


# -- tasks: each wraps exactly one Runner step ---------------------------------------------------
_loaded: dict[tuple[str, float], Pipeline] = {}
_loading = threading.Lock()


def _pipeline(target: str) -> Pipeline:
    """The pipeline `target` defines, executed once per version of its file (tasks share it)."""
    path = Path(target)
    key = (str(path.resolve()), path.stat().st_mtime_ns) if path.exists() else (target, 0)
    with _loading:  # task threads must not execute the user's file at the same time
        if key not in _loaded:
            _loaded[key] = load_pipeline(target)
        return _loaded[key]


def _runner(pipeline: str, settings: Settings) -> Runner:
    loaded = _pipeline(pipeline)
    return Runner(loaded, Config.load(loaded.base_dir, **settings))


def _finish(step: Step) -> StepDict:
    """The step as a dict; a failed step raises, so Prefect marks the task run failed."""
    if step.status == "failed":
        raise StepFailed(step.detail, step.to_dict())
    get_run_logger().info("%s %s: %s, %d rows, version %s, %.3f s%s", step.kind, step.table,
                          step.status, step.rows, step.version, step.seconds,
                          f" ({step.detail})" if step.detail else "")
    return step.to_dict()


@task(task_run_name="load-{source}", retries=LOAD_RETRIES, retry_delay_seconds=LOAD_RETRY_DELAYS,
      cache_policy=NO_CACHE)
def extract_load(pipeline: str, settings: Settings, source: str, run_id: str, loaded_at: str) -> StepDict:
    """Land what is new in one source as one Delta commit."""
    return _finish(_runner(pipeline, settings).load(source, run_id, datetime.fromisoformat(loaded_at)))


@task(task_run_name="build-{model}", cache_policy=NO_CACHE)
def build_model(pipeline: str, settings: Settings, model: str, run_id: str) -> StepDict:
    """Build one model into the lake, unless its inputs and code are unchanged."""
    return _finish(_runner(pipeline, settings).build(model, run_id))


@task(task_run_name="publish-{model}", cache_policy=NO_CACHE)
def publish_model(pipeline: str, settings: Settings, model: str, run_id: str) -> StepDict:
    """Publish one model's latest lake version to the warehouse, unless already there."""
    return _finish(_runner(pipeline, settings).publish(model, run_id))


# -- the flow ------------------------------------------------------------------------------------
def _target(pipeline: str) -> str:
    """An existing pipeline path made absolute (tasks may run elsewhere); a module name as is."""
    return str(Path(pipeline).resolve()) if Path(pipeline).exists() else pipeline


def _run_name() -> str:
    target = str(flow_run.parameters.get("pipeline", "pipeline"))
    try:
        return _pipeline(_target(target)).name
    except Exception:  # the flow itself reports a bad pipeline; the name only needs a fallback
        return Path(target).stem or target


@flow(name="headwater-elt", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner())
def elt(pipeline: str, lake: str | None = None, warehouse: str | None = None,
        backend: str | None = None) -> list[StepDict]:
    """Run a Headwater pipeline: load every source, build every model, publish to the warehouse.

    Settings left as None come from the environment, `headwater.toml` beside the pipeline, or
    the defaults. Returns every step as a dict; raises `PipelineFailed` (with `.steps`) when a
    step failed, after the summary artifacts are written.
    """
    logger = get_run_logger()
    target = _target(pipeline)
    loaded = _pipeline(target)
    settings: Settings = {"lake": lake, "warehouse": warehouse, "backend": backend}
    config = Config.load(loaded.base_dir, **settings)  # a bad setting fails here, before any task
    run_id = new_run_id()
    logger.info("run %s of pipeline %r: lake %s, backend %s (settings from %s)",
                run_id, loaded.name, config.lake, config.backend, config.source)

    loaded_at = datetime.now(timezone.utc).isoformat()
    loads = {s.name: extract_load.submit(target, settings, s.name, run_id, loaded_at)
             for s in loaded.sources}
    builds: dict[str, PrefectFuture[StepDict]] = {}
    for m in loaded.ordered_models:  # DAG order: every upstream model is submitted already
        builds[m.name] = build_model.submit(target, settings, m.name, run_id,
                                            wait_for=_upstream(m, loads, builds))
    publishes: dict[str, PrefectFuture[StepDict]] = {}
    for m in loaded.ordered_models:
        if not m.publish:
            continue
        # one publish at a time: concurrent publishes to one warehouse conflict (DuckDB
        # catalog write-write conflicts); allow_failure lets the chain go on past a failure
        previous = [allow_failure(f) for f in list(publishes.values())[-1:]]
        publishes[m.name] = publish_model.submit(target, settings, m.name, run_id,
                                                 wait_for=[builds[m.name], *previous])

    steps = [_outcome(f, Step("load", name, f"raw.{name}", "")) for name, f in loads.items()]
    steps += [_outcome(f, Step("model", name, input_table(name), "")) for name, f in builds.items()]
    steps += [_outcome(f, Step("publish", name, name, "")) for name, f in publishes.items()]

    _artifacts(run_id, loaded.name, steps)
    bad = [s for s in steps if s["status"] in ("failed", "skipped")]
    for s in steps:
        logger.info("%-7s %-28s %-9s %8s rows  version %s", s["kind"], s["table"], s["status"],
                    s["rows"], "-" if s["version"] is None else s["version"])
    if bad:
        failed = [f"{s['kind']} {s['name']!r}: {s['detail']}" for s in bad if s["status"] == "failed"]
        raise PipelineFailed(f"run {run_id}: {len(failed)} step(s) failed, "
                             f"{len(bad) - len(failed)} skipped; " + "; ".join(failed), steps)
    return steps


def _upstream(model: Model, loads: dict[str, PrefectFuture[StepDict]],
              builds: dict[str, PrefectFuture[StepDict]]) -> list[PrefectFuture[StepDict]]:
    """The load and build tasks whose tables `model` reads."""
    tables = {input_table(ref) for ref in model.inputs.values()}
    return ([loads[t.removeprefix("raw.")] for t in sorted(tables) if t.startswith("raw.")]
            + [builds[t.removeprefix("models.")] for t in sorted(tables) if t.startswith("models.")])


def _outcome(future: PrefectFuture[StepDict], blank: Step) -> StepDict:
    """The step a task returned; for a task that raised or never ran, `blank` marked so."""
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


def _artifacts(run_id: str, pipeline: str, steps: list[StepDict]) -> None:
    """The run summary (markdown) and the per-table rows (table) as flow-run artifacts."""
    rows = [{c: s[c] for c in COLUMNS} for s in steps]
    landed = sum(s["rows"] for s in steps if s["kind"] == "load")
    lines = [f"# Headwater run `{run_id}`", "",
             f"Pipeline **{pipeline}**: {len(steps)} steps, {landed} rows landed.", "",
             "| table | step | status | rows | Delta version | seconds |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += [f"| `{r['table']}` | {r['kind']} | {r['status']} | {r['rows']} | "
              f"{'' if r['version'] is None else r['version']} | {r['seconds']} |" for r in rows]
    problems = [r for r in rows if r["status"] in ("failed", "skipped")]
    if problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{r['table']}` ({r['kind']}, {r['status']}): {_md(r['detail'])}" for r in problems]
    create_markdown_artifact("\n".join(lines), key=SUMMARY_KEY,
                             description=f"Headwater run {run_id} of {pipeline}")
    create_table_artifact(rows, key=TABLES_KEY, description=f"Tables of Headwater run {run_id}")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run `elt` from the command line; 0 when every step succeeded, else 1."""
    parser = argparse.ArgumentParser(prog="python -m flows.elt",
                                     description="Run a Headwater pipeline as a Prefect flow.")
    parser.add_argument("pipeline", help="a .py file or module that defines `pipeline`")
    parser.add_argument("--lake", help="lake URI (a folder or s3://…)")
    parser.add_argument("--warehouse", help="warehouse SQLAlchemy URL")
    parser.add_argument("--backend", choices=BACKENDS, help="which backend runs models")
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        elt(args.pipeline, lake=args.lake, warehouse=args.warehouse, backend=args.backend)
    except (PipelineFailed, HeadwaterError) as exc:
        print(f"headwater-elt failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from flows.elt import main as imported_main  # the module `flows` imported, not this copy

    sys.exit(imported_main())
