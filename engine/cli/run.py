"""`headwater run`, `demo` and `doctor`: run a pipeline, run the demo, check the setup."""
from __future__ import annotations

import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from engine.cli.app import (
    PIPELINE_HELP,
    BackendOpt,
    ClusterOpt,
    ExcludeOpt,
    Failed,
    FullRefreshOpt,
    LakeOpt,
    SelectOpt,
    WarehouseOpt,
    app,
    console,
    friendly,
    guarded,
)
from engine.cli.report import RichReporter, backend_note, checks_view, summary_view
from engine.config import DEFAULTS, Config
from engine.errors import one_line
from engine.lake import Lake
from engine.pipeline import Pipeline, load_pipeline
from engine.redact import mask
from engine.runs.runner import Runner
from engine.runs.steps import RunSummary


def _run(pipeline: Pipeline, config: Config, *, table: bool = True, **selection: Any) -> RunSummary:
    guarded(config)
    with RichReporter(console) as reporter:
        summary = Runner(pipeline, config, reporter).run(**selection)
    if not summary.steps and summary.error:  # the run never started (a bad selector): no table
        raise Failed(summary.error, [])
    if not table and summary.ok:
        return summary
    console.print(summary_view(summary, console.width))
    checks = checks_view(summary, console.width)
    if checks is not None:
        console.print(checks)
    if summary.backend_reason:
        console.print(backend_note(summary, console.width))
    quarantined = f" ({summary.rows_quarantined():,} quarantined)" if summary.rows_quarantined() else ""
    console.print(f"landed {summary.rows_landed():,} new rows{quarantined}; lake {mask(config.lake)}; "
                  f"warehouse {mask(config.warehouse)}", style="dim", highlight=False, markup=False)
    if not summary.ok:
        tracebacks = [s.traceback for s in summary.failed if s.traceback]
        hint = "HEADWATER_DEBUG=1 prints the traceback" if tracebacks else None
        raise Failed(summary.describe_failure(hint) or summary.error or "the run failed", tracebacks)
    return summary


@app.command("run")
@friendly
def run_cmd(pipeline: Annotated[str, typer.Argument(metavar="PIPELINE", help=PIPELINE_HELP)],
            select: SelectOpt = None, exclude: ExcludeOpt = None, full_refresh: FullRefreshOpt = False,
            fail_fast: Annotated[bool, typer.Option("--fail-fast", help=(
                "stop at the first failed step (default: skip only what depends on it, run the rest)"))] = False,
            partition: Annotated[str | None, typer.Option("--partition", metavar="DATE", help=(
                "rebuild this partition (YYYY-MM-DD; YYYY-MM by month) of each selected partitioned model, "
                "changed or not"))] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help=(
                "say what the run would land, build and publish, and why, writing nothing (headwater plan)"))] = False,
            lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None,
            cluster: ClusterOpt = None) -> None:
    """Load the sources, build the models, publish to the warehouse (all, or a selection).

    A failed step skips only the steps that depend on it; the exit status is 1 if any failed."""
    p = load_pipeline(pipeline)
    config = Config.load(p.base_dir, lake=lake, warehouse=warehouse, backend=backend, dask_cluster=cluster)
    if dry_run:
        from engine.cli.project import show_plan

        show_plan(p, guarded(config), select=select, exclude=exclude, full_refresh=full_refresh)
        return
    _run(p, config, select=select, exclude=exclude, full_refresh=full_refresh, fail_fast=fail_fast,
         partition=partition)


@app.command()
@friendly
def demo(directory: Annotated[Path, typer.Argument(
             metavar="DIRECTORY", help="where the example's data, lake and warehouse go")] = Path("."),
         seed: Annotated[int, typer.Option(help="random seed: the same seed makes the same data")] = 7,
         photos: Annotated[int, typer.Option(help="photos to generate")] = 1000,
         users: Annotated[int, typer.Option(help="users to generate")] = 200,
         log_days: Annotated[int, typer.Option(help="days of event logs to generate")] = 14,
         days: Annotated[int, typer.Option(help="daily increments to simulate after the initial load")] = 0,
         lake: Annotated[str | None, typer.Option(
             "--lake", help="lake URI (default: DIRECTORY/lake; env HEADWATER_LAKE)")] = None,
         warehouse: Annotated[str | None, typer.Option(
             "--warehouse", help="SQLAlchemy URL (default: DIRECTORY/warehouse.duckdb; env HEADWATER_WAREHOUSE)")]
         = None,
         backend: BackendOpt = None) -> None:
    """Generate the photo-popularity example's data and run its pipeline; with --days N, then add
    N days of new and edited photos and events, one at a time, running the pipeline after each."""
    from engine.demo.daily import days_added, increment
    from engine.demo.generate import generate
    from engine.demo.pipeline import make_pipeline

    directory = directory.resolve()
    data = directory / "data" / "photo_popularity"
    fresh = not (data / "photos.sqlite").exists()
    if fresh:
        with console.status(f"generating example data in {data}"):
            generate(data, seed=seed, users=users, photos=photos, days=log_days)
    config = Config.load(directory, lake=lake, warehouse=warehouse, backend=backend)
    config = config.with_(
        lake=str(directory / "lake") if config.lake == DEFAULTS["lake"] and lake is None else None,
        warehouse=f"duckdb:///{directory / 'warehouse.duckdb'}"
        if config.warehouse == DEFAULTS["warehouse"] and warehouse is None else None)
    pipeline = make_pipeline(data)
    pipeline.base_dir = directory
    pending = range(len(days_added(data)) + 1, days + 1)
    summary = _run(pipeline, config, table=not pending)
    lines = [landed_line("initial load" if fresh else "catch-up run", summary)]
    for day in pending:
        added = increment(data, seed=seed)
        summary = _run(pipeline, config, table=day == days)
        lines.append(landed_line(f"day {day} ({added.day})", summary))
    if days:
        console.print("\n".join(lines), highlight=False)
    where = "" if directory == Path.cwd() else f"cd {directory} && "
    console.print(f"next: {where}headwater query \"select count(*) from training_set\"", highlight=False)


@app.command()
@friendly
def doctor(lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None) -> None:
    """Say where each kind of model runs and why, what versions are installed, whether lake and
    warehouse answer."""
    from engine.publish import connect
    from engine.transform.backends import gpu_info, resolve
    from engine.transform.backends.kinds import engine_for

    config = guarded(Config.load(Path.cwd(), lake=lake, warehouse=warehouse, backend=backend))
    failures = 0
    console.print(f"settings from: {config.source}", highlight=False, markup=False)
    versions = {"python": platform.python_version()}
    for dist in ("headwater", "pyarrow", "pandas", "deltalake", "duckdb", "polars", "sqlalchemy", "prefect",
                 "cudf-cu13", "cudf-polars-cu13", "dask"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), highlight=False)
    console.print(f"gpu: {gpu_line(gpu_info())}", highlight=False, markup=False)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("pandas-API models", lambda: resolve(config.backend, config.storage_options, config=config)[1]),
        ("SQL models", lambda: engine_for("sql", config)[1]),
        ("polars models", lambda: engine_for("polars", config)[1]),
        ("lake", lambda: f"{config.lake}: {len(Lake(config.lake, config.storage_options).tables())} tables"),
        ("warehouse", lambda: _describe(connect, config.warehouse)),
    ]
    for name, check in checks:
        try:
            console.print(f"[green]ok[/]   {name}: {escape(mask(check()))}", highlight=False)
        except Exception as exc:  # noqa: BLE001 - doctor reports every failure, then exits non-zero
            failures += 1
            console.print(f"[red]FAIL[/] {name}: {escape(mask(one_line(str(exc))))}", highlight=False)
    if failures:
        raise typer.Exit(1)


def gpu_line(info: dict[str, Any]) -> str:
    """What NVML found, in words: `1 x NVIDIA H100 80GB HBM3, driver 560.35` or `none (why)`."""
    if info.get("count"):
        return f"{info['count']} x {', '.join(info.get('names') or [])}, driver {info.get('driver', '?')}"
    return f"none ({info.get('error') or 'no GPU counted'})"


def landed_line(title: str, summary: RunSummary) -> str:
    """`title: landed users 2 · photos 31 (19 new, 12 changed) · …`: rows each source landed (for a
    merge: new and updated; for an SCD2 history: new keys and changed ones)."""
    parts = []
    for step in summary.steps:
        if step.kind == "load":
            merged = step.detail.partition("merged: ")[2] or ", ".join(
                step.detail.partition("history: ")[2].split(", ")[:2])
            parts.append(f"{step.name} {step.rows:,}" + (f" ({merged})" if merged else ""))
    return f"{title}: landed " + " · ".join(parts)


def _describe(connect: Callable[[str], Any], url: str) -> str:
    wh = connect(url)
    try:
        return wh.describe()
    finally:
        wh.dispose()
