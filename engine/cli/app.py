"""The `headwater` app itself: the Typer app, its consoles, the options commands share, and
`friendly`, which turns a failure into one line on stderr. Whatever the commands print goes
through `engine.redact.mask` (`guarded` registers the settings' credentials with it)."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from engine._version import __version__
from engine.cli.formats import Format
from engine.config import Config
from engine.errors import HeadwaterError, exception_line, traceback_text
from engine.redact import mask

HELP = ("Headwater: extract and load into a Delta lake, transform on GPU or CPU, publish to a SQL "
        "warehouse.")
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)

# The options `headwater run`, `serve` and `python -m flows.elt` share, spelled the same way.
SELECT_HELP = ("models/sources to run: name, +name (and upstream), name+ (and downstream), tag:x, "
               "raw.<source>; repeatable, or several in one value separated by spaces or commas")
EXCLUDE_HELP = "selectors to leave out, same syntax as --select; repeatable"
FULL_REFRESH_HELP = "rebuild incremental models from all their input rows"
PIPELINE_HELP = "a .py file or module defining `pipeline`"

SelectOpt = Annotated[list[str] | None, typer.Option("--select", "-s", help=SELECT_HELP)]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help=EXCLUDE_HELP)]
FullRefreshOpt = Annotated[bool, typer.Option("--full-refresh", help=FULL_REFRESH_HELP)]
LakeOpt = Annotated[str | None, typer.Option("--lake", help="lake URI (env HEADWATER_LAKE)")]
WarehouseOpt = Annotated[str | None, typer.Option("--warehouse", help="SQLAlchemy URL (env HEADWATER_WAREHOUSE)")]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help="auto | pandas | cudf | dask | dask-cudf (env HEADWATER_BACKEND)")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", help=(
    "dask backends: start a 'local' or 'local-cuda' cluster (env HEADWATER_DASK_CLUSTER; "
    "HEADWATER_DASK_ADDRESS connects to a running one)"))]
FormatOpt = Annotated[Format, typer.Option("--format", help=(
    "table (for people: cut to the terminal's width) | csv | json | markdown (for scripts: every "
    "value whole)"))]


def _print_version(asked: bool) -> None:
    if asked:
        console.print(f"headwater {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(show_version: Annotated[bool, typer.Option(
        "--version", help="print Headwater's version and exit", is_eager=True,
        callback=_print_version)] = False) -> None:
    """Options that come before the command (the app's help is HELP)."""


class Failed(HeadwaterError):
    """A command's work ended with failures already shown (a run's failed steps); `tracebacks`
    are theirs, printed under HEADWATER_DEBUG=1."""

    def __init__(self, message: str, tracebacks: list[str]) -> None:
        super().__init__(message)
        self.tracebacks = tracebacks


def guarded(config: Config) -> Config:
    """`config`, its credentials (the warehouse URL's password, secret storage options) now
    masked in everything printed or logged."""
    return config.mask_secrets()


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn failures into one line on stderr and exit code 1. HEADWATER_DEBUG=1 prints the
    traceback first: for a model that raised, from the user's own code down."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(os.environ.get("HEADWATER_DEBUG"))
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # a command's own exit status or usage error: typer prints it (or nothing)
        except HeadwaterError as exc:
            if debug:
                _print_tracebacks(exc)
            err_console.print(f"[bold red]error:[/] {escape(mask(str(exc)))}", highlight=False, soft_wrap=True)
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                _print_tracebacks(exc)
            err_console.print(f"[bold red]error:[/] {escape(exception_line(exc))} "
                              "(set HEADWATER_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return wrapper


def _print_tracebacks(exc: BaseException) -> None:
    """The traceback(s) behind `exc` on stderr, as Python prints them."""
    texts = exc.tracebacks if isinstance(exc, Failed) else [traceback_text(exc)]
    for text in texts:
        err_console.print(mask(text.rstrip()), highlight=False, markup=False, soft_wrap=True)
