"""PostgreSQL through psycopg 3: rows go in with `COPY … FROM STDIN (FORMAT csv)`, written by
Arrow's CSV writer a batch at a time; nested values are stored as JSONB. Everything else (swap,
merge, bookkeeping, queries) is the generic path's, in one transaction."""
from __future__ import annotations

import io

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects.postgresql import JSONB

from engine.publish.base import driver_connection
from engine.publish.generic import GenericWarehouse
from engine.publish.types import Rows, hex_text, is_binary, is_nested, json_text, sql_columns

_CSV = pa_csv.WriteOptions(include_header=False)


class PostgresWarehouse(GenericWarehouse):
    """A PostgreSQL database on a `postgresql+psycopg://` URL, loaded with COPY."""

    driver_errors = (psycopg.Error,)
    transient_errors = (psycopg.OperationalError,)
    copy_rows: int = 100_000  # rows per CSV chunk handed to COPY: bounds the text held at once

    def _load(self, conn: sa.Connection, target: str, rows: Rows, *, create: bool) -> None:
        if create:
            sa.Table(target, sa.MetaData(), *sql_columns(rows.schema, nested=JSONB())).create(conn)
        quote = self.engine.dialect.identifier_preparer.quote
        columns = ", ".join(quote(c) for c in rows.schema.names)
        cursor = driver_connection(conn).cursor()  # psycopg, in the same transaction
        cursor.execute("SET LOCAL TimeZone = 'UTC'")  # tz-aware values go in as UTC wall times
        # a queued writer sends on a worker thread, so the next batch is written while this one goes
        with cursor.copy(f"COPY {quote(target)} ({columns}) FROM STDIN (FORMAT csv)",
                         writer=QueuedLibpqWriter(cursor)) as copy:
            for batch in rows.batches(self.copy_rows):
                out = io.BytesIO()
                pa_csv.write_csv(csv_ready(batch), out, _CSV)
                copy.write(out.getbuffer())


def csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with the columns CSV can't carry as PostgreSQL reads them turned into text:
    bytes as bytea hex, lists/structs/maps as JSON; tz-aware timestamps as UTC wall times
    (Arrow writes those twenty times faster than zoned ones; the session's zone is UTC)."""
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            naive = pa.timestamp(field.type.unit)
            batch = batch.set_column(i, field.with_type(naive), batch.column(i).cast(naive))
        convert = hex_text if is_binary(field.type) else json_text if is_nested(field.type) else None
        if convert is not None:
            batch = batch.set_column(i, field.with_type(pa.string()), convert(batch.column(i)))
    return batch
