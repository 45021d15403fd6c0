"""`headwater deploy` and `headwater serve`: the Prefect side of the `headwater` command.

engine/cli.py registers both and imports this module only when one of them runs, so the
engine's own commands never import Prefect."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from flows import deploy as deployments

console = Console()


def deploy(names: list[str] | None, pool: str | None, prefect_file: Path | None) -> None:
    """Register deployments from prefect.yaml with the Prefect API and say how to run them."""
    registered = deployments.deploy(names, pool, prefect_file or deployments.PREFECT_FILE)
    for name in registered:
        console.print(f"deployed [bold]{name}[/] (its daily schedule is inactive); run it now: "
                      f"prefect deployment run '{name}'", highlight=False)


def serve(pipeline: str, name: str, cron: str | None, select: str | None, exclude: str | None,
          full_refresh: bool, lake: str | None, warehouse: str | None, backend: str | None) -> None:
    """Serve the elt flow for `pipeline` from this process until interrupted."""
    console.print(f"serving headwater-elt/{name} for {pipeline}; Ctrl-C stops", highlight=False)
    deployments.serve(pipeline, name, cron, select, exclude, full_refresh, lake, warehouse, backend)
