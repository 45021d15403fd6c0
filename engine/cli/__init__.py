"""The `headwater` command.

`app.py` holds the Typer app and what its commands share; `run.py` runs pipelines (run, demo,
doctor), `lake.py` looks into the lake (show, history, query, runs, lineage, reproduce),
`report.py` draws progress and tables. Other packages add commands through the
`headwater.cli` entry point group: each entry point is a function that takes the app (the
Prefect package `flows` adds `deploy` and `serve` this way), so the engine never imports them.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

# isort: off  (the order commands are listed in `headwater --help`)
from engine.cli import (
    backfill,  # noqa: F401
    lake,  # noqa: F401
    run,  # noqa: F401 - each module registers its commands on `app`
)
from engine.cli.app import app

# isort: on

PLUGIN_GROUP = "headwater.cli"
log = logging.getLogger("headwater.cli")


def _plug_in() -> None:
    """Let every installed `headwater.cli` entry point add its commands to `app`."""
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            point.load()(app)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the CLI down
            log.warning("the %s plugin %r (%s) could not add its commands: %s: %s",
                        PLUGIN_GROUP, point.name, point.value, type(exc).__name__, exc)


_plug_in()


def main() -> None:
    """The `headwater` console script and `python -m engine.cli`."""
    app()


__all__ = ["app", "main"]
