"""ELT-H as a Headwater pipeline, written as a user would: three file sources, three models,
run by `engine.Runner` into a fresh lake and a DuckDB warehouse file. Stage seconds are the
run's own `Step` seconds; the peak RSS after the last load is taken from a reporter.

The three models come in three kinds, one pipeline each (`MODELS`): pandas-API functions (the
frame queries the hand pandas script runs too), SQL models (the DuckDB peer's SQL, naming
`raw.<table>`) and polars models (the polars peer's lazy queries). Loading and publishing are
the same for all three."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.elt_h import queries
from bench.elt_h.stages import Stages, peak_rss_mb
from engine import Config, HeadwaterError, Model, Pipeline, Runner, Step, model, sources, sql_model

Q1_COLUMNS = ["l_shipdate", "l_returnflag", "l_linestatus", "l_quantity", "l_extendedprice", "l_discount", "l_tax"]
Q3_COLUMNS = {"customer": ["c_custkey", "c_mktsegment"],
              "orders": ["o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"],
              "lineitem": ["l_orderkey", "l_shipdate", "l_extendedprice", "l_discount"]}
WIDE_COLUMNS = {"customer": list(queries.CUSTOMER), "orders": list(queries.ORDERS),
                "lineitem": list(queries.LINEITEM)}  # every source column, none of the load columns


@model(inputs={"lineitem": "raw.lineitem"}, columns={"lineitem": Q1_COLUMNS})
def q1(lineitem: Any) -> Any:
    """TPC-H Q1."""
    return queries.q1(lineitem)


@model(inputs={"customer": "raw.customer", "orders": "raw.orders", "lineitem": "raw.lineitem"},
       columns=Q3_COLUMNS)
def q3(customer: Any, orders: Any, lineitem: Any) -> Any:
    """TPC-H Q3."""
    return queries.q3(customer, orders, lineitem)


@model(inputs={"customer": "raw.customer", "orders": "raw.orders", "lineitem": "raw.lineitem"},
       columns=WIDE_COLUMNS)
def wide(customer: Any, orders: Any, lineitem: Any) -> Any:
    """The wide filtered join, every column."""
    return queries.wide(customer, orders, lineitem)


# -- the same models in SQL and in polars -----------------------------------------------------
SQL_MODELS = [sql_model(name, text) for name, text in queries.sql("raw.lineitem", "raw.orders", "raw.customer").items()]


def tpch(frames: dict[str, Any]) -> list[Any]:
    """customer, orders and lineitem LazyFrames cut to their TPC-H columns: every raw table has
    the same three load columns, which a polars join would refuse to repeat."""
    return [frames[t].select(WIDE_COLUMNS[t]) for t in ("customer", "orders", "lineitem")]


@model(name="q1", inputs={"lineitem": "raw.lineitem"}, frame="polars")
def q1_polars(lineitem: Any) -> Any:
    """TPC-H Q1 in polars."""
    return queries.polars_q1(lineitem)


@model(name="q3", inputs={"customer": "raw.customer", "orders": "raw.orders", "lineitem": "raw.lineitem"},
       frame="polars")
def q3_polars(customer: Any, orders: Any, lineitem: Any) -> Any:
    """TPC-H Q3 in polars."""
    return queries.polars_q3(*tpch({"customer": customer, "orders": orders, "lineitem": lineitem}))


@model(name="wide", inputs={"customer": "raw.customer", "orders": "raw.orders", "lineitem": "raw.lineitem"},
       frame="polars")
def wide_polars(customer: Any, orders: Any, lineitem: Any) -> Any:
    """The wide filtered join in polars."""
    return queries.polars_wide(*tpch({"customer": customer, "orders": orders, "lineitem": lineitem}))


MODELS: dict[str, list[Model]] = {"pandas": [q1, q3, wide], "sql": SQL_MODELS,
                                  "polars": [q1_polars, q3_polars, wide_polars]}


def pipeline(paths: dict[str, Path], schemas: dict[str, pa.Schema], fmt: str, kind: str = "pandas") -> Pipeline:
    """The ELT-H pipeline over the source files (CSV declares the normalised types), with the
    models of `kind` (pandas, sql or polars)."""
    srcs = [sources.files(table, path, format=fmt, schema=schemas[table] if fmt == "csv" else None)
            for table, path in paths.items()]
    return Pipeline("elt_h", sources=srcs, models=MODELS[kind])


class LandPeak:
    """A runner reporter that notes the process's peak RSS as each load step finishes."""

    def __init__(self) -> None:
        self.peak_mb = 0.0

    def start(self, kind: str, name: str) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self, step: Step) -> None:
        if step.kind == "load":
            self.peak_mb = peak_rss_mb()


def run(sources_: dict[str, Path], schemas: dict[str, pa.Schema], fmt: str, workdir: Path,
        stages: Stages, backend: str = "pandas", kind: str = "pandas") -> None:
    """Run the pipeline of `kind` models once into `workdir/lake` and `workdir/warehouse.duckdb`
    on `backend` (SQL and polars models run on the engine the backend picks for them)."""
    config = Config.load(workdir, lake=str(workdir / "lake"), backend=backend,
                         warehouse=f"duckdb:///{workdir / 'warehouse.duckdb'}")
    reporter = LandPeak()
    summary = Runner(pipeline(sources_, schemas, fmt, kind), config, reporter).run()
    if not summary.ok:
        raise HeadwaterError(f"the ELT-H pipeline failed: {summary.error}", "see the step's error above")
    kinds = {"load": "land", "model": "transform", "publish": "publish"}
    for step in summary.steps:
        stages.seconds[kinds[step.kind]] += step.seconds
    stages.land_rows = sum(s.rows for s in summary.steps if s.kind == "load")
    stages.out_rows = sum(s.rows for s in summary.steps if s.kind == "publish")
    stages.land_peak_rss_mb = reporter.peak_mb
