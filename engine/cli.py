"""The `headwater` command: run, demo, doctor, deploy, serve (and, from engine.cli_lake, the
lake's commands). `deploy` and `serve` import Prefect only when they run."""
from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from engine.config import DEFAULTS, Config
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.pipeline import Pipeline, load_pipeline
from engine.report import RichReporter, checks_table, summary_table
from engine.runner import Runner, RunSummary

app = typer.Typer(help="Headwater: extract and load into a Delta lake, transform on GPU or CPU, "
                       "publish to a SQL warehouse.", no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)

LakeOpt = Annotated[str | None, typer.Option("--lake", help="lake URI (env HEADWATER_LAKE)")]
WarehouseOpt = Annotated[str | None, typer.Option("--warehouse", help="SQLAlchemy URL (env HEADWATER_WAREHOUSE)")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help="auto | pandas | cudf | dask | dask-cudf (env HEADWATER_BACKEND)")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", help=(
    "dask backends: start a 'local' or 'local-cuda' cluster (env HEADWATER_DASK_CLUSTER; "
    "HEADWATER_DASK_ADDRESS connects to a running one)"))]


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn failures into one line on stderr and exit code 1 (HEADWATER_DEBUG=1 shows tracebacks)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HeadwaterError as exc:
            if os.environ.get("HEADWATER_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if os.environ.get("HEADWATER_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc} "
                              "(set HEADWATER_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return wrapper


def _run(pipeline: Pipeline, config: Config, *, table: bool = True, **selection: Any) -> RunSummary:
    with RichReporter(console) as reporter:
        summary = Runner(pipeline, config, reporter).run(**selection)
    if not table and summary.ok:
        return summary
    console.print(summary_table(summary))
    checks = checks_table(summary)
    if checks is not None:
        console.print(checks)
    if summary.backend_reason:
        console.print(f"[dim]backend: {summary.backend} ({summary.backend_reason})[/]")
    quarantined = f" ({summary.rows_quarantined():,} quarantined)" if summary.rows_quarantined() else ""
    console.print(f"[dim]landed {summary.rows_landed():,} new rows{quarantined}; lake {config.lake}; "
                  f"warehouse {config.warehouse}[/]")
    if not summary.ok:
        raise HeadwaterError(summary.error or "the run failed")
    return summary


@app.command("run")
@friendly
def run_cmd(pipeline: Annotated[str, typer.Argument(help="a .py file or module defining `pipeline`")],
            select: Annotated[list[str] | None, typer.Option("--select", "-s", help=(
                "models/sources to run: name, +name (and upstream), name+ (and downstream), "
                "tag:x, raw.<source>; repeatable"))] = None,
            exclude: Annotated[list[str] | None, typer.Option("--exclude", help="same syntax; removed from the selection")] = None,
            full_refresh: Annotated[bool, typer.Option("--full-refresh", help="rebuild incremental models from all rows")] = False,
            lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None,
            cluster: ClusterOpt = None) -> None:
    """Load the sources, build the models, publish to the warehouse (all, or a selection)."""
    p = load_pipeline(pipeline)
    _run(p, Config.load(p.base_dir, lake=lake, warehouse=warehouse, backend=backend, dask_cluster=cluster),
         select=select, exclude=exclude, full_refresh=full_refresh)


@app.command()
@friendly
def demo(directory: Annotated[Path, typer.Argument(help="where data, lake and warehouse go")] = Path("."),
         seed: int = 7, photos: int = 1000, users: int = 200,
         log_days: Annotated[int, typer.Option(help="days of event logs to generate")] = 14,
         days: Annotated[int, typer.Option(help="daily increments to simulate after the initial load")] = 0,
         backend: BackendOpt = None) -> None:
    """Generate the photo-popularity example's data and run its pipeline; with --days N, then add
    N days of new and edited photos and events, one at a time, running the pipeline after each."""
    from examples.photo_popularity.daily import days_added, increment
    from examples.photo_popularity.generate import generate
    from examples.photo_popularity.pipeline import make_pipeline

    directory = directory.resolve()
    data = directory / "data" / "photo_popularity"
    fresh = not (data / "photos.sqlite").exists()
    if fresh:
        with console.status(f"generating example data in {data}"):
            generate(data, seed=seed, users=users, photos=photos, days=log_days)
    config = Config.load(directory, backend=backend)
    config = config.with_(
        lake=str(directory / "lake") if config.lake == DEFAULTS["lake"] else None,
        warehouse=f"duckdb:///{directory / 'warehouse.duckdb'}"
        if config.warehouse == DEFAULTS["warehouse"] else None)
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
    console.print(f"next: {where}headwater query \"select count(*) from training_set\"")


@app.command()
@friendly
def doctor(lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None) -> None:
    """Say which backend runs and why, what versions are installed, whether lake and warehouse answer."""
    from engine.backends import gpu_info, resolve
    from engine.warehouse import connect

    config = Config.load(Path.cwd(), lake=lake, warehouse=warehouse, backend=backend)
    failures = 0
    console.print(f"settings from: {config.source}")
    versions = {"python": platform.python_version()}
    for dist in ("headwater", "pyarrow", "pandas", "deltalake", "duckdb", "sqlalchemy", "prefect",
                 "cudf-cu13", "dask"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    console.print(f"gpu: {gpu_info()}")
    checks: list[tuple[str, Callable[[], str]]] = [
        ("backend", lambda: "{0.name} ({1})".format(*resolve(config.backend, config.storage_options, config=config))),
        ("lake", lambda: f"{config.lake}: {len(Lake(config.lake, config.storage_options).tables())} tables"),
        ("warehouse", lambda: _describe(connect, config.warehouse)),
    ]
    for name, check in checks:
        try:
            console.print(f"[green]ok[/]   {name}: {check()}", highlight=False)
        except Exception as exc:  # noqa: BLE001 - doctor reports every failure, then exits non-zero
            failures += 1
            console.print(f"[red]FAIL[/] {name}: {exc}", highlight=False)
    if failures:
        raise typer.Exit(1)


def landed_line(title: str, summary: RunSummary) -> str:
    """`title: landed users 2 · photos 31 (19 new, 12 updated) · …`: rows each source landed."""
    parts = []
    for step in summary.steps:
        if step.kind == "load":
            merged = step.detail.partition("merged: ")[2]
            parts.append(f"{step.name} {step.rows:,}" + (f" ({merged})" if merged else ""))
    return f"{title}: landed " + " · ".join(parts)


def _describe(connect: Callable[[str], Any], url: str) -> str:
    wh = connect(url)
    try:
        return wh.describe()
    finally:
        wh.dispose()


from engine import cli_lake  # noqa: E402,F401 - registers show, history, query, runs, lineage, reproduce


# -- Prefect: deployments (flows/cli.py imports Prefect, only when one of these runs) --------------
@app.command()
@friendly
def deploy(name: Annotated[list[str] | None, typer.Option("--name", help="deployment in prefect.yaml "
                                                           "(repeatable; default photo-popularity-process)")] = None,
           pool: Annotated[str | None, typer.Option(help="work pool instead of the deployment's own")] = None,
           prefect_file: Annotated[Path | None, typer.Option(help="default: the checkout's prefect.yaml")] = None) -> None:
    """Register prefect.yaml's deployments of the elt flow with the Prefect API (PREFECT_API_URL)."""
    from flows import cli as flows_cli

    flows_cli.deploy(name, pool, prefect_file)


@app.command()
@friendly
def serve(pipeline: Annotated[str, typer.Argument(help="a .py file or module defining `pipeline`")]
          = "examples/photo_popularity/pipeline.py",
          name: Annotated[str, typer.Option(help="deployment name")] = "headwater-serve",
          cron: Annotated[str | None, typer.Option(help="a UTC cron schedule, e.g. '0 6 * * *'")] = None,
          select: Annotated[str | None, typer.Option(help="dbt-style selectors")] = None,
          exclude: Annotated[str | None, typer.Option(help="selectors to leave out")] = None,
          full_refresh: Annotated[bool, typer.Option(help="rebuild incremental models")] = False,
          lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None) -> None:
    """Serve the elt flow as a deployment from this process (no work pool needed) until Ctrl-C."""
    from flows import cli as flows_cli

    flows_cli.serve(pipeline, name, cron, select, exclude, full_refresh, lake, warehouse, backend)


def main() -> None:
    """Entry point for `python -m engine.cli` (the `engine.cli` module's app: under `-m` this
    file also runs as `__main__`, whose own `app` has no lake commands registered)."""
    from engine.cli import app as registered

    registered()


if __name__ == "__main__":
    sys.exit(main())
