"""ELT-H as a hand-written pandas script: read with pandas, write Parquet, compute the shared
frame queries, write the results to a DuckDB file."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from bench.elt_h import queries
from bench.elt_h.stages import Stages, publish_duckdb


def pandas_dtypes(schema: pa.Schema) -> dict[str, str]:
    """pandas dtypes for a CSV with `schema` (dates are left to the reader: Arrow date32)."""
    names = {pa.float64(): "float64", pa.int64(): "int64", pa.int32(): "int32", pa.string(): "str"}
    return {f.name: names[f.type] for f in schema if f.type in names}


def run(sources: dict[str, Path], schemas: dict[str, pa.Schema], fmt: str, workdir: Path,
        stages: Stages) -> None:
    """Land, transform and publish with pandas (see the package docstring)."""
    land = workdir / "land"
    land.mkdir(parents=True, exist_ok=True)
    with stages.stage("land"):
        for table, path in sources.items():
            if fmt == "csv":
                frame = pd.read_csv(path, engine="pyarrow", dtype=pandas_dtypes(schemas[table]))
            else:
                frame = pd.read_parquet(path)
            frame.to_parquet(land / f"{table}.parquet", index=False)
            stages.land_rows += len(frame)
            del frame
    with stages.stage("transform"):
        f = {t: pd.read_parquet(land / f"{t}.parquet") for t in sources}
        outputs = {"q1": queries.q1(f["lineitem"]),
                   "q3": queries.q3(f["customer"], f["orders"], f["lineitem"]),
                   "wide": queries.wide(f["customer"], f["orders"], f["lineitem"])}
        del f
    with stages.stage("publish"):
        stages.out_rows = publish_duckdb(workdir / "warehouse.duckdb", outputs)
