"""Descriptions of a lake table: the Delta table's description and a `comment` on each column.

A model's description and column descriptions travel with its output: a commit that creates or
replaces the table carries them (the column comments in the schema of that same commit, the
description in the metadata of a new table); whatever still differs afterwards (a description
changed on a table that is appended to or merged into, or a new description of an existing
table, which delta-rs can only set on its own) is set by small metadata-only commits marked
`headwater.described`, which add and remove no files, so a reader of "what changed since
version v" sees no rows in them. Readers get the comments as Arrow field metadata (`comment`),
which is how the warehouse learns them (engine/publish/comments.py).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable

from engine.lake.guard import META_PREFIX

COMMENT = "comment"  # the column metadata key Spark, Databricks and Delta readers show
DESCRIPTION = "description"  # the Arrow schema metadata key a table's description travels under
DESCRIBED = META_PREFIX + "described"  # marks the metadata-only commits made here
log = logging.getLogger("headwater.lake")


@dataclass(frozen=True)
class Description:
    """What a table holds (`table`) and what each described column holds (`columns`)."""

    table: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, table: DeltaTable) -> Description:
        """The description a Delta table has now."""
        schema = pa.schema(table.schema().to_arrow())
        return cls(table.metadata().description or "", comments(schema))

    @property
    def empty(self) -> bool:
        return not self.table and not any(self.columns.values())


def comments(schema: pa.Schema) -> dict[str, str]:
    """{column: comment} of the columns of `schema` that carry one."""
    out = {}
    for f in schema:
        text = (f.metadata or {}).get(COMMENT.encode(), b"").decode()
        if text:
            out[f.name] = text
    return out


def with_comments(schema: pa.Schema, described: Description) -> pa.Schema:
    """`schema` whose columns carry exactly the comments of `described` (a column it does not
    describe carries none); a described column that is not in `schema` is logged and left out."""
    stray = sorted(set(described.columns) - set(schema.names))
    if stray:
        log.warning("column descriptions of %s name no column of the output (its columns are %s)",
                    stray, ", ".join(schema.names))
    fields = []
    for f in schema:
        meta = {k: v for k, v in (f.metadata or {}).items() if k != COMMENT.encode()}
        if described.columns.get(f.name):
            meta[COMMENT.encode()] = described.columns[f.name].encode()
        fields.append(f.with_metadata(meta))
    return pa.schema(fields, metadata=schema.metadata)


def described_table(table: pa.Table, described: Description | None) -> pa.Table:
    """`table` whose schema carries `described`'s column comments (unchanged when None)."""
    if described is None:
        return table
    return pa.Table.from_arrays(table.columns, schema=with_comments(table.schema, described))


def apply(uri: str, storage_options: dict[str, str] | None, described: Description) -> int:
    """Make the table at `uri` carry `described`, by metadata-only commits where it differs
    (none when it already does); the number of commits made."""
    table = DeltaTable(uri, storage_options=storage_options)
    now = Description.of(table)
    props = CommitProperties(custom_metadata={DESCRIBED: "true"})
    made = 0
    if now.table != described.table:
        table.alter.set_table_description(described.table, commit_properties=props)
        made += 1
    names = pa.schema(table.schema().to_arrow()).names
    for column in names:
        want = described.columns.get(column, "")
        if now.columns.get(column, "") != want:
            table.alter.set_column_metadata(column, {COMMENT: want}, commit_properties=props)
            made += 1
    return made


def settle(uri: str, storage_options: dict[str, str] | None, described: Description | None) -> None:
    """`apply` after a commit of rows (nothing when `described` is None); a failure is logged,
    not raised: the rows are committed, and the table's next build tries again."""
    if described is None:
        return
    try:
        apply(uri, storage_options, described)
    except Exception as exc:  # noqa: BLE001 - descriptions must not fail a committed build
        log.warning("%s: could not set its description and column comments: %s", uri, exc)
