"""Peak memory of landing: a Parquet dataset and a CSV file of growing size, each landed by
`headwater`'s lake in a fresh child process whose peak RSS is read from the OS.

    python -m bench.land_memory --parquet-rows 6e6,60e6 --csv-gb 0.5,5

Data is generated (deterministically) under bench/.cache/ and never committed. The result
table is printed in Markdown for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
from engine.quarantine import land
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


def land(path: Path) -> dict:
    """Land `path` into a scratch lake in a fresh process; its rows, seconds and peak RSS."""
    with tempfile.TemporaryDirectory(dir=CACHE) as lake:
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), lake], check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet-rows", default="6e6,60e6")
    parser.add_argument("--csv-gb", default="0.5,5")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    rows_out = []
    for rows in (int(float(r)) for r in args.parquet_rows.split(",") if r):
        started = time.perf_counter()
        folder = parquet_dataset(rows)
        print(f"parquet {rows:,} rows ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        size = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e9
        rows_out.append((f"Parquet, {rows / 1e6:g}M rows", size, land(folder)))
    for gb in (float(g) for g in args.csv_gb.split(",") if g):
        started = time.perf_counter()
        path, rows = csv_file(gb)
        print(f"csv {gb} GB ({rows:,} rows) ready in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        rows_out.append((f"CSV, {path.stat().st_size / 1e9:.1f} GB", path.stat().st_size / 1e9, land(path)))
    print("| input | size on disk (GB) | rows landed | quarantined | seconds | rows/s | peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, size, r in rows_out:
        print(f"| {name} | {size:.2f} | {r['rows']:,} | {r['quarantined']:,} | {r['seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_mb']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
