"""What an SCD2 load costs as its table grows: loads of N changed rows into history tables of
different sizes (write="scd2", engine/lake/scd2.py).

    python -m bench.scd2 --rows 1e5,1e6 --changed 1000 --repeat 5 [--write]

For each table size, in this one process: the table is landed once (one version per key, in key
order, as a SQL source's full extract reads it), then `--repeat` loads of each kind are timed
(`Lake.land`, everything from the first batch to the commit), with fresh keys each time:

* clustered: `--changed` rows of one key range changed (recent sign-ups, one region), the load
  holding only them, as a cursor's load does (`hard_deletes="ignore"`);
* spread: `--changed` rows of keys drawn across the whole table, the same way;
* full extract: the whole table read again with `--changed` rows changed (no cursor,
  `hard_deletes="invalidate"`): the load itself is the table's size.

The median seconds, the files each load rewrote and the ratio of the largest table's time to the
smallest's go in a Markdown section; `--write` puts it into bench/RESULTS.md between the scd2 markers.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from bench.results import write_section
from engine.lake import Lake
from engine.lake.history import History

START, END = "<!-- scd2:start -->", "<!-- scd2:end -->"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("plan", pa.string()), ("score", pa.float64()),
                    ("signed_up", pa.date32())])
PLANS = np.array(["free", "pro", "team", "enterprise"])
KINDS = ("clustered", "spread", "full extract")


def customers(ids: np.ndarray, version: int) -> pa.Table:
    """Rows of `ids` whose plan and score depend on `version` (a new version changes them)."""
    return pa.table({
        "id": ids, "name": pa.array([f"customer {i}" for i in ids.tolist()]),
        "plan": pa.array(PLANS[(ids + version) % len(PLANS)]), "score": (ids % 1000) / 10 + version,
        "signed_up": pa.array((ids % 3650).astype("int32"), pa.int32()).cast(pa.date32()),
    }, schema=SCHEMA)


def land(lake: Lake, rows: pa.Table, when: datetime, hard_deletes: str) -> None:
    lake.land("raw.customers", rows.to_batches(max_chunksize=65_536), run_id=when.isoformat(), state={},
              mode="scd2", schema=SCHEMA, history=History(["id"], when, hard_deletes=hard_deletes),  # type: ignore[arg-type]
              settle=lambda table, reasons: 0)


def files(lake: Lake) -> set[str]:
    return set(DeltaTable(lake.uri("raw.customers")).file_uris())


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(rows: int, changed: int, repeat: int, folder: Path) -> tuple[float, dict[str, tuple[float, int]]]:
    """(seconds of the first load, {kind: (median seconds of a load, median files it rewrote)})."""
    lake = Lake(str(folder))
    ids = np.arange(rows, dtype=np.int64)
    first = timed(lambda: land(lake, customers(ids, 0), T0, "ignore"))
    rng = np.random.default_rng(rows)
    when = T0
    out: dict[str, tuple[float, int]] = {}
    for kind in KINDS:
        seconds, rewrote = [], []
        for _ in range(repeat):
            when += timedelta(hours=1)
            version = int((when - T0).total_seconds() // 3600)
            if kind == "clustered":
                start = int(rng.integers(0, rows - changed))
                keys = ids[start:start + changed]
            else:
                keys = np.sort(rng.choice(rows, changed, replace=False))
            if kind == "full extract":
                snapshot = customers(ids, 0)  # every key, as it was first landed ...
                edited = customers(keys, version)  # ... but `changed` of them
                load = pa.concat_tables([snapshot.filter(~np.isin(ids, keys)), edited])
            else:
                load = customers(keys, version)
            before = files(lake)
            start = time.perf_counter()
            land(lake, load, when, "invalidate" if kind == "full extract" else "ignore")
            seconds.append(time.perf_counter() - start)
            rewrote.append(len(before - files(lake)))
        out[kind] = (statistics.median(seconds), int(statistics.median(rewrote)))
        print(f"{rows:,} rows, {kind}: {out[kind][0]:.3f} s, {out[kind][1]} file(s) rewritten", flush=True)
    return first, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e5,1e6", help="comma-separated table sizes (rows)")
    parser.add_argument("--changed", type=int, default=1000, help="changed rows per load")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    counts = [int(float(r)) for r in args.rows.split(",")]
    results = {}
    for rows in counts:
        with tempfile.TemporaryDirectory(prefix="hw-bench-scd2-") as folder:
            results[rows] = bench(rows, args.changed, args.repeat, Path(folder))
    section = report(results, args.changed, args.repeat, " ".join(sys.argv[1:]))
    print(section)
    if args.write:
        write_section(section, START, END)


def report(results: dict[int, tuple[float, dict[str, tuple[float, int]]]], changed: int, repeat: int,
           argv: str) -> str:
    """The Markdown section for bench/RESULTS.md."""
    sizes = sorted(results)
    small, big = sizes[0], sizes[-1]
    lines = [f"| {kind} | " + " | ".join(f"{results[n][1][kind][0]:.3f} ({results[n][1][kind][1]})" for n in sizes)
             + f" | {results[big][1][kind][0] / results[small][1][kind][0]:.1f}× |" for kind in KINDS]
    lines.append("| first load (every key new) | " + " | ".join(f"{results[n][0]:.3f}" for n in sizes)
                 + f" | {results[big][0] / results[small][0]:.1f}× |")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "\n".join([
        f"## SCD2 loads: cost against table size ({date.today().isoformat()})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, shared; Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}; a local lake. Median of {repeat} loads of "
        f"{changed:,} changed rows each, timed from the first batch to the commit (`Lake.land`, "
        "mode \"scd2\"); in brackets, the data files the load rewrote to close versions.",
        "",
        f"`python -m bench.scd2 {argv}`:",
        "",
        "| load | " + " | ".join(f"{n:,}-row table: s (files)" for n in sizes) + f" | {big:,} ÷ {small:,} |",
        "| --- | " + " | ".join("---:" for _ in sizes) + " | ---: |",
        *lines,
        "",
        "Reading them: a load reads the key, `_hw_valid_to` and `_hw_row_hash` columns of the files whose "
        "key bounds in the Delta log overlap its keys and that still hold a current version, and rewrites "
        "the files holding a version it closes (files hold at most 65,536 key-sorted rows). *Clustered* "
        "changes touch one or two files whatever the table's size: the load costs its own rows. *Spread* "
        "changes (keys drawn across the whole table) hold a key in nearly every file, so every file is "
        "rewritten and the load costs the table's size: that is the price of closing versions in place "
        "without deletion vectors, which delta-rs does not write (delta-io/delta-rs#4512: its own merge, "
        "update and delete rewrite files too). A *full extract* (no cursor) is the whole "
        "table by definition: it is hashed, compared with every current version and closes the keys it "
        "lacks, in time proportional to the table.",
    ])


if __name__ == "__main__":
    main()
