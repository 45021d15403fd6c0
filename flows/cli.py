"""`headwater deploy` and `headwater serve`: the Prefect side of the `headwater` command.

`register` is the `headwater.cli` entry point (pyproject.toml): the engine's CLI calls it to add
these two commands, and imports nothing of this package itself. Prefect is imported only when
one of the commands runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.cli.app import (
    PIPELINE_HELP,
    BackendOpt,
    ExcludeOpt,
    FullRefreshOpt,
    LakeOpt,
    SelectOpt,
    WarehouseOpt,
    friendly,
)

console = Console()


def register(app: typer.Typer) -> None:
    """Add `deploy` and `serve` to the `headwater` app."""
    @app.command()
    @friendly
    def deploy(name: Annotated[list[str] | None, typer.Option(
                   "--name", help="deployment in prefect.yaml (repeatable; default photo-popularity-process)")] = None,
               pool: Annotated[str | None, typer.Option(help="work pool instead of the deployment's own")] = None,
               prefect_file: Annotated[Path | None, typer.Option(
                   help="default: prefect.yaml in the current folder (your project's)")] = None) -> None:
        """Register prefect.yaml's deployments of the elt flow with the Prefect API (PREFECT_API_URL)."""
        from flows import deploy as deployments

        registered = deployments.deploy(name, pool, prefect_file)
        for done in registered:
            console.print(f"deployed [bold]{done}[/] (its daily schedule is inactive); run it now: "
                          f"prefect deployment run '{done}'", highlight=False)

    @app.command()
    @friendly
    def serve(pipeline: Annotated[str, typer.Argument(metavar="PIPELINE", help=PIPELINE_HELP)] = "pipeline.py",
              name: Annotated[str, typer.Option(help="deployment name")] = "headwater-serve",
              cron: Annotated[str | None, typer.Option(help="a UTC cron schedule, e.g. '0 6 * * *'")] = None,
              select: SelectOpt = None, exclude: ExcludeOpt = None, full_refresh: FullRefreshOpt = False,
              lake: LakeOpt = None, warehouse: WarehouseOpt = None, backend: BackendOpt = None) -> None:
        """Serve the elt flow as a deployment from this process (no work pool needed) until Ctrl-C."""
        from flows import deploy as deployments

        console.print(f"serving headwater-elt/{name} for {pipeline}; Ctrl-C stops", highlight=False)
        deployments.serve(pipeline, name, cron, selectors(select), selectors(exclude), full_refresh, lake,
                          warehouse, backend)


def selectors(values: list[str] | None) -> list[str] | None:
    """Repeated `-s a -s b` as the flow's `select` parameter, a list (None when none)."""
    return list(values) if values else None
