"""ELT-H in DuckDB SQL: COPY the source files to Parquet, run the SQL queries over the landed
files, write the results to a DuckDB file."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from bench.elt_h import queries
from bench.elt_h.stages import Stages, publish_duckdb

DUCK_TYPES = {pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR",
              pa.date32(): "DATE"}


def literal(path: Path) -> str:
    """`path` as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def reader(path: Path, schema: pa.Schema, fmt: str) -> str:
    """The DuckDB table function reading one source file (CSV with the normalised types)."""
    if fmt == "parquet":
        return f"read_parquet({literal(path)})"
    columns = ", ".join(f"'{f.name}': '{DUCK_TYPES[f.type]}'" for f in schema)
    return f"read_csv({literal(path)}, header = true, columns = {{{columns}}})"


def run(sources: dict[str, Path], schemas: dict[str, pa.Schema], fmt: str, workdir: Path,
        stages: Stages) -> None:
    """Land, transform and publish with DuckDB (see the package docstring)."""
    land = workdir / "land"
    land.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        with stages.stage("land"):
            for table, path in sources.items():
                target = land / f"{table}.parquet"
                con.execute(f"COPY (SELECT * FROM {reader(path, schemas[table], fmt)}) "
                            f"TO {literal(target)} (FORMAT parquet)").fetchall()
                count = f"SELECT count(*) FROM read_parquet({literal(target)})"
                stages.land_rows += con.execute(count).fetchall()[0][0]
        with stages.stage("transform"):
            for table in sources:
                landed = literal(land / f"{table}.parquet")
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({landed})").fetchall()
            outputs = {name: con.sql(sql).to_arrow_table() for name, sql in queries.SQL.items()}
    finally:
        con.close()
    with stages.stage("publish"):
        stages.out_rows = publish_duckdb(workdir / "warehouse.duckdb", outputs)
