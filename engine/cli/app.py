"""The `headwater` app itself: the Typer app, its consoles, the options commands share, and
`friendly`, which turns a failure into one line on stderr."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from engine.errors import HeadwaterError

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
