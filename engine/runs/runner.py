"""Runs a pipeline end to end without Prefect: load each source, build each model, publish.

Each step is also callable alone (`Runner.load`, `.build`, `.publish`), which is how the Prefect
flows run them as tasks. Steps return small `Step` summaries, never frames.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.config import Config
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.transform.build import build, plan
from engine.publish.changes import publication
from engine.transform.models import input_table
from engine.pipeline import Pipeline
from engine.load.land import land
from engine.transform.reads import SharedReads
from engine.runs import manifest, selection
from engine.runs.selection import Selection
from engine.runs.steps import NullReporter, Reporter, RunSummary, Step, new_run_id

if TYPE_CHECKING:  # backends and warehouse drivers load on first use: `headwater show` needs neither
    from engine.transform.backends import Backend
    from engine.publish import Warehouse


class Runner:
    """Runs the steps of `pipeline` against the lake and warehouse that `config` names."""

    def __init__(self, pipeline: Pipeline, config: Config, reporter: Reporter | None = None) -> None:
        self.pipeline = pipeline
        self.config = config
        self.reporter = reporter or NullReporter()
        self.lake = Lake(config.lake, config.storage_options)
        self._backend: tuple[Backend, str] | None = None
        self._shared: SharedReads | None = None  # during run(): whole-table reads its models share

    @property
    def backend(self) -> tuple[Backend, str]:
        """The backend models run on, and why it was chosen (resolved once, on first use)."""
        if self._backend is None:
            from engine.transform.backends import resolve

            self._backend = resolve(self.config.backend, self.lake.storage_options,  # as the lake: env filled in
                                    config=self.config)
        return self._backend

    def _timed(self, kind: str, name: str, table: str, work: Any) -> Step:
        self.reporter.start(kind, name)
        started = time.perf_counter()
        try:
            step = work()
        except HeadwaterError as exc:
            step = Step(kind, name, table, "failed", detail=str(exc))
        except Exception as exc:  # a user's model or a driver failed: keep the type for the user
            step = Step(kind, name, table, "failed", detail=f"{type(exc).__name__}: {exc}")
        step.seconds = round(time.perf_counter() - started, 3)
        self.reporter.finish(step)
        return step

    # -- the three steps ------------------------------------------------------------------
    def load(self, source_name: str, run_id: str, loaded_at: datetime | None = None) -> Step:
        """Land what is new in one source as one Delta commit (with its state)."""
        source = self.pipeline.source(source_name)
        table = f"raw.{source.name}"

        def work() -> Step:
            state = self.lake.state(table)
            extraction = source.extract(state, run_id=run_id,
                                        loaded_at=loaded_at or datetime.now(timezone.utc))
            extraction.batches = self._counting(extraction.batches)
            landing = land(self.lake, table, extraction, run_id=run_id, origin=f"source {source.name!r}")
            commit = landing.commit
            if commit.version is None:
                return Step("load", source.name, table, "unchanged", 0, self.lake.version(table),
                            detail=extraction.planned, quarantined=landing.quarantined)
            merged = "" if commit.inserted is None else \
                f"merged: {commit.inserted:,} new, {commit.updated:,} updated"
            detail = ", ".join(p for p in (extraction.planned, merged, landing.describe()) if p)
            return Step("load", source.name, table, "landed", commit.rows, commit.version,
                        detail=detail, quarantined=landing.quarantined)

        return self._timed("load", source.name, table, work)

    def build(self, model_name: str, run_id: str, full_refresh: bool = False) -> Step:
        """Rebuild one model into `models.<name>` unless its inputs and code are unchanged.

        `full_refresh` rebuilds an incremental or merge model from all of its input rows."""
        model = self.pipeline.model(model_name)
        table = f"models.{model.name}"

        def work() -> Step:
            versions = {ref: self._input_version(model.name, ref) for ref in model.inputs.values()}
            last = self.lake.metadata(table)
            if not full_refresh and last.get("inputs") == versions and last.get("code") == model.code_hash:
                rows = last["rows"] if "rows" in last else self.lake.dataset(table).count_rows()
                return Step("model", model.name, table, "unchanged", rows, self.lake.version(table),
                            detail="inputs and code unchanged", inputs=versions)
            how = plan(model, last, versions, self.lake, full_refresh)
            built = build(model, self.lake, self.backend[0], versions, run_id, how, self._shared)
            if built.failed:
                return Step("model", model.name, table, "failed", version=self.lake.version(table),
                            detail=built.failed, inputs=versions,
                            checks=built.checks)
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
        table = f"models.{model.name}"

        def work() -> Step:
            from engine.publish import connect

            wh = warehouse or connect(self.config.warehouse)
            try:
                version = self.lake.version(table)
                if version is None:
                    raise HeadwaterError(f"model {model.name!r} has not been built",
                                         "run the pipeline so the model is built before publishing")
                published = wh.published_version(model.name)
                if published == version:
                    return Step("publish", model.name, model.name, "unchanged", version=version,
                                detail=f"lake version {version} already published")
                mode, rows = publication(self.lake, table, model.materialized, published, version)
                written = wh.publish(model.name, rows.scanner().to_reader(), lake_version=version,
                                     run_id=run_id, mode=mode, key=model.key)
                return Step("publish", model.name, model.name, "published", written, version,
                            detail=f"to {wh.dialect}" + ("" if mode == "replace" else f", {mode}"))
            finally:
                if warehouse is None:
                    wh.dispose()

        return self._timed("publish", model.name, model.name, work)

    # -- a whole run ----------------------------------------------------------------------
    def select(self, select: Iterable[str] | str | None = None,
               exclude: Iterable[str] | str | None = None) -> Selection:
        """The sources and models a run with these `--select` / `--exclude` selectors touches."""
        return selection.select([s.name for s in self.pipeline.sources], self.pipeline.ordered_models,
                                select, exclude)

    def run(self, run_id: str | None = None, select: Iterable[str] | str | None = None,
            exclude: Iterable[str] | str | None = None, full_refresh: bool = False) -> RunSummary:
        """The selected sources (default all), then the selected models in DAG order, then their
        publishes; stops at the first failed step."""
        summary = RunSummary(run_id or new_run_id(), self.pipeline.name, started_at=datetime.now(timezone.utc),
                             selection={"select": select, "exclude": exclude, "full_refresh": full_refresh})
        try:
            chosen = self.select(select, exclude)
        except HeadwaterError as exc:
            summary.error = str(exc)
            return summary
        loaded_at = datetime.now(timezone.utc)
        self._shared = SharedReads(self.pipeline.model(m) for m in chosen.models)
        steps = [lambda s=s: self.load(s, summary.run_id, loaded_at) for s in chosen.sources]
        steps += [lambda m=m: self.build(m, summary.run_id, full_refresh) for m in chosen.models]
        if chosen.models:
            steps += [lambda: self._publish_all(summary.run_id, chosen.models)]
        try:
            for step in steps:
                done = step()
                for s in done if isinstance(done, list) else [done]:
                    summary.steps.append(s)
                    if s.status == "failed":
                        summary.error = f"{s.kind} {s.name!r} failed: {s.detail}"
                if summary.error:
                    break
        finally:
            self._shared = None  # the frames it holds go with it
        if self._backend is not None:
            summary.backend, summary.backend_reason = self._backend[0].name, self._backend[1]
        self.record(summary)
        self.close()
        return summary

    def close(self) -> None:
        """Release the backend's resources (a Dask client or the cluster it started)."""
        if self._backend is not None:
            close = getattr(self._backend[0], "close", None)
            if close is not None:
                close()

    def record(self, summary: RunSummary) -> None:
        """Write `summary` to the run manifest (`_headwater.runs`); a run that touched nothing
        is not recorded. A failure to record turns into the run's error."""
        if not summary.steps:
            return
        try:
            manifest.record(self.lake, summary, self.pipeline)
        except Exception as exc:  # noqa: BLE001 - the data is committed; say the manifest is not
            summary.error = summary.error or f"the run manifest could not be written: {exc}"

    def _publish_all(self, run_id: str, models: list[str]) -> list[Step]:
        from engine.publish import connect

        wh = connect(self.config.warehouse)
        try:
            return [self.publish(name, run_id, wh) for name in models if self.pipeline.model(name).publish]
        finally:
            wh.dispose()

    def _input_version(self, model: str, ref: str) -> int:
        version = self.lake.version(input_table(ref))
        if version is None:
            raise HeadwaterError(f"model {model!r}: input {ref!r} has no data in the lake yet",
                                 "load its source (or build that model) first")
        return version

    def _counting(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.reporter.advance(batch.num_rows)
            yield batch


def run(pipeline: Pipeline, config: Config | None = None, reporter: Reporter | None = None) -> RunSummary:
    """Run `pipeline` end to end with `config` (default: loaded beside the pipeline)."""
    return Runner(pipeline, config or Config.load(pipeline.base_dir), reporter).run()
