"""Peak memory and speed of landing: a Parquet dataset, a CSV file and a JSON-lines file of
growing size, each landed by `headwater`'s lake in a fresh child process whose peak RSS is
read from the OS, and copied to one Parquet file by DuckDB (`COPY … TO`) in another, as the
baseline measured in the same run.

    python -m bench.land_memory --parquet-rows 6e6,60e6 --csv-gb 0.5,5 --jsonl-gb 0.5,5 [--runs 3]

Data is generated (deterministically) under bench/.cache/ and never committed. The result
table is printed in Markdown for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

CACHE = Path(__file__).parent / ".cache"
CHUNK = 1_000_000


def chunk(i: int, rows: int) -> pa.Table:
    """Rows [i*CHUNK, i*CHUNK+rows) of the synthetic events table: ints, floats, strings, times."""
    rng = np.random.default_rng(i)
    start = i * CHUNK
    return pa.table({
        "event_id": np.arange(start, start + rows, dtype=np.int64),
        "user_id": rng.integers(0, 1_000_000, rows),
        "amount": rng.random(rows) * 100,
        "kind": pa.array(np.array(["view", "like", "login", "share"])[rng.integers(0, 4, rows)]),
        "ts": pa.array(1_767_225_600_000_000 + rng.integers(0, 86_400_000_000 * 30, rows),
                       pa.timestamp("us")),
        "note": pa.array([f"note {n % 9973}" for n in range(start, start + rows)]),
    })


def parquet_dataset(rows: int) -> Path:
    """A folder of Parquet files (about 10M rows each) holding `rows` rows."""
    folder = CACHE / f"parquet_{rows}"
    if (folder / "_done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_file, written, i = 10 * CHUNK, 0, 0
    while written < rows:
        with pq.ParquetWriter(folder / f"part-{written // per_file:04d}.parquet", chunk(0, 1).schema) as w:
            for _ in range(per_file // CHUNK):
                n = min(CHUNK, rows - written)
                if n <= 0:
                    break
                w.write_table(chunk(i, n), row_group_size=CHUNK)
                written, i = written + n, i + 1
    (folder / "_done").write_text(str(rows))
    return folder


def csv_file(gigabytes: float) -> tuple[Path, int]:
    """One CSV file of about `gigabytes` GB and its row count."""
    target = int(gigabytes * 1e9)
    path = CACHE / f"events_{gigabytes}gb.csv"
    done = path.with_suffix(".rows")
    if done.exists():
        return path, int(done.read_text())
    rows, i = 0, 0
    with open(path, "wb") as fh:
        while fh.tell() < target:
            table = chunk(i, CHUNK)
            pcsv.write_csv(table, fh, pcsv.WriteOptions(include_header=(i == 0)))
            rows, i = rows + table.num_rows, i + 1
    done.write_text(str(rows))
    return path, rows


CHILD = """
import json, sys, time
from datetime import datetime, timezone
from bench.elt_h.stages import peak_rss_mb
from engine.lake import Lake
from engine.load.land import land
from engine.sources import files
path, lake_dir = sys.argv[1], sys.argv[2]
lake = Lake(lake_dir)
source = files("bench", path)
started = time.perf_counter()
e = source.extract({}, run_id="bench", loaded_at=datetime.now(timezone.utc))
landing = land(lake, "raw.bench", e, run_id="bench")  # the runner's path: plan, quarantine, commit
print(json.dumps({"rows": landing.commit.rows, "quarantined": landing.quarantined,
                  "seconds": time.perf_counter() - started,
                  "peak_rss_mb": peak_rss_mb()}))  # VmHWM: ru_maxrss holds the parent's peak
"""


def _child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter (the project on its path); the JSON it prints last."""
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return json.loads(out.stdout.strip().splitlines()[-1])


def land(path: Path) -> dict:
    """Land `path` into a scratch lake in a fresh process; its rows, seconds and peak RSS."""
    with tempfile.TemporaryDirectory(dir=CACHE) as lake:
        return _child(CHILD, str(path), lake)


def jsonl_file(gigabytes: float) -> tuple[Path, int]:
    """One JSON-lines file of about `gigabytes` GB (the same events, written by DuckDB) and its
    row count."""
    import duckdb

    target = int(gigabytes * 1e9)
    path = CACHE / f"events_{gigabytes}gb.jsonl"
    done = path.with_name(path.name + ".rows")  # (the CSV file's marker is events_<gb>gb.rows)
    if done.exists():
        return path, int(done.read_text())
    part = CACHE / "part.jsonl"
    rows, i = 0, 0
    con = duckdb.connect()
    with open(path, "wb") as fh:
        while fh.tell() < target:
            events = chunk(i, CHUNK)  # noqa: F841 - DuckDB reads the local by name
            con.execute(f"COPY (SELECT * FROM events) TO '{part}' (FORMAT json)")
            fh.write(part.read_bytes())
            rows, i = rows + CHUNK, i + 1
    part.unlink()
    done.write_text(str(rows))
    return path, rows


DUCKDB_CHILD = """
import json, sys, time
import duckdb
from bench.elt_h.stages import peak_rss_mb
path, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
# JSON with the columns declared: from its 20,480-line type sample DuckDB takes every `ts` to
# carry microseconds and stops at the first one that has none (its own COPY writes both)
columns = "{'event_id': 'BIGINT', 'user_id': 'BIGINT', 'amount': 'DOUBLE', 'kind': 'VARCHAR', " \
          "'ts': 'TIMESTAMP', 'note': 'VARCHAR'}"
source = {"parquet": f"read_parquet('{path}/*.parquet')", "csv": f"read_csv('{path}')",
          "jsonl": f"read_json('{path}', format = 'newline_delimited', columns = {columns})"}[kind]
started = time.perf_counter()
con = duckdb.connect()
con.execute(f"COPY (SELECT * FROM {source}) TO '{out}' (FORMAT parquet)")
seconds = time.perf_counter() - started
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}))
"""


def duckdb_copy(path: Path, kind: str) -> dict:
    """DuckDB copying `path` to one Parquet file in a fresh process: its seconds, rows and peak RSS."""
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        return _child(DUCKDB_CHILD, str(path), kind, f"{scratch}/out.parquet")


def median_run(runs: list[dict]) -> dict:
    """The median seconds of `runs` and their highest peak RSS (rows from the first)."""
    return {**runs[0], "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet-rows", default="6e6,60e6")
    parser.add_argument("--csv-gb", default="0.5,5")
    parser.add_argument("--jsonl-gb", default="0.5")
    parser.add_argument("--runs", type=int, default=1, help="runs of each, alternating; medians, highest peak")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    inputs: list[tuple[str, str, Path, int]] = []
    for rows in (int(float(r)) for r in args.parquet_rows.split(",") if r):
        started = time.perf_counter()
        folder = parquet_dataset(rows)
        print(f"parquet {rows:,} rows ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        inputs.append((f"Parquet, {rows / 1e6:g}M rows", "parquet", folder, rows))
    for kind, make, label in (("csv", csv_file, "CSV"), ("jsonl", jsonl_file, "JSON lines")):
        for gb in (float(g) for g in getattr(args, f"{kind}_gb").split(",") if g):
            started = time.perf_counter()
            path, rows = make(gb)
            print(f"{kind} {gb} GB ({rows:,} rows) ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
            inputs.append((f"{label}, {path.stat().st_size / 1e9:.1f} GB", kind, path, rows))
    print("| input | size on disk (GB) | rows landed | quarantined | seconds | rows/s | peak RSS (MB) "
          "| DuckDB COPY s | ÷ DuckDB | DuckDB peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, kind, path, rows in inputs:
        size = sum(p.stat().st_size for p in path.glob("*.parquet")) if path.is_dir() else path.stat().st_size
        pairs = [(land(path), duckdb_copy(path, kind)) for _ in range(args.runs)]  # alternating
        r, d = (median_run([pair[i] for pair in pairs]) for i in (0, 1))
        if not r["rows"] + r["quarantined"] == d["rows"] == rows:
            raise SystemExit(f"{name}: {rows:,} rows generated, Headwater landed {r['rows']:,} "
                             f"(+{r['quarantined']:,} quarantined), DuckDB copied {d['rows']:,}")
        print(f"| {name} | {size / 1e9:.2f} | {r['rows']:,} | {r['quarantined']:,} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_mb']:,.0f} | {d['seconds']:.1f} | "
              f"{r['seconds'] / d['seconds']:.2f}× | {d['peak_rss_mb']:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
