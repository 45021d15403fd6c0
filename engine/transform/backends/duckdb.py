"""SQL models on a CPU: DuckDB over the lake's Arrow datasets.

Each input is exposed under the names the SQL uses (`raw.<source>`, `models.<name>` and a
model's bare name) as views over DuckDB's own Parquet reader of its files on local disk (the
Arrow dataset registered where the files cannot be read alone: on an object store, or
partitioned), so DuckDB pushes the query's projections and filters into the scan of the
lake's files: no pandas, and nothing is read that the query does not use. The user's SQL runs
as written, in a fresh in-memory database per model.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from engine.transform.backends.base import checked_output
from engine.transform.backends.polars import file_uris
from engine.transform.models import Context, Model

WIDE_INTEGERS = ("HUGEINT", "UHUGEINT")  # sum() of integers: Arrow decimal(38,0), cast back to int64 when they fit


class DuckDBEngine:
    """Runs SQL models in DuckDB."""

    name = "duckdb"

    def __init__(self, threads: int | None = None) -> None:
        import duckdb  # lazily, like every engine

        self.duckdb = duckdb
        self.threads = threads

    def run(self, model: Model, inputs: Mapping[str, ds.Dataset], ctx: Context | None = None) -> pa.Table:
        """The rows of SQL model `model` over `inputs` (its input name -> the rows to read)."""
        if model.kind != "sql":
            raise TypeError(f"DuckDB runs SQL models; {model.name!r} is a {model.kind} model")
        con = self.duckdb.connect()
        try:
            if self.threads:
                con.execute(f"set threads = {int(self.threads)}")
            con.execute("create schema raw; create schema models")
            for param, dataset in inputs.items():
                ref = model.inputs[param]
                hidden = f"__hw_{ref.zone}__{ref.name}"
                self.scan(con, hidden, dataset)
                con.execute(f'create view {ref.zone}."{ref.name}" as select * from "{hidden}"')
                if ref.zone == "models":  # a bare model name resolves in the default schema
                    con.execute(f'create view main."{ref.name}" as select * from "{hidden}"')
            relation = con.sql(model.sql)
            types = [str(t) for t in relation.types]
            table = _arrow(relation)
        finally:
            con.close()
        return checked_output(model, _narrow(table, types))

    def scan(self, con: Any, name: str, dataset: ds.Dataset) -> None:
        """`name` in `con`: `dataset`'s rows, read by DuckDB's Parquet reader where its files can
        be read alone from local disk (its scan of an Arrow dataset took 4-10x as long on ELT-H's
        SF1 queries), else the Arrow dataset registered (a column no file holds yet included)."""
        uris = file_uris(dataset, local_only=True)
        if uris:
            columns = ", ".join('"' + n.replace('"', '""') + '"' for n in dataset.schema.names)
            files = ", ".join("'" + u.replace("'", "''") + "'" for u in uris)
            try:
                con.execute(f'create view "{name}" as select {columns} from read_parquet([{files}], '
                            "union_by_name = true, hive_partitioning = false)")
                return
            except self.duckdb.Error:
                pass
        con.register(name, dataset)


def _arrow(relation: Any) -> pa.Table:
    to_table = getattr(relation, "to_arrow_table", None)  # DuckDB >= 1.4; earlier: fetch_arrow_table
    return to_table() if to_table is not None else relation.fetch_arrow_table()


def _narrow(table: pa.Table, types: list[str]) -> pa.Table:
    """HUGEINT columns (DuckDB's sum of integers) as int64 where every value fits, as polars and
    pandas give them; decimal(38,0) otherwise."""
    for i, kind in enumerate(types):
        if kind in WIDE_INTEGERS:
            try:
                table = table.set_column(i, table.field(i).name, pc.cast(table.column(i), pa.int64()))
            except pa.ArrowInvalid:
                pass  # a value beyond int64: keep the exact decimal
    return table
