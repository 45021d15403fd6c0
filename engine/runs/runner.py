"""Runs a pipeline without Prefect: the three kinds of step, and the local driver of the run plan.

`Runner.load`, `.build` and `.publish` each run one step and return a small `Step` summary,
never frames; a step that fails returns a failed `Step` that keeps the exception. `Runner.run`
makes the run plan (engine/runs/plan.py) and executes it in order in this process: a step
whose needs failed is skipped, everything else still runs (`fail_fast=True` stops at the
first failure instead). The Prefect flow (flows/elt.py) drives the same plan with tasks that
call the same three methods.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.config import Config
from engine.errors import ConfigError, HeadwaterError
from engine.graph import TableRef
from engine.lake import Based, Lake
from engine.load.land import land
from engine.pipeline import Pipeline
from engine.publish.changes import publication
from engine.runs import manifest
from engine.runs.plan import PlannedStep, RunPlan, skipped_detail
from engine.runs.steps import NullReporter, Reporter, RunSummary, Step, StepKind, new_run_id
from engine.transform.build import build, plan_build, plan_partitions
from engine.transform.reads import SharedReads

if TYPE_CHECKING:  # backends and warehouse drivers load on first use: `headwater show` needs neither
    from engine.publish import Warehouse
    from engine.transform.backends import Backend, Engine
    from engine.transform.models import Model

log = logging.getLogger("headwater.runs")


class Runner:
    """Runs the steps of `pipeline` against the lake and warehouse that `config` names.

    The runner owns the backend it resolves (and, on Dask, the cluster that backend started):
    `close()`, or leaving a `with Runner(...)` block, releases it."""

    def __init__(self, pipeline: Pipeline, config: Config, reporter: Reporter | None = None) -> None:
        self.pipeline = pipeline
        self.config = config
        self.reporter = reporter or NullReporter()
        self.lake = Lake(config.lake, config.storage_options)
        self._backend: tuple[Backend, str] | None = None
        self._engines: dict[str, tuple[Engine, str]] = {}  # model kind -> engine of SQL / polars models, why
        self._shared: SharedReads | None = None  # during run(): whole-table reads its models share
        self._warehouse: Warehouse | None = None  # during run(): the connection its publishes share
        self._in_run = False

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def backend(self) -> tuple[Backend, str]:
        """The backend models run on, and why it was chosen (resolved once, on first use)."""
        if self._backend is None:
            from engine.transform.backends import resolve

            self._backend = resolve(self.config.backend, self.lake.storage_options,  # as the lake: env filled in
                                    config=self.config)
        return self._backend

    def engine_for(self, model: Model) -> Backend | Engine:
        """What runs `model`: the backend for a pandas-API model; for a SQL or polars model the
        engine its kind runs on under this config (DuckDB, polars or cudf-polars; made once)."""
        if model.kind == "pandas":
            return self.backend[0]
        if model.kind not in self._engines:
            from engine.transform.backends.kinds import engine_for

            client = None
            if self.config.backend == "dask-cudf":  # cudf-polars runs on the backend's Dask cluster
                client = self.backend[0].cluster.client  # type: ignore[attr-defined]
            engine, why = self._engines[model.kind] = engine_for(model.kind, self.config,
                                                                 self.lake.storage_options, client)
            log.info("%s models run on %s", model.kind, why)
        return self._engines[model.kind][0]

    def close(self) -> None:
        """Release the backend's resources (a Dask client or the cluster it started); safe twice."""
        engines, self._engines = self._engines, {}
        for engine, _ in engines.values():
            stop = getattr(engine, "close", None)
            if stop is not None:
                stop()
        backend, self._backend = self._backend, None
        if backend is not None:
            close = getattr(backend[0], "close", None)
            if close is not None:
                close()

    # -- the three steps ------------------------------------------------------------------
    def load(self, source_name: str, run_id: str, loaded_at: datetime | None = None) -> Step:
        """Land what is new in one source as one Delta commit (with its state)."""
        source = self.pipeline.source(source_name)
        table = str(TableRef.raw(source.name))

        def work() -> Step:
            version, meta = self.lake.read_metadata(table)  # the load commits only if still at `version`
            extraction = source.extract(meta.get("state", {}), run_id=run_id,
                                        loaded_at=loaded_at or datetime.now(timezone.utc))
            extraction.batches = self._counting(extraction.batches)
            landing = land(self.lake, table, extraction, run_id=run_id, origin=f"source {source.name!r}",
                           based_on=Based(version))
            commit = landing.commit
            if commit.version is None:
                return Step("load", source.name, table, "unchanged", 0, self.lake.version(table),
                            detail=extraction.planned, quarantined=landing.quarantined)
            merged = commit.detail or ("" if commit.inserted is None else
                                       f"merged: {commit.inserted:,} new, {commit.updated:,} updated")
            detail = ", ".join(p for p in (extraction.planned, merged, landing.describe()) if p)
            return Step("load", source.name, table, "landed", commit.rows, commit.version,
                        detail=detail, quarantined=landing.quarantined)

        return self._timed("load", source.name, table, work)

    def build(self, model_name: str, run_id: str, full_refresh: bool = False,
              partitions: list[str] | None = None, backfill: str | None = None) -> Step:
        """Rebuild one model into `models.<name>` unless its inputs and code are unchanged.

        `full_refresh` rebuilds an incremental or merge model from all of its input rows;
        `partitions` rebuilds those partitions of a partitioned model, changed or not (`backfill`:
        the id of the backfill it belongs to, recorded in the commit)."""
        model = self.pipeline.model(model_name)
        table = str(TableRef.model(model.name))

        def work() -> Step:
            if partitions is not None and model.partitioning is None:
                raise ConfigError(f"model {model.name!r} is not partitioned: there is no partition to rebuild",
                                  "declare it with partition_by='<date column>', or run it without a partition")
            versions = {str(ref): self._input_version(model.name, ref) for ref in model.inputs.values()}
            version, last = self.lake.read_metadata(table)  # the build commits only if still at `version`
            if partitions is None and not full_refresh and last.get("inputs") == versions \
                    and last.get("code") == model.code_hash:
                rows = last["rows"] if "rows" in last else self.lake.dataset(table).count_rows()
                return Step("model", model.name, table, "unchanged", rows, self.lake.version(table),
                            detail="inputs and code unchanged", inputs=versions)
            how = plan_partitions(model, last, versions, self.lake, asked=partitions) if partitions is not None \
                else plan_build(model, last, versions, self.lake, full_refresh)
            if backfill is not None:
                how.meta["backfill"] = backfill
            built = build(model, self.lake, self.engine_for(model), versions, run_id, how, self._shared,
                          Based(version))
            if built.failed is not None:
                return Step.failed("model", model.name, table, built.failed, version=self.lake.version(table),
                                   inputs=versions, checks=built.checks)
            return Step("model", model.name, table, "built", built.rows, built.version,
                        detail=built.detail, inputs=versions, checks=built.checks)

        try:
            return self._timed("model", model.name, table, work)
        finally:
            if self._shared is not None:
                self._shared.done(model)

    def publish(self, model_name: str, run_id: str, warehouse: Warehouse | None = None) -> Step:
        """Publish the model's latest lake version to the warehouse, unless already there."""
        model = self.pipeline.model(model_name)
        table = str(TableRef.model(model.name))

        def work() -> Step:
            wh = warehouse or self._connect()
            try:
                version = self.lake.version(table)
                if version is None:
                    raise ConfigError(f"model {model.name!r} has not been built",
                                      "run the pipeline so the model is built before publishing")
                published = wh.published_version(model.name)
                if published == version:
                    return Step("publish", model.name, model.name, "unchanged", version=version,
                                detail=f"lake version {version} already published")
                mode, rows, parts = publication(self.lake, table, model.materialized, published, version)
                written = wh.publish(model.name, rows.scanner().to_reader(), lake_version=version,
                                     run_id=run_id, mode=mode, primary_key=model.primary_key,
                                     based_on=Based(published),
                                     replace_existing=model.replace_existing, partitions=parts)
                how = f", {len(parts)} partition(s) replaced" if parts is not None else \
                    "" if mode == "replace" else f", {mode}"
                return Step("publish", model.name, model.name, "published", written, version,
                            detail=f"to {wh.dialect}{how}")
            finally:
                if warehouse is None and not self._in_run:
                    wh.dispose()

        return self._timed("publish", model.name, model.name, work)

    # -- a whole run: the local driver of the plan ------------------------------------------
    def plan(self, select: Iterable[str] | str | None = None,
             exclude: Iterable[str] | str | None = None) -> RunPlan:
        """The run plan for these `--select` / `--exclude` selectors (default: everything)."""
        return RunPlan.make(self.pipeline, select, exclude)

    def run(self, run_id: str | None = None, select: Iterable[str] | str | None = None,
            exclude: Iterable[str] | str | None = None, full_refresh: bool = False,
            fail_fast: bool = False, partition: str | None = None) -> RunSummary:
        """Execute the run plan here: the selected sources (default all), then the selected
        models in DAG order, then their publishes. A step whose needs failed is skipped; the
        rest still run. With `fail_fast`, the first failure stops the run (the steps left are
        listed as skipped). `partition` (a date) rebuilds that partition of each selected
        partitioned model, changed or not. A run that publishes first checks the warehouse
        answers: if not, or if the selection is wrong, nothing runs and `summary.error` says
        why. The summary is recorded in the run manifest; the backend is closed."""
        summary = RunSummary(run_id or new_run_id(), self.pipeline.name, started_at=datetime.now(timezone.utc),
                             selection={"select": select, "exclude": exclude, "full_refresh": full_refresh,
                                        **({"partition": partition} if partition else {})})
        try:
            plan = self.plan(select, exclude)
            if any(step.kind == "publish" for step in plan.steps):
                self.check_warehouse()  # before anything lands: a wrong URL fails the run now
        except HeadwaterError as exc:
            summary.error = str(exc)
            return summary
        log.info("run %s of pipeline %r: %d step(s)", summary.run_id, self.pipeline.name, len(plan.steps))
        self._shared = SharedReads(self.pipeline.model(m) for m in plan.selection.models)
        self._in_run = True
        statuses: dict[str, str] = {}
        stopped: Step | None = None  # with fail_fast: the failure that stopped the run
        loaded_at = datetime.now(timezone.utc)
        try:
            for planned in plan.steps:
                if stopped is not None:
                    step = self._skip(planned, f"not run: --fail-fast stopped the run after {stopped.kind} "
                                               f"{stopped.name!r} failed")
                elif (root := plan.blocked_by(planned, statuses)) is not None:
                    step = self._skip(planned, skipped_detail(root))
                elif planned.kind == "load":
                    step = self.load(planned.name, summary.run_id, loaded_at)
                elif planned.kind == "model":
                    step = self.build(planned.name, summary.run_id, full_refresh,
                                      self._partition(planned.name, partition))
                else:
                    step = self.publish(planned.name, summary.run_id)
                statuses[planned.id] = step.status
                summary.steps.append(step)
                if fail_fast and step.status == "failed" and stopped is None:
                    stopped = step
        finally:
            self._shared, self._in_run = None, False  # the frames it holds go with it
            if self._warehouse is not None:
                self._warehouse.dispose()
                self._warehouse = None
        summary.error = summary.describe_failure()
        if self._backend is not None:
            summary.backend, summary.backend_reason = self._backend[0].name, self._backend[1]
        self.record(summary)
        self.close()
        return summary

    def _partition(self, model_name: str, partition: str | None) -> list[str] | None:
        """`[partition]` in the model's grain when it is partitioned and one was asked for."""
        how = self.pipeline.model(model_name).partitioning
        if partition is None or how is None:
            return None
        from engine.transform.partitions import name_of, parse

        return [name_of(parse(partition, how.grain), how.grain)]

    def check_warehouse(self) -> None:
        """Connect to the warehouse and run a no-op (well under a second), so a wrong warehouse
        URL, a server that is down or a refused login fails at once, with a one-line error."""
        from engine.publish import connect

        warehouse = connect(self.config.warehouse)
        try:
            warehouse.ping()
        finally:
            warehouse.dispose()

    def record(self, summary: RunSummary) -> None:
        """Write `summary` to the run manifest (`_headwater.runs`); a run that touched nothing
        is not recorded. A failure to record turns into the run's error."""
        if not summary.steps:
            return
        try:
            manifest.record(self.lake, summary, self.pipeline)
        except Exception as exc:  # noqa: BLE001 - the data is committed; say the manifest is not
            summary.error = summary.error or f"the run manifest could not be written: {exc}"

    # -- helpers ----------------------------------------------------------------------------
    def _timed(self, kind: StepKind, name: str, table: str, work: Callable[[], Step]) -> Step:
        self.reporter.start(kind, name)
        started = time.perf_counter()
        try:
            step = work()
        except Exception as exc:  # noqa: BLE001 - the step failed: it keeps the exception, the run goes on
            step = Step.failed(kind, name, table, exc)
        step.seconds = round(time.perf_counter() - started, 3)
        _log(step)
        self.reporter.finish(step)
        return step

    def _connect(self) -> Warehouse:
        """A connection to the warehouse: during a run, the one its publishes share (opened by
        the first publish; `run` has checked the warehouse answers before anything landed)."""
        from engine.publish import connect

        if not self._in_run:
            return connect(self.config.warehouse)
        if self._warehouse is None:
            self._warehouse = connect(self.config.warehouse)
        return self._warehouse

    def _skip(self, planned: PlannedStep, why: str) -> Step:
        if planned.kind == "model" and self._shared is not None:
            self._shared.done(self.pipeline.model(planned.name))  # it will not read its inputs
        step = Step(planned.kind, planned.name, planned.table, "skipped", detail=why)
        _log(step)
        self.reporter.start(planned.kind, planned.name)
        self.reporter.finish(step)
        return step

    def _input_version(self, model: str, ref: TableRef) -> int:
        version = self.lake.version(str(ref))
        if version is None:
            raise ConfigError(f"model {model!r}: input {str(ref)!r} has no data in the lake yet",
                              "load its source (or build that model) first")
        return version

    def _counting(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.reporter.advance(batch.num_rows)
            yield batch


def _log(step: Step) -> None:
    """One log line per finished step (info: the run's result reports failures; a handler at
    warning level hears only what goes wrong inside steps)."""
    log.info("%s %s: %s, %d rows, version %s, %.3f s%s", step.kind, step.table, step.status,
            step.rows, step.version, step.seconds, f" ({step.detail})" if step.detail else "")


def run(pipeline: Pipeline, config: Config | None = None, reporter: Reporter | None = None,
        **options: Any) -> RunSummary:
    """Run `pipeline` end to end with `config` (default: loaded beside the pipeline); `options`
    are `Runner.run`'s (select, exclude, full_refresh, fail_fast)."""
    return Runner(pipeline, config or Config.load(pipeline.base_dir), reporter).run(**options)
