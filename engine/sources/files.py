"""File sources: CSV, JSON lines and Parquet, local or any fsspec URL, streamed in bounded batches.

Each run lands only files not landed before; the list of landed files is the source's state.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import HeadwaterError
from engine.quarantine import Quarantine
from engine.schema import SchemaPlan, parse_schema
from engine.sources.base import DEFAULT_BATCH_ROWS, Extraction, with_load_columns
from engine.sources.parse import READ_ERRORS, FileUnreadable, TextReader, read_parquet, sample_schema

FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


def infer_format(path: str) -> str:
    """The format named by a path's extension (compression suffixes ignored)."""
    suffixes = [s for s in Path(path.split("?")[0]).suffixes if s not in (".gz", ".bz2", ".zst", ".xz")]
    fmt = SUFFIXES.get(suffixes[-1].lower()) if suffixes else None
    if fmt is None:
        raise HeadwaterError(f"cannot tell the format of {path!r} from its name",
                             f"pass format= one of {', '.join(FORMATS)}")
    return fmt


@dataclass
class FileSource:
    """Files matching `path` (a glob, a file or a folder), landed once each."""

    name: str
    path: str
    format: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = DEFAULT_BATCH_ROWS
    csv_delimiter: str = ","
    schema: Any = None  # pyarrow schema or {column: type}: declared types (engine/schema.py)
    contract: str = "evolve"  # evolve | freeze | discard_columns

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise HeadwaterError(f"source {self.name!r}: unknown format {self.format!r}",
                                 f"use one of {', '.join(FORMATS)}")
        SchemaPlan(self.name, [], self.contract)  # checks the contract name

    def list_files(self) -> list[str]:
        """Every file the path matches now, as sorted absolute paths or URLs."""
        fs, _, paths = fsspec.get_fs_token_paths(self.path, storage_options=self.storage_options)
        if len(paths) == 1 and fs.isdir(paths[0]):
            paths = [p for p in fs.find(paths[0]) if not Path(p).name.startswith((".", "_"))]
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        local = protocol in ("file", "local")
        return sorted(p if local else fs.unstrip_protocol(p) for p in paths)

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        landed = set(state.get("files", []))
        new = [f for f in self.list_files() if f not in landed]
        plan, quarantine = self.plan(new), Quarantine(self.name, run_id, loaded_at)
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at, source_file=f)
                   for f in new for b in self.read_file(f, quarantine, plan))
        return Extraction(batches, {"files": sorted(landed | set(new))},
                          f"{len(new)} new file(s) of {len(new) + len(landed)}", new,
                          plan=plan, quarantine=quarantine)

    def plan(self, paths: list[str]) -> SchemaPlan:
        """The schema plan for `paths`: each file's sampled schema (Parquet footer, first MB of text)."""
        incoming = []
        for path in paths:
            try:
                with fsspec.open(path, "rb", compression="infer", **self.storage_options) as fh:
                    incoming.append((f"file {path}", sample_schema(self._format(path), fh, self.csv_delimiter)))
            except (*READ_ERRORS, FileUnreadable):
                pass  # read_file quarantines it as a whole file
        incoming.append(("load columns", LOAD_SCHEMA))
        return SchemaPlan(self.name, incoming, self.contract, parse_schema(self.schema))

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
        types = {n: t for n, t in plan.data_types().items() if n not in LOAD_SCHEMA.names}
        dropped: set[str] = set()
        try:
            with fsspec.open(path, "rb", compression="infer", **self.storage_options) as fh:
                if fmt == "parquet":
                    tables = read_parquet(self._parquet(fh), path, quarantine, types, plan.contract, dropped)
                else:
                    tables = TextReader(fmt, path, quarantine, types, plan.contract, dropped,
                                        self.csv_delimiter).read(fh)
                for table in tables:
                    for batch in table.to_batches(max_chunksize=self.batch_rows):
                        if batch.num_rows:
                            yield batch
        except (*READ_ERRORS, FileUnreadable) as exc:
            if isinstance(exc, HeadwaterError):
                raise
            quarantine.file(path, f"cannot read the file as {fmt}: {type(exc).__name__}: {exc}")
        for name in sorted(dropped - set(plan.dropped)):
            plan.dropped.append(name)

    def _parquet(self, fh: Any) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(fh).iter_batches(batch_size=self.batch_rows)


LOAD_SCHEMA = pa.schema([("_hw_source_file", pa.string()), ("_hw_loaded_at", pa.timestamp("us", tz="UTC")),
                         ("_hw_run_id", pa.string())])


def files(name: str, path: str, format: str | None = None, *,
          storage_options: dict[str, Any] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
          delimiter: str = ",", schema: Any = None, contract: str = "evolve") -> FileSource:
    """A source of CSV, JSON-lines or Parquet files at `path` (glob, file or folder; local or URL).

    `schema` declares column types (a pyarrow schema or {name: "int64", ...}); `contract` says
    what a new column or type does: evolve (default), freeze, discard_columns."""
    return FileSource(name, str(path), format, dict(storage_options or {}), batch_rows, delimiter,
                      schema, contract)
