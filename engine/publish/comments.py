"""Warehouse comments: a model's description and column descriptions as `COMMENT ON TABLE` /
`COMMENT ON COLUMN`, where the dialect has them (DuckDB and PostgreSQL override
`Warehouse._comment` with `comment_on`; other dialects keep none).

They come with the rows: the lake table's description rides in the rows' Arrow schema metadata
(`description`, engine/publish/changes.py) and each column's in its field metadata (`comment`,
as the Delta schema has it, engine/lake/describe.py). Rows without any description set no
comments; rows with some set every comment of the table, so one removed from the model is
removed from the warehouse too.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import sqlalchemy as sa

from engine.lake.describe import DESCRIPTION, comments


@dataclass(frozen=True)
class Comments:
    """A warehouse table's comment and its columns' (every column of `names`, None for none)."""

    table: str | None
    columns: dict[str, str | None] = field(default_factory=dict)


def from_schema(schema: pa.Schema) -> Comments | None:
    """The comments that rows of `schema` carry; None when they carry none."""
    table = (schema.metadata or {}).get(DESCRIPTION.encode(), b"").decode() or None
    described = comments(schema)
    if table is None and not described:
        return None
    return Comments(table, {name: described.get(name) for name in schema.names})


def literal(text: str | None) -> str:
    """`text` as a SQL string literal (NULL for None)."""
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


def comment_on(conn: sa.Connection, quote: Callable[[str], str], name: str, about: Comments) -> None:
    """Set the comments of table `name` and of its columns, in the caller's transaction."""
    conn.exec_driver_sql(f"COMMENT ON TABLE {quote(name)} IS {literal(about.table)}")
    for column, text in about.columns.items():
        conn.exec_driver_sql(f"COMMENT ON COLUMN {quote(name)}.{quote(column)} IS {literal(text)}")
