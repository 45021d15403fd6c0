"""File sources: CSV, JSON lines and Parquet, local or any fsspec URL, streamed in bounded batches.

Each run lands only files not landed before; the list of landed files is the source's state.
Listing, opening remote files and streaming Parquet by row group live in `remote.py`.
`write="append"` (the default) appends their rows; `write="merge"` upserts them on
`primary_key` (the last row of a key wins: later file, later row); `write="replace"` reads every
file again whenever the set of files changed, and replaces the raw table with them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from engine.errors import HeadwaterError
from engine.sources.base import (
    DEFAULT_BATCH_ROWS,
    WRITES,
    Extraction,
    check_write,
    flatten,
    key_columns,
    with_load_columns,
)
from engine.sources.remote import iter_parquet, list_paths, open_file, select
from engine.storage import storage_errors

FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}
BLOCK_BYTES = 8 << 20  # text formats are parsed in blocks of this size


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
    """Files matching `path` (a glob, a file, a folder or a URL; or a list of them), landed once each."""

    name: str
    path: str | list[str]
    format: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = DEFAULT_BATCH_ROWS
    csv_delimiter: str = ","
    columns: list[str] | None = None  # only these columns (Parquet reads no others)
    write: str = "append"  # append | replace | merge
    primary_key: str | list[str] | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise HeadwaterError(f"source {self.name!r}: unknown format {self.format!r}",
                                 f"use one of {', '.join(FORMATS)}")
        check_write(self.name, self.write, self.primary_key)

    def list_files(self) -> list[str]:
        """Every file the path matches now, as sorted absolute paths or URLs."""
        patterns = [self.path] if isinstance(self.path, str) else self.path
        return list_paths(patterns, self.storage_options, f"source {self.name!r}")

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        landed = set(state.get("files", []))
        current = self.list_files()
        new = [f for f in current if f not in landed]
        mode, key = WRITES[self.write], key_columns(self.primary_key)
        if mode == "overwrite":
            if set(current) == landed:
                return Extraction(iter(()), state, f"no new files ({len(landed)} landed)")
            read, new_state = current, {"files": current}
            planned = f"all {len(current)} file(s), {len(new)} new (write='replace')"
        else:
            read, new_state = new, {"files": sorted(landed | set(new))}
            planned = f"{len(new)} new file(s) of {len(new) + len(landed)}"
        batches = (with_load_columns(b, run_id=run_id, loaded_at=loaded_at, source_file=f)
                   for f in read for b in self.read_file(f))
        return Extraction(batches, new_state, planned, read, mode, key)

    def read_file(self, path: str) -> Iterator[pa.RecordBatch]:
        """The rows of one file as record batches of at most `batch_rows` rows."""
        fmt = self.format or infer_format(path)
        try:
            with storage_errors(f"source {self.name!r}: cannot read {path}"), \
                    open_file(path, self.storage_options, fmt) as fh:
                batches = _READERS[fmt](self, fh)
                if self.columns is not None and fmt != "parquet":  # Parquet reads only these
                    batches = select(batches, self.columns, f"source {self.name!r}: {path}")
                yield from _bounded(batches, self.batch_rows)
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            if "Empty CSV file" in str(exc):
                return
            raise HeadwaterError(f"source {self.name!r}: cannot read {path} as {fmt}: {exc}",
                                 "fix or remove the file; quarantining bad rows comes with issue 3") from exc

    def _csv(self, fh: Any) -> Iterator[pa.RecordBatch]:
        yield from pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
                                 parse_options=pcsv.ParseOptions(delimiter=self.csv_delimiter))

    def _jsonl(self, fh: Any) -> Iterator[pa.RecordBatch]:
        for batch in pjson.open_json(fh, read_options=pjson.ReadOptions(block_size=BLOCK_BYTES)):
            yield flatten(batch)

    def _parquet(self, fh: Any) -> Iterator[pa.RecordBatch]:
        yield from iter_parquet(fh, columns=self.columns, batch_rows=self.batch_rows,
                                origin=f"source {self.name!r}")


_READERS = {"csv": FileSource._csv, "jsonl": FileSource._jsonl, "parquet": FileSource._parquet}


def _bounded(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def files(name: str, path: str | Path | list[str | Path], format: str | None = None, *,
          storage_options: dict[str, Any] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
          delimiter: str = ",", columns: list[str] | None = None, write: str = "append",
          primary_key: str | list[str] | None = None) -> FileSource:
    """A source of CSV, JSON-lines or Parquet files at `path` (glob, file, folder or URL; local or
    remote; or a list of them), landed by `write`: "append" (default), "replace", or "merge" on
    `primary_key`. `columns` keeps only those columns; `storage_options` are fsspec arguments or
    AWS_* keys, over the AWS environment for s3://."""
    paths = str(path) if isinstance(path, (str, Path)) else [str(p) for p in path]
    return FileSource(name, paths, format, dict(storage_options or {}), batch_rows, delimiter,
                      list(columns) if columns is not None else None, write=write, primary_key=primary_key)
