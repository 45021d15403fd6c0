"""Forgetting and removing lake tables: `reset` a source so its files land again, `drop` a table.

Why `reset` empties the raw table instead of only clearing its state: a source's state (files
landed, cursor) lives in the metadata of the commit that landed its rows. A reset that cleared
the state alone would make the next load append every file again on top of the rows already
there: each row twice. A reset that recorded a "replace on next load" flag would leave the table
full of rows whose state says they were never landed, until that load came, and every reader in
between (a model build, `headwater test`) would see rows and state disagree. So a reset is one
Delta commit on the version it read: it removes every row and records the empty state, so rows
and state cannot disagree at any version, and the next load lands everything into an empty
table, once. History is kept (earlier versions stay readable, `headwater history` shows the
reset), and so is the schema. Models that read the table see it rewritten and rebuild in full
on their next build, incremental ones included (engine/transform/build.py `plan_build`).

The source's quarantine (`quarantine.<source>`: rows its loads refused) is emptied first, by its
own commit: the files landing again refuse those rows again. Should the raw table's commit then
fail (another run committed to it meanwhile), the quarantine is empty but the source still
remembers its files; running the reset again finishes it, and nothing is ever doubled.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.graph import TableRef
from engine.lake.guard import Based
from engine.lake.storage import fsspec_options, storage_errors
from engine.lake.store import INTERNAL, Lake


@dataclass(frozen=True)
class Reset:
    """What a reset removed: the raw table's rows, the files or cursor it had landed, and the
    quarantined entries; `version` is the raw table's version that records it."""

    table: str
    version: int | None
    rows: int
    state: dict[str, Any]
    quarantined: int


def raw_table(lake: Lake, name: str) -> str:
    """`raw.<source>` for `name` (`raw.x` or a bare source name) when the lake has it, else a
    ConfigError saying what can be reset."""
    ref = TableRef.parse(name if "." in name else f"raw.{name}")
    if ref.zone != "raw":
        raise ConfigError(f"{name!r} is not a raw table: reset forgets what a source landed",
                          "name it raw.<source>; to rebuild a model from all its rows, run it with --full-refresh")
    if not lake.exists(str(ref)):
        raise ConfigError(f"no lake table {str(ref)!r}: nothing to reset", "check the name with `headwater ls`")
    return str(ref)


def pending_reset(lake: Lake, name: str) -> Reset:
    """What `reset` would remove from `raw.<source>` now (nothing is changed)."""
    table = raw_table(lake, name)
    version, meta = lake.read_metadata(table)
    quarantine = quarantine_of(table)
    queued = lake.dataset(quarantine).count_rows() if lake.exists(quarantine) else 0
    return Reset(table, version, lake.dataset(table, version).count_rows(), meta.get("state", {}), queued)


def reset(lake: Lake, name: str, run_id: str) -> Reset:
    """Empty `raw.<source>` and forget its state in one commit based on the version read (and
    empty its quarantine before); see this module's docstring. Raises ConcurrentRunError,
    committing nothing to the raw table, when a run commits to it meanwhile."""
    before = pending_reset(lake, name)
    meta = {"reset": {"rows": before.rows, "quarantined": before.quarantined}}
    lake.check_unchanged(before.table, Based(before.version))
    quarantine = quarantine_of(before.table)
    if before.quarantined:
        lake.land(quarantine, iter(()), run_id=run_id, state={}, mode="replace", meta=meta,
                  based_on=lake.based(quarantine))
    commit = lake.land(before.table, iter(()), run_id=run_id, state={}, mode="replace", meta=meta,
                       commit_empty=lambda: True, based_on=Based(before.version))
    return Reset(before.table, commit.version, before.rows, before.state, before.quarantined)


def quarantine_of(table: str) -> str:
    """`quarantine.<source>` of `raw.<source>`."""
    return str(TableRef("quarantine", TableRef.parse(table).name))


def drop(lake: Lake, name: str) -> str:
    """Remove lake table `name` (`zone.table` or a bare name) with its whole history; its
    qualified name. Headwater's own tables (the run manifest) are refused."""
    table = lake.qualify(name)
    if table.startswith(INTERNAL + "."):
        raise ConfigError(f"{table} is Headwater's own table", "it cannot be dropped with `headwater drop`")
    if not lake.exists(table):
        raise ConfigError(f"no lake table {table!r} at {lake.root}", "check the name with `headwater ls`")
    uri = lake.uri(table)
    with storage_errors(f"cannot remove the lake table at {uri}"):
        if "://" not in uri or uri.startswith("file://"):
            shutil.rmtree(Path(uri.removeprefix("file://")))
        else:
            import fsspec

            fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(lake.storage_options or {}))
            fs.rm(path, recursive=True)
            fs.invalidate_cache()
    return table
