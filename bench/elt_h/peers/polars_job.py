"""ELT-H in polars: read eagerly, write Parquet, run lazy queries over the landed files, write
the results to a DuckDB file."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from bench.elt_h import queries
from bench.elt_h.stages import Stages, publish_duckdb


def run(sources: dict[str, Path], schemas: dict[str, pa.Schema], fmt: str, workdir: Path,
        stages: Stages) -> None:
    """Land, transform and publish with polars (see the package docstring)."""
    land = workdir / "land"
    land.mkdir(parents=True, exist_ok=True)
    with stages.stage("land"):
        for table, path in sources.items():
            if fmt == "csv":
                frame = pl.read_csv(path, schema=pl.from_arrow(schemas[table].empty_table()).schema)
            else:
                frame = pl.read_parquet(path)
            frame.write_parquet(land / f"{table}.parquet")
            stages.land_rows += frame.height
            del frame
    with stages.stage("transform"):
        lazy = {t: pl.scan_parquet(land / f"{t}.parquet") for t in sources}
        plans = queries.polars_queries(lazy["lineitem"], lazy["orders"], lazy["customer"])
        outputs = {name: plan.collect().to_arrow() for name, plan in plans.items()}
    with stages.stage("publish"):
        stages.out_rows = publish_duckdb(workdir / "warehouse.duckdb", outputs)
