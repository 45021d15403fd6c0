"""What changed in a lake table between two versions, read from its Delta file lists.

A Delta commit that appends adds files and removes none; one that merges or overwrites
removes (rewrites) files. So the rows "landed since version v" are the rows of the files
present now that were not present at v, and a table was rewritten when files present at v
are gone now. Incremental models and incremental publishes both read changes this way.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow.dataset as ds

from engine.lake.storage import arrow_dataset
from engine.lake.store import Lake


@dataclass
class Changes:
    """The rows added to a table since `since` (all rows when `since` is None).

    `rewritten` is True when files present at `since` are gone: the table was overwritten,
    merged into or compacted, so the added rows are not only new rows.
    """

    table: str
    since: int | None
    version: int
    dataset: ds.Dataset
    rewritten: bool


def changes(lake: Lake, name: str, since: int | None, version: int) -> Changes:
    """The rows of `name` at `version` that are in files added after version `since`."""
    now = lake.dataset(name, version)
    if since is None or since > version:  # nothing to compare with (or a table recreated since)
        return Changes(name, None, version, now, True)
    then = lake.table(name, since, readable=False)  # its files may be vacuumed: only their names are needed
    before = {f.path for f in arrow_dataset(then, lake.storage_options).get_fragments()}
    fragments = list(now.get_fragments())
    added = [f for f in fragments if f.path not in before]
    rewritten = bool(before - {f.path for f in fragments})
    subset = ds.FileSystemDataset(added, now.schema, now.format, now.filesystem)
    return Changes(name, since, version, subset, rewritten)
