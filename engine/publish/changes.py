"""What a publish sends: the whole model table, or only the rows added since the published version,
with the lake table's description and column comments in the rows' schema (for the warehouse's
comments, engine/publish/comments.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.dataset as ds

from engine.lake import Lake, WriteMode
from engine.lake.changes import changes
from engine.lake.describe import DESCRIBED, DESCRIPTION
from engine.lake.guard import META_PREFIX
from engine.lake.partitions import PARTITION, changed_partitions, partitioned

if TYPE_CHECKING:
    from engine.transform.models import Materialized


def publication(lake: Lake, name: str, materialized: Materialized, published: int | None,
                version: int) -> tuple[WriteMode, ds.Dataset, list[str] | None]:
    """How to bring the warehouse copy of model table `name` from lake version `published` to
    `version`: ("replace", every row), ("append", the rows added) or ("merge", the rows added),
    and for a partitioned table the partitions the rows replace (else None).

    Incremental and merge models publish only their new rows, unless a full build happened
    since the published version (then the whole table replaces the old one). A partitioned
    table publishes the partitions replaced since, unless it was rebuilt whole. A commit that
    only set descriptions (engine/lake/describe.py) changes no rows.
    """
    if published is not None and published <= version and partitioned(lake, name, version):
        parts = changed_partitions(lake, name, published, version)
        if parts is not None:
            rows = lake.dataset(name, version).filter(ds.field(PARTITION).isin(parts))
            return "append", described(lake, name, version, rows), parts
    if materialized == "table" or published is None or published > version:
        return "replace", described(lake, name, version, lake.dataset(name, version)), None
    described_only = DESCRIBED.removeprefix(META_PREFIX)
    full = any(c.get("incremental") is False or ("incremental" not in c and described_only not in c)
               for c in lake.history(name) if published < c.get("version", -1) <= version)
    if full:
        return "replace", described(lake, name, version, lake.dataset(name, version)), None
    mode: WriteMode = "merge" if materialized == "merge" else "append"
    return mode, described(lake, name, version, changes(lake, name, published, version).dataset), None


def described(lake: Lake, name: str, version: int, rows: ds.Dataset) -> ds.Dataset:
    """`rows` whose schema also carries the table's description at `version` (its column
    comments come with the Delta schema already)."""
    text = lake.table(name, version, readable=False).metadata().description
    if not text:
        return rows
    return rows.replace_schema(rows.schema.with_metadata({**(rows.schema.metadata or {}), DESCRIPTION: text}))
