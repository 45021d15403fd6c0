"""Remote files for file sources: listing URLs and globs, and Parquet streamed by row group.

A Parquet file is opened without read-ahead (`cache_type="none"`), so each read is one ranged
request for exactly the bytes pyarrow asks for: the footer, then, row group by row group, the
column chunks of the projected columns. Reading one column of a wide file transfers about
that column's share of the file, and memory holds one row group's batches at a time.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.utils import get_protocol, infer_compression

from engine.errors import SourceError
from engine.lake.storage import check_bucket, protocol, source_options, storage_errors

UNLISTABLE = ("http", "https")  # URLs that name one file each: no glob, no folder listing
PARQUET_OPEN = {"cache_type": "none", "block_size": 1 << 20}  # no read-ahead: ranged reads only


def list_paths(patterns: Iterable[str], options: dict[str, Any], origin: str) -> list[str]:
    """Every file the patterns (globs, files, folders or URLs) match now, sorted, deduplicated."""
    return sorted({path for found in match_each(patterns, options, origin).values() for path in found})


def match_each(patterns: Iterable[str], options: dict[str, Any], origin: str) -> dict[str, list[str]]:
    """The files each pattern matches now (a local file or folder that is not there matches
    nothing; an http(s) URL names its one file without being asked)."""
    matched: dict[str, list[str]] = {}
    for pattern in patterns:
        if protocol(pattern) in UNLISTABLE:
            matched[pattern] = [pattern]
            continue
        with storage_errors(f"{origin}: cannot list {pattern}"):
            matched[pattern] = _expand(pattern, source_options(pattern, options))
    return matched


def _expand(pattern: str, options: dict[str, Any]) -> list[str]:
    fs, path = fsspec.core.url_to_fs(pattern, **options)
    fs.invalidate_cache()  # a listing cached by an earlier run must not hide new files
    local = get_protocol(pattern) in ("file", "local")
    if any(c in path for c in "*?["):
        paths = [p for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory"]
    elif fs.isdir(path):
        paths = [p for p in fs.find(path) if not Path(p).name.startswith((".", "_"))]
    else:  # a link to nothing is listed (and quarantined), a file that is not there is not
        paths = [path] if (os.path.lexists(path) if local else fs.exists(path)) else []
    if not paths and not local:  # nothing matched (the source judges that), or no bucket at all
        check_bucket(fs, path)
    return [str(Path(p)) if local else fs.unstrip_protocol(p) for p in paths]


COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstandard"}  # suffix -> what reads it


def open_file(path: str, options: dict[str, Any], fmt: str, origin: str = "") -> Any:
    """`path` opened for reading: text formats decompressed by suffix; Parquet without read-ahead."""
    suffix = Path(path.split("?")[0]).suffix.lower()
    if fmt != "parquet" and suffix in COMPRESSIONS and infer_compression(path) is None:
        raise SourceError(f"{origin}{': ' if origin else ''}cannot decompress {path}: the "
                          f"{COMPRESSIONS[suffix]} module is not installed",
                          f"pip install {COMPRESSIONS[suffix]}")  # not the file's fault: no entry, no skip
    options = source_options(path, options)
    if fmt != "parquet" or protocol(path) == "file":
        return fsspec.open(path, "rb", compression="infer", **options).open()
    fs, inner = fsspec.core.url_to_fs(path, **options)
    return fs.open(inner, "rb", **PARQUET_OPEN)


def iter_parquet(fh: Any, *, columns: list[str] | None, batch_rows: int,
                 origin: str) -> Iterator[pa.RecordBatch]:
    """The rows of a Parquet file, row group by row group, only the `columns` asked for."""
    parquet = pq.ParquetFile(fh)  # reads the footer only
    if columns is not None:
        missing = [c for c in columns if c.split(".")[0] not in parquet.schema_arrow.names]
        if missing:
            raise SourceError(f"{origin}: no column(s) {missing}; it has {parquet.schema_arrow.names}",
                              "fix columns= in the source")
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)


def select(batches: Iterable[pa.RecordBatch], columns: list[str], origin: str) -> Iterator[pa.RecordBatch]:
    """Only `columns` of each parsed batch, in that order (a missing one is an error)."""
    for batch in batches:
        missing = [c for c in columns if c not in batch.schema.names]
        if missing:
            raise SourceError(f"{origin}: no column(s) {missing}; it has {batch.schema.names}",
                              "fix columns= in the source")
        yield batch.select(columns)
