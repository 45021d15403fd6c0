"""File sources: CSV, JSON lines and Parquet, local or any fsspec URL, streamed in bounded batches.

Each run lands only files not landed before; the list of landed files is the source's state.
Listing, opening remote files and streaming Parquet by row group live in `remote.py`; tolerant
parsing (bad rows to quarantine) in `parse.py`; the schema plan and contracts in `engine/load/schema.py`.
A path that is not a regular file (a named pipe, a socket, a device, a link to nothing) is
never opened: it is one whole-file quarantine entry, like a file whose columns cannot land
(see `SchemaPlan.refused`).
`write="append"` (the default) appends their rows; `write="merge"` upserts them on
`primary_key` (the last row of a key wins: later file, later row); `write="replace"` reads every
file again whenever the set of files changed, and replaces the raw table with them;
`write="scd2"` keeps every version of each key (engine/lake/scd2.py): the rows of a run's new
files, taken together, are the source as it is now (a full extract, versions stamped with the
load's time; two exports found by one run are one extract, the later file's row of a key landing),
so a key they lack is closed unless `hard_deletes="ignore"` (for files that carry only changed rows).

A relative local path starts at the pipeline file's folder (`base_dir`). A pattern that matches
nothing is an error naming it while the source has landed nothing; once it has, a source whose
patterns all match nothing warns and fails (a moved folder, an edited glob), unless
`allow_empty=True`: then the run lands nothing and the raw table and its state stay as they are.
"""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.errors import HeadwaterError, SourceError
from engine.lake import WriteMode
from engine.lake.history import HardDeletes, History
from engine.lake.storage import protocol, storage_errors
from engine.load.extraction import Extraction
from engine.load.quarantine import Quarantine
from engine.load.schema import LOAD_ORIGIN, SchemaPlan, parse_schema
from engine.sources.base import (
    DEFAULT_BATCH_ROWS,
    LOAD_SCHEMA,
    check_history,
    check_source_name,
    check_write,
    key_columns,
    resolve_local,
    where_relative,
    with_load_columns,
)
from engine.sources.parse import (
    READ_ERRORS,
    FileUnreadable,
    TextReader,
    read_parquet,
)
from engine.sources.remote import iter_parquet, match_each, open_file, select
from engine.sources.sample import sample_schema

log = logging.getLogger("headwater.sources")

FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


def infer_format(path: str) -> str:
    """The format named by a path's extension (compression suffixes ignored)."""
    suffixes = [s for s in Path(path.split("?")[0]).suffixes if s not in (".gz", ".bz2", ".zst", ".xz")]
    fmt = SUFFIXES.get(suffixes[-1].lower()) if suffixes else None
    if fmt is None:
        raise SourceError(f"cannot tell the format of {path!r} from its name",
                          f"pass format= one of {', '.join(FORMATS)}")
    return fmt


@dataclass
class FileSource:
    """Files matching `path` (a glob, a file, a folder or a URL; or a list of them), landed once each."""

    name: str
    path: str | list[str]
    format: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = DEFAULT_BATCH_ROWS
    csv_delimiter: str = ","
    columns: list[str] | None = None  # only these columns (Parquet reads no others)
    write: WriteMode = "append"
    primary_key: str | list[str] | None = None
    schema: Any = None  # pyarrow schema or {column: type}: declared types (engine/load/schema.py)
    contract: str = "evolve"  # evolve | freeze | discard_columns
    allow_empty: bool = False  # matching no file is no error: the run lands nothing
    base_dir: Path | None = None  # where relative local paths start (the pipeline file's folder)
    track: list[str] | None = None  # write="scd2": the columns whose change makes a version (None: all)
    hard_deletes: HardDeletes | None = None  # write="scd2": None is "invalidate"

    def __post_init__(self) -> None:
        check_source_name(self.name)
        if self.format is not None and self.format not in FORMATS:
            raise SourceError(f"source {self.name!r}: unknown format {self.format!r}",
                              f"use one of {', '.join(FORMATS)}")
        check_write(self.name, self.write, self.primary_key)
        self.hard_deletes = check_history(self.name, self.write, cursor=None, track=self.track,
                                          hard_deletes=self.hard_deletes)
        SchemaPlan(self.name, [], self.contract)  # checks the contract name

    @property
    def patterns(self) -> dict[str, str]:
        """Each path as declared, and where it points: a relative local path made absolute
        against `base_dir` (URLs as they are)."""
        declared = [self.path] if isinstance(self.path, str) else self.path
        return {p: p if "://" in p else resolve_local(p, self.base_dir) for p in declared}

    def list_files(self) -> list[str]:
        """Every file the path matches now, as sorted absolute paths or URLs."""
        return sorted({f for found in self._matches().values() for f in found})

    def _matches(self) -> dict[str, list[str]]:
        """The files each declared pattern matches now."""
        patterns = self.patterns
        found = match_each(patterns.values(), self.storage_options, f"source {self.name!r}")
        return {given: found[resolved] for given, resolved in patterns.items()}

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        landed = set(state.get("files", []))
        matches = self._matches()
        current = sorted({f for found in matches.values() for f in found})
        empty = self._nothing_matched(matches, landed, state)
        if empty is not None:
            return empty
        new = [f for f in current if f not in landed]
        mode, key = self.write, key_columns(self.primary_key)
        if mode == "replace":
            if set(current) == landed:
                return Extraction(iter(()), state, f"no new files ({len(landed)} landed)")
            read, new_state = current, {"files": current}
            planned = f"all {len(current)} file(s), {len(new)} new (write='replace')"
        else:
            read, new_state = new, {"files": sorted(landed | set(new))}
            planned = f"{len(new)} new file(s) of {len(current)}"
            if not new:  # nothing to read (for an SCD2 source, not an empty extract that closes every key)
                return Extraction(iter(()), state, planned)
        plan, quarantine = self.plan(read), Quarantine(self.name, run_id, loaded_at)
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at, source_file=f)
                   for f in read for b in self.read_file(f, quarantine, plan))
        history = History(key, loaded_at, self.track, None, self.hard_deletes or "invalidate") \
            if mode == "scd2" else None
        return Extraction(batches, new_state, planned, read, mode, key, history, plan=plan, quarantine=quarantine)

    def _nothing_matched(self, matches: dict[str, list[str]], landed: set[str],
                         state: dict[str, Any]) -> Extraction | None:
        """What to do when a pattern matches nothing: raise while the source has landed nothing,
        or when all of its patterns match nothing now (unless `allow_empty`, which lands nothing
        and keeps the state). None: go on."""
        empty = [given for given, found in matches.items() if not found]
        if not empty:
            return None
        names = " and ".join(self._describe(given) for given in empty)
        match = "match" if len(empty) > 1 else "matches"
        nothing = len(empty) == len(matches)  # no pattern matches a file
        if self.allow_empty:
            if not nothing:
                return None
            log.info("source %r: %s %s no file; nothing to land (allow_empty=True)", self.name, names, match)
            return Extraction(iter(()), state, f"no file matches {names} (allow_empty=True)")
        if not landed:
            local = [given for given in empty if "://" not in given]
            where = f"check the path (a relative one starts at {where_relative(self.base_dir)})" if local \
                else "check the URL"
            raise SourceError(f"source {self.name!r}: {names} {match} no file",
                              f"{where}, or pass allow_empty=True to a source that may be empty")
        if not nothing:
            log.warning("source %r: %s %s no file now (its other paths do)", self.name, names, match)
            return None
        log.warning("source %r: %s matched %d file(s) before and %s none now", self.name, names,
                    len(landed), match)
        raise SourceError(f"source {self.name!r}: {names} matched {len(landed):,} file(s) before and "
                          f"{match} none now",
                          "check that the files are still there and the path is unchanged, or pass "
                          "allow_empty=True to land nothing and go on")

    def _describe(self, given: str) -> str:
        """A declared pattern, with where it points when that differs."""
        resolved = self.patterns[given]
        return repr(given) if resolved == given else f"{given!r} ({resolved})"

    def plan(self, paths: list[str]) -> SchemaPlan:
        """The schema plan for `paths`: each file's sampled schema (Parquet footer, first MB of text)."""
        incoming, declared = [], parse_schema(self.schema)
        for path in paths:
            if not_a_file(path):
                continue  # read_file quarantines it as a whole file
            try:
                with storage_errors(f"source {self.name!r}: cannot read {path}"), \
                        open_file(path, self.storage_options, self._format(path), f"source {self.name!r}") as fh:
                    sampled = sample_schema(self._format(path), fh, self.csv_delimiter, declared)
            except (*READ_ERRORS, FileUnreadable) as exc:
                if isinstance(exc, HeadwaterError):
                    raise
                if isinstance(exc, FileNotFoundError):
                    raise self._missing(path) from exc
                continue  # read_file quarantines it as a whole file
            if self.columns is not None:
                sampled = pa.schema([f for f in sampled if f.name in self.columns])
            incoming.append((f"file {path}", sampled))
        incoming.append((LOAD_ORIGIN, LOAD_SCHEMA))
        return SchemaPlan(self.name, incoming, self.contract, declared)

    def _missing(self, path: str) -> HeadwaterError:
        """The error for a file that was listed but is gone, or a URL that names nothing."""
        return SourceError(f"source {self.name!r}: no file at {path}",
                           "check the path or URL; files are listed when the run starts")

    def _format(self, path: str) -> str:
        return self.format or infer_format(path)

    def read_file(self, path: str, quarantine: Quarantine | None = None,
                  plan: SchemaPlan | None = None) -> Iterator[pa.RecordBatch]:
        """The good rows of one file as record batches of at most `batch_rows` rows, coerced to
        the plan's types; bad rows (or the whole file) go to `quarantine`."""
        fmt = self._format(path)
        if plan is None:
            plan = self.plan([path])
            plan.resolve(None)
        quarantine = quarantine or Quarantine(self.name, "", None)  # type: ignore[arg-type]
        refused = not_a_file(path) or plan.refused.get(f"file {path}")
        if refused:
            quarantine.file(path, refused)
            return
        types = {n: t for n, t in plan.data_types().items() if n not in LOAD_SCHEMA.names}
        dropped: set[str] = set()
        # with columns=, the other columns of a text file are left out, not new columns to plan
        contract = "discard_columns" if self.columns is not None and fmt != "parquet" else plan.contract
        rows = 0
        try:
            with storage_errors(f"source {self.name!r}: cannot read {path}"), \
                    open_file(path, self.storage_options, fmt, f"source {self.name!r}") as fh:
                if fmt == "parquet":
                    tables = read_parquet(self._parquet(fh), path, quarantine, types, contract, dropped)
                else:
                    tables = TextReader(fmt, path, quarantine, types, contract, dropped,
                                        self.csv_delimiter).read(fh)
                for table in tables:
                    batches = table.to_batches(max_chunksize=self.batch_rows)
                    if self.columns is not None and fmt != "parquet":  # Parquet reads only these
                        batches = select(batches, self.columns, f"source {self.name!r}: {path}")
                    for batch in batches:
                        if batch.num_rows:
                            rows += batch.num_rows
                            yield batch
        except (*READ_ERRORS, FileUnreadable) as exc:
            if isinstance(exc, HeadwaterError):
                raise
            if isinstance(exc, FileNotFoundError):
                raise self._missing(path) from exc
            why = str(exc) if isinstance(exc, FileUnreadable) else f"{type(exc).__name__}: {exc}"
            landed = f" ({rows:,} rows read before the failure landed)" if rows else ""
            quarantine.file(path, f"cannot read the file as {fmt}: {why}{landed}")
        if self.columns is None:
            for name in sorted(dropped - set(plan.dropped)):
                plan.dropped.append(name)

    def _parquet(self, fh: Any) -> Iterator[pa.RecordBatch]:
        yield from iter_parquet(fh, columns=self.columns, batch_rows=self.batch_rows,
                                origin=f"source {self.name!r}")


def not_a_file(path: str) -> str | None:
    """Why a local `path` must not be opened (a named pipe would block, a device never end), or None."""
    if protocol(path) != "file":
        return None
    local = path.removeprefix("file://")
    try:
        mode = os.stat(local).st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing; skipped" if os.path.islink(local) else None
    except OSError as exc:
        return f"cannot be examined: {exc}"
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return f"not a regular file but {what}; skipped without reading it"
    return None


def files(name: str, path: str | Path | list[str | Path], format: str | None = None, *,
          storage_options: dict[str, Any] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
          delimiter: str = ",", columns: list[str] | None = None, write: WriteMode = "append",
          primary_key: str | list[str] | None = None, schema: Any = None,
          contract: str = "evolve", allow_empty: bool = False, track: list[str] | None = None,
          hard_deletes: HardDeletes | None = None) -> FileSource:
    """A source of CSV, JSON-lines or Parquet files at `path` (glob, file, folder or URL; local or
    remote; or a list of them), landed by `write`: "append" (default), "replace", "merge" on
    `primary_key`, or "scd2" (every version of each key; `track` the columns whose change makes
    one, default all; `hard_deletes` "invalidate" (default) or "ignore" what new files lack). A
    relative local path starts at the pipeline file's folder. `columns` keeps only those columns;
    `storage_options` are fsspec arguments or AWS_* keys, over the AWS environment for s3://.
    `schema` declares column types (a pyarrow schema or {name: "int64", ...}); `contract` says
    what a new column or type does: evolve (default), freeze, discard_columns. A path that
    matches no file is an error, unless `allow_empty`."""
    paths = str(path) if isinstance(path, (str, Path)) else [str(p) for p in path]
    return FileSource(name, paths, format, dict(storage_options or {}), batch_rows, delimiter,
                      list(columns) if columns is not None else None, write, primary_key, schema, contract,
                      allow_empty, track=list(track) if track is not None else None, hard_deletes=hard_deletes)
