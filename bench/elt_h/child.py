"""One engine's ELT-H run in this (fresh) process; prints its measurements as one JSON line.

    python -m bench.elt_h.child ENGINE FORMAT SCALE WORKDIR

ENGINE is `headwater` (pandas-API models on the pandas backend), `headwater:<backend>`,
`headwater-sql` (SQL models: DuckDB on a CPU), `headwater-polars` (polars models: polars'
streaming engine on a CPU), either of those two with `:<backend>` (cudf: cudf-polars), `pandas`,
`duckdb` or `polars`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.elt_h import data
from bench.elt_h.stages import Stages
from engine.errors import HeadwaterError

HEADWATER = {"headwater": "pandas", "headwater-sql": "sql", "headwater-polars": "polars"}  # engine -> model kind
ENGINES = (*HEADWATER, "pandas", "duckdb", "polars")


def check_engine(engine: str) -> None:
    """Raise HeadwaterError unless `engine` names a known engine."""
    base, _, backend = engine.partition(":")
    if base not in ENGINES or (backend and base not in HEADWATER):
        raise HeadwaterError(f"unknown engine {engine!r}",
                             f"use {', '.join(ENGINES)} (headwater:cudf for Headwater on cuDF)")


def run(engine: str, fmt: str, scale: float, workdir: Path) -> dict:
    """Run `engine` on the `fmt` files of `scale` into `workdir`; its stage measurements."""
    check_engine(engine)
    base, _, backend = engine.partition(":")
    sources, schemas = data.paths(scale, fmt), data.schemas(scale)
    stages = Stages()
    workdir.mkdir(parents=True, exist_ok=True)
    if base in HEADWATER:
        from bench.elt_h import headwater_job

        headwater_job.run(sources, schemas, fmt, workdir, stages, backend or "pandas", HEADWATER[base])
    else:
        from importlib import import_module

        module = {"pandas": "hand_pandas", "duckdb": "duckdb_sql", "polars": "polars_job"}[base]
        import_module(f"bench.elt_h.peers.{module}").run(sources, schemas, fmt, workdir, stages)
    return stages.result()


if __name__ == "__main__":
    engine_, fmt_, scale_, workdir_ = sys.argv[1:5]
    print(json.dumps(run(engine_, fmt_, float(scale_), Path(workdir_))))
