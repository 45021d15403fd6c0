"""Landing one source's extraction: plan the schema, commit the quarantine, then the rows with
their state (see quarantine.py for why in that order)."""
from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pyarrow as pa

from engine.errors import ConcurrentRunError
from engine.graph import TableRef
from engine.lake import Based, Commit, Lake
from engine.load.extraction import Extraction
from engine.load.quarantine import Quarantine

log = logging.getLogger("headwater.load")


@dataclass(frozen=True)
class Landing:
    """What one load did: the landing commit, the entries quarantined, columns dropped."""

    commit: Commit
    quarantined: int = 0
    dropped: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.quarantined:
            parts.append(f"{self.quarantined} quarantined")
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} new column(s): {', '.join(self.dropped)}")
        if self.changes:
            parts.append("; ".join(self.changes))
        return ", ".join(parts)


def land(lake: Lake, table: str, extraction: Extraction, *, run_id: str, origin: str = "",
         based_on: Based | None = None) -> Landing:
    """Land `extraction` into `table`: plan the schema, quarantine first, then the landing commit.

    `based_on` is the version of `table` the extraction's state was read at: every commit of the
    load is then guarded by it, so a load another run made meanwhile fails this one with
    ConcurrentRunError before it commits anything (see `engine.lake.store`)."""
    plan, quarantine, history = extraction.plan, extraction.quarantine, extraction.history
    mode, batches = extraction.mode, extraction.batches
    if history is not None and quarantine is None:  # an SCD2 load quarantines null and repeated keys
        quarantine = Quarantine(TableRef.parse(table).name, run_id, history.loaded_at)
    schema, rewritten = None, 0
    if plan is not None:
        current = None
        # a replace checks its contract against the table it replaces; it evolves from scratch
        if (mode != "replace" or plan.contract != "evolve") and lake.exists(lake.qualify(table)):
            current = pa.schema(lake.table(table).schema().to_arrow())
        schema = plan.resolve(current)
        if plan.rewrite and mode in ("merge", "scd2"):  # widen first, in its own commit that keeps the state
            dataset = lake.dataset(table)  # streamed: the table is never held in memory
            widened = lake.land(table, dataset.to_batches(), run_id=run_id, state=lake.state(table), mode="replace",
                                schema=pa.schema([schema.field(n) for n in dataset.schema.names]),
                                meta={"widened": True}, based_on=based_on)
            if based_on is not None:  # the merge goes on from the widened table
                based_on = Based(widened.version)
        elif plan.rewrite and mode != "replace":  # widen existing columns: old rows rewritten in the same commit
            dataset = lake.dataset(table)
            rewritten = dataset.count_rows()  # not landed by this run: left out of its count
            batches, mode = itertools.chain(dataset.to_batches(), batches), "replace"
    meta: dict = {}
    if quarantine is None:
        commit = lake.land(table, batches, run_id=run_id, state=extraction.state, mode=mode,
                           origin=origin, schema=schema, primary_key=extraction.primary_key, based_on=based_on)
        commit = replace(commit, rows=commit.rows - rewritten)
        return _landed(Landing(commit, 0, tuple(plan.dropped) if plan else ()), extraction)
    qtable = str(TableRef("quarantine", TableRef.parse(table).name))
    before = lake.based(qtable)
    expected = 0 if before.version is None else before.version + 1
    meta["quarantine"] = {"table": qtable, "version_if_any": expected}

    def commit_quarantine() -> None:
        if not quarantine.count:
            return
        # runs while delta-rs pulls the landing stream, so it must not use that thread's runtime
        done: list[int | BaseException] = []
        worker = threading.Thread(target=_write_quarantine,
                                  args=(lake, table, qtable, quarantine, run_id, done, based_on, before))
        worker.start()
        worker.join()
        if isinstance(done[0], BaseException):
            raise done[0]
        if done[0] != expected:
            raise ConcurrentRunError(f"{qtable} moved to version {done[0]} during the run (expected {expected})",
                                     "run one load of a source at a time")

    def settle(rows: pa.Table, reasons: list[str]) -> int:  # an SCD2 load's rows left out, before its commit
        earlier = quarantine.count
        where = extraction.units[0] if len(extraction.units) == 1 else ""
        for row, why in zip(rows.to_pylist(), reasons):
            values = {k: v for k, v in row.items() if not k.startswith("_hw_")}
            quarantine.row(row.get("_hw_source_file") or where, None, json.dumps(values, default=str), why)
        commit_quarantine()
        return earlier

    commit = lake.land(table, batches if history is not None else _then(batches, commit_quarantine),
                       run_id=run_id, state=extraction.state, mode=mode, origin=origin, schema=schema, meta=meta,
                       primary_key=extraction.primary_key, commit_empty=lambda: quarantine.count > 0,
                       based_on=based_on, history=history, settle=settle)
    if rewritten:
        commit = replace(commit, rows=commit.rows - rewritten)
    return _landed(Landing(commit, quarantine.count, tuple(plan.dropped) if plan else (),
                           tuple(plan.changes) if plan else ()), extraction)


def _landed(landing: Landing, extraction: Extraction) -> Landing:
    """`landing`, logged."""
    commit = landing.commit
    what = f"version {commit.version}" if commit.version is not None else "nothing committed"
    described = landing.describe()
    log.info("%s: %s rows landed (%s; %s)%s", commit.table, f"{commit.rows:,}", what, extraction.planned,
             f", {described}" if described else "")
    if landing.quarantined:
        log.warning("%s: %d row(s) or file(s) quarantined (see %s)", commit.table, landing.quarantined,
                    TableRef("quarantine", TableRef.parse(commit.table).name))
    return landing


def _write_quarantine(lake: Lake, table: str, qtable: str, quarantine: Quarantine, run_id: str,
                      done: list[int | BaseException], based_on: Based | None, before: Based) -> None:
    """Commit the quarantined entries to `qtable`; with `based_on` (the load's), only if `table`
    and `qtable` are still where the load read them, so a load another run made meanwhile leaves
    this one committing nothing at all."""
    try:
        if based_on is not None:
            lake.check_unchanged(table, based_on)
        commit = lake.write_append(qtable, quarantine.table(), run_id=run_id, meta={"quarantined": quarantine.count},
                                   based_on=before if based_on is not None else None)
        done.append(commit.version if commit.version is not None else -1)
    except BaseException as exc:  # noqa: BLE001 - handed back to the landing thread, which raises it
        done.append(exc)



def _then(batches: Iterator[pa.RecordBatch], tail: Callable[[], None]) -> Iterator[pa.RecordBatch]:
    yield from batches
    tail()
