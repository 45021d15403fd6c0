"""Four readers of a Delta table and one filter written in each one's language, for the
reader-agreement tests (tests/lake/test_readers.py): deltalake's own Arrow dataset, DataFusion
(deltalake's QueryBuilder), polars' `scan_delta`, and DuckDB the way `headwater query` runs it
(engine/publish/duckdb.py over `Lake.dataset`). The expected rows are filtered here in Python,
from the rows the test wrote, never by a reader."""
from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, QueryBuilder

from engine.lake import Lake
from engine.publish.duckdb import DuckDBWarehouse

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
READERS = ("deltalake", "datafusion", "polars", "duckdb")


@dataclass(frozen=True)
class Filter:
    """`column op value` (or `column IS NULL` when op is "is null") on a column of Arrow `type`."""

    column: str
    op: str
    value: Any
    type: pa.DataType

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value!r}"

    def python(self, row: dict[str, Any]) -> bool:
        """SQL's answer for one row: a comparison with a null is not true."""
        got = row.get(self.column)
        if self.op == "is null":
            return got is None
        if got is None:
            return False
        if isinstance(got, float) and math.isnan(got):  # IEEE: NaN is unequal to all, unordered
            return self.op == "!="
        return OPS[self.op](got, self.value)

    def arrow(self) -> ds.Expression:
        field = ds.field(self.column)
        if self.op == "is null":
            return field.is_null()
        literal = pa.scalar(self.value, self.type)
        return {"=": field == literal, "!=": field != literal, "<": field < literal, "<=": field <= literal,
                ">": field > literal, ">=": field >= literal}[self.op]

    def polars(self) -> Any:
        import polars as pl

        col = pl.col(self.column)
        if self.op == "is null":
            return col.is_null()
        literal = pl.lit(self.value, dtype=pl.from_arrow(pa.array([], self.type)).dtype)
        return {"=": col == literal, "!=": col != literal, "<": col < literal, "<=": col <= literal,
                ">": col > literal, ">=": col >= literal}[self.op]

    def sql(self, dialect: str) -> str:
        """The filter as SQL for DuckDB or DataFusion."""
        if self.op == "is null":
            return f'"{self.column}" IS NULL'
        return f'"{self.column}" {"<>" if self.op == "!=" else self.op} {self._literal(dialect)}'

    def _literal(self, dialect: str) -> str:
        v, t = self.value, self.type
        if pa.types.is_boolean(t):
            return "TRUE" if v else "FALSE"
        if pa.types.is_string(t):
            return "'" + v.replace("'", "''") + "'"
        if pa.types.is_binary(t):
            return ("'" + "".join(f"\\x{b:02x}" for b in v) + "'::BLOB" if dialect == "duckdb"
                    else f"X'{v.hex()}'")
        if pa.types.is_date32(t):
            return f"DATE '{v.isoformat()}'"
        if pa.types.is_timestamp(t):
            if t.tz is None:
                return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
            text = v.astimezone(dt.timezone.utc).isoformat(sep=" ")
            return (f"TIMESTAMPTZ '{text}'" if dialect == "duckdb"
                    else f"arrow_cast('{v.astimezone(dt.timezone.utc).isoformat()}', 'Timestamp(µs, \"UTC\")')")
        if pa.types.is_decimal(t):
            return f"CAST('{v}' AS DECIMAL({t.precision}, {t.scale}))"
        if pa.types.is_floating(t):
            return f"CAST({v!r} AS DOUBLE)"
        if pa.types.is_integer(t):
            return f"CAST({v} AS {'INTEGER' if t.bit_width <= 32 else 'BIGINT'})"
        raise TypeError(f"no SQL literal for {t}")


def read(reader: str, lake: Lake, name: str, where: Filter | None, columns: list[str]) -> list[tuple]:
    """The rows of lake table `name` that `where` keeps, as `reader` returns them: `columns`
    only, as tuples (see `normal`), in the order of the first column."""
    uri, options = lake.uri(name), lake.storage_options
    if reader == "deltalake":
        dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
        table = dataset.to_table(columns=columns, filter=where.arrow() if where else None)
    elif reader == "datafusion":
        select = ", ".join(f'"{c}"' for c in columns)
        sql = f"SELECT {select} FROM t" + (f" WHERE {where.sql('datafusion')}" if where else "")
        builder = QueryBuilder().register("t", DeltaTable(uri, storage_options=options))
        table = pa.table(builder.execute(sql).read_all())
    elif reader == "polars":
        import polars as pl

        frame = pl.scan_delta(uri, storage_options=options)
        if where is not None:
            frame = frame.filter(where.polars())
        table = frame.select(columns).collect().to_arrow()
    elif reader == "duckdb":
        zone, _, short = name.partition(".")
        select = ", ".join(f'"{c}"' for c in columns)
        sql = f'SELECT {select} FROM "{zone}"."{short}"' + (f" WHERE {where.sql('duckdb')}" if where else "")
        table = DuckDBWarehouse("duckdb:///:memory:").query(sql, lake={name: lake.dataset(name)})
    else:
        raise ValueError(reader)
    return normal(table.to_pylist(), columns)


def expected(rows: list[dict[str, Any]], where: Filter | None, columns: list[str]) -> list[tuple]:
    """What every reader must return: `rows` (as the test wrote them) that `where` keeps."""
    return normal([r for r in rows if where is None or where.python(r)], columns)


def normal(rows: list[dict[str, Any]], columns: list[str]) -> list[tuple]:
    """Rows as tuples of `columns` in the order of the first one, with values that compare
    alike whoever read them (NaN as a marker, Decimals by value, instants in UTC)."""
    def value(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return "NaN"
        if isinstance(v, Decimal):
            return v.normalize()
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            return v.astimezone(dt.timezone.utc)
        return v
    return sorted((tuple(value(row.get(c)) for c in columns) for row in rows), key=lambda r: r[0])
