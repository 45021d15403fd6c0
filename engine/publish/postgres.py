"""PostgreSQL through psycopg 3: rows go in with `COPY … FROM STDIN (FORMAT csv)`, written by
Arrow's CSV writer a batch at a time; nested values are stored as JSONB. A replace's DROP+RENAME
waits for readers of the old table in short `lock_timeout` tries, so it never stalls the readers
queued behind it. Everything else (merge, bookkeeping, queries) is the generic path's, in one
transaction."""
from __future__ import annotations

import io
import time

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects.postgresql import JSONB

from engine.errors import WarehouseError
from engine.publish.base import driver_connection, log
from engine.publish.comments import Comments, comment_on
from engine.publish.generic import GenericWarehouse
from engine.publish.types import Rows, hex_text, is_binary, is_nested, json_text, sql_columns

_CSV = pa_csv.WriteOptions(include_header=False)
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a statement that gave up waiting at lock_timeout


class PostgresWarehouse(GenericWarehouse):
    """A PostgreSQL database on a `postgresql+psycopg://` URL, loaded with COPY."""

    driver_errors = (psycopg.Error,)
    transient_errors = (psycopg.OperationalError,)
    copy_rows: int = 100_000  # rows per CSV chunk handed to COPY: bounds the text held at once
    # The swap's DROP needs an exclusive lock on the old table: while it waits, every new reader
    # of the table queues behind it. So it waits at most `swap_lock_timeout_ms` per try, lets the
    # queue go, backs off (`swap_backoff_s`, doubling up to `swap_backoff_max_s`) and tries again,
    # for up to `swap_wait_s` in all.
    swap_lock_timeout_ms: int = 200
    swap_backoff_s: float = 0.05
    swap_backoff_max_s: float = 1.0
    swap_wait_s: float = 300.0

    def _lock(self, conn: sa.Connection, name: str) -> None:
        # a transaction-scoped advisory lock per table name: a second publish of the table waits
        # for the first to commit, then finds what it published
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"headwater:{name}"})

    def _comment(self, conn: sa.Connection, name: str, about: Comments) -> None:
        comment_on(conn, self.engine.dialect.identifier_preparer.quote, name, about)

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

    def _rename_over(self, conn: sa.Connection, staging: str, name: str) -> None:
        """DROP the old table and RENAME the staging one in short tries (each inside a savepoint,
        under a `lock_timeout`) until no reader holds it."""
        started = time.monotonic()
        delay, tries = self.swap_backoff_s, 0
        while True:
            tries += 1
            conn.exec_driver_sql("SAVEPOINT hw_swap")
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(self.swap_lock_timeout_ms)}")
            try:
                super()._rename_over(conn, staging, name)
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                conn.exec_driver_sql("ROLLBACK TO SAVEPOINT hw_swap")  # the staging table stays
                waited = time.monotonic() - started
                if waited >= self.swap_wait_s:
                    raise WarehouseError(
                        f"cannot replace {name!r} on {self.dialect} warehouse {self.where}: another session "
                        f"holds {name!r} (waited {waited:.1f} s for it, {tries} tries)",
                        "the previous table is unchanged; end the long transaction that reads it "
                        "(see pg_stat_activity) or run again later", retryable=True) from exc
                if tries == 1:
                    log.info("%s: another session holds the table; the swap waits for it in %d ms tries",
                             name, self.swap_lock_timeout_ms)
                time.sleep(max(0.0, min(delay, self.swap_wait_s - waited)))
                delay = min(delay * 2, self.swap_backoff_max_s)
                continue
            conn.exec_driver_sql("RELEASE SAVEPOINT hw_swap")
            conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")  # the session's own, for the rest
            if tries > 1:
                log.info("%s: swapped after %d tries, %.2f s", name, tries, time.monotonic() - started)
            return


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
