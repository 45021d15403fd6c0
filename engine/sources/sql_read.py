"""Streaming one read of a SQL source: its rows as Arrow batches of the types Delta stores, and
the rows that cannot be (a value unreadable or of another type, a NULL cursor) quarantined."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine.lake import delta_type
from engine.load.quarantine import Quarantine
from engine.load.schema import coerce
from engine.sources.sql_types import Unreadable, to_arrow_each, tolerate_out_of_range

Row = Sequence[Any]


@dataclass
class Read:
    """One streamed read of a SQL source: its rows as batches of the types Delta stores, and
    the rows that cannot be (a value unreadable or of another type, a NULL cursor) quarantined."""

    origin: str  # "table <name>" or "query": the quarantine entries' `file`
    types: dict[str, pa.DataType | None]
    rows: int
    keep: Callable[[Row], bool] | None
    quarantine: Quarantine
    failures: list[int]  # bumped by `Tolerant` for each value it could not read
    cursor: str | None = None  # set when rows with a NULL cursor are read, to quarantine them
    seen: int = 0  # rows read so far: a quarantined row's `line` is its place in the read

    def stream(self, engine: sa.Engine, stmt: sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        """Batches of at most `rows` rows of `stmt`, read through a server-side cursor."""
        try:
            with engine.connect() as conn:
                tolerate_out_of_range(conn.connection.driver_connection, self.failures)
                result = conn.execution_options(stream_results=True, yield_per=self.rows).execute(stmt)
                names = list(result.keys())
                at = names.index(self.cursor) if self.cursor else None
                counted = 0
                for chunk in result.partitions(self.rows):
                    start, self.seen = self.seen, self.seen + len(chunk)
                    rows: Sequence[Row] = chunk
                    numbers: list[int] | None = None  # each row's place in the read, once rows are left out
                    if self.failures[0] != counted or at is not None:  # (rows are checked one by one)
                        kept: list[tuple[int, Row]] = [(start + i + 1, r) for i, r in enumerate(chunk)
                                                       if self._readable(start + i + 1, r, names, at)]
                        numbers, rows = [n for n, _ in kept], [r for _, r in kept]
                        counted = self.failures[0]
                    places = numbers if numbers is not None else range(start + 1, start + len(rows) + 1)
                    if self.keep is not None:
                        kept = [(n, r) for n, r in zip(places, rows) if self.keep(r)]
                        places, rows = [n for n, _ in kept], [r for _, r in kept]
                    if rows:
                        batch = self._batch(names, rows, places)
                        if batch.num_rows:
                            yield batch
        finally:
            engine.dispose()

    def _readable(self, n: int, row: Row, names: list[str], at: int | None) -> bool:
        if at is not None and row[at] is None:
            self._bad(n, names, row, f"cursor column {self.cursor!r} is NULL, so an incremental load cannot "
                                     "place this row; give it a value (it lands on the next run) or drop cursor=")
            return False
        unreadable = next(((name, v) for name, v in zip(names, row) if isinstance(v, Unreadable)), None)
        if unreadable is None:
            return True
        self._bad(n, names, row, f"column {unreadable[0]!r}: {unreadable[1].raw!r} cannot be read as its "
                                 f"column type ({unreadable[1].why})")
        return False

    def _batch(self, names: list[str], rows: Sequence[Row], numbers: Sequence[int]) -> pa.RecordBatch:
        columns = list(zip(*rows))
        arrays, bad = [], {}  # type: list[pa.Array], dict[int, str]
        for name, values in zip(names, columns):
            array, failed = to_arrow_each(values, self.types.get(name), name)
            if self.types.get(name) is None and not pa.types.is_null(array.type):
                self.types[name] = array.type  # inferred once, so later batches agree
            arrays.append(array)
            for i, why in failed.items():
                bad.setdefault(i, why)
        table = pa.Table.from_arrays(arrays, names=names)
        good, unfit = coerce(table, {n: delta_type(t) for n, t in zip(names, table.schema.types)})
        for i, why in {**unfit, **bad}.items():
            self._bad(numbers[i], names, rows[i], why)
        if bad:
            good = good.filter(pa.array([i not in bad for i in range(table.num_rows) if i not in unfit]))
        return good.combine_chunks().to_batches()[0] if good.num_rows else \
            pa.RecordBatch.from_pylist([], schema=good.schema)

    def _bad(self, n: int, names: list[str], row: Row, why: str) -> None:
        raw = json.dumps(dict(zip(names, row)), default=str)
        self.quarantine.row(self.origin, n, raw, why)
