"""What a publish sends: the whole model table, or only the rows added since the published version."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.dataset as ds

from engine.lake import Lake, WriteMode
from engine.lake.changes import changes
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
    table publishes the partitions replaced since, unless it was rebuilt whole.
    """
    if published is not None and published <= version and partitioned(lake, name, version):
        parts = changed_partitions(lake, name, published, version)
        if parts is not None:
            return "append", lake.dataset(name, version).filter(ds.field(PARTITION).isin(parts)), parts
    if materialized == "table" or published is None or published > version:
        return "replace", lake.dataset(name, version), None
    full = any(c.get("incremental") is False or "incremental" not in c
               for c in lake.history(name) if published < c.get("version", -1) <= version)
    if full:
        return "replace", lake.dataset(name, version), None
    return ("merge" if materialized == "merge" else "append"), changes(lake, name, published, version).dataset, None
