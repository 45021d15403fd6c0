"""Quarantine: rows (and whole files) that could not be landed, kept in `quarantine.<source>`.

A reader hands every row it cannot parse or coerce to a `Quarantine` with the raw text, the
reason, the file and the line; a file it cannot read at all becomes one entry of kind `file`.
`land` runs one load: it plans the schema, streams the good rows into `raw.<source>`, and, when
the stream is exhausted but before the landing commit, commits the quarantined entries to
`quarantine.<source>`; the landing commit records that version in its metadata. So the rows of
a run are always either landed or quarantined (rows in = landed + quarantined), and a crash
between the two commits only leaves quarantine entries whose run id has no landing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

log = logging.getLogger("headwater.load")
RAW_LIMIT = 64 << 10  # raw text kept per entry; `raw_bytes` has the full length

SCHEMA = pa.schema([
    ("source", pa.string()),
    ("file", pa.string()),
    ("line", pa.int64()),  # 1-based line in the file (row number for Parquet); null for a file
    ("kind", pa.string()),  # row | file
    ("reason", pa.string()),
    ("raw", pa.string()),  # the row's text (invalid UTF-8 as \x escapes), cut at RAW_LIMIT
    ("raw_bytes", pa.int64()),
    ("_hw_loaded_at", pa.timestamp("us", tz="UTC")),
    ("_hw_run_id", pa.string()),
])


@dataclass
class Quarantine:
    """The entries one run of one source quarantines."""

    source: str
    run_id: str
    loaded_at: datetime
    entries: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.entries)

    def row(self, file: str, line: int | None, raw: bytes | bytearray | str, reason: str) -> None:
        """Quarantine one row: its raw text and why it was not landed."""
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        text = data[:RAW_LIMIT].decode("utf-8", "backslashreplace")
        self._add(file, line, "row", reason, text, len(data))

    def file(self, file: str, reason: str) -> None:
        """Quarantine a whole file that could not be read (it is still recorded as landed)."""
        log.warning("source %r: quarantined the whole file %s: %s", self.source, file, reason)
        self._add(file, None, "file", reason, None, None)

    def _add(self, file: str, line: int | None, kind: str, reason: str, raw: str | None,
             size: int | None) -> None:
        self.entries.append({"source": self.source, "file": file, "line": line, "kind": kind,
                             "reason": reason, "raw": raw, "raw_bytes": size,
                             "_hw_loaded_at": self.loaded_at, "_hw_run_id": self.run_id})

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.entries, schema=SCHEMA)
