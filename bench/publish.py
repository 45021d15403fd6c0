"""Publishing through Headwater against each database's own bulk load of the same Arrow rows.

    python -m bench.publish --rows 1e6,5e6 [--pg-url postgresql+psycopg://…] [--write]

For each row count, in this one process, best of 3 each (the two sides interleaved):
* DuckDB: `Warehouse.publish` (mode replace) vs DuckDB's own
  `CREATE OR REPLACE TABLE … AS SELECT * FROM arrow_table` on a connection to the same file;
* PostgreSQL: `Warehouse.publish` (COPY of Arrow-written CSV, staging table, swap, bookkeeping)
  vs a raw psycopg `COPY … FROM STDIN (FORMAT csv)` of the same rows into a fresh table, as the
  same CSV Headwater writes, rendered before the clock starts (the floor is the server's ingest
  alone; the render's seconds are shown beside it).
Without `--pg-url` a throwaway PostgreSQL cluster is started (tests/support/pg.py's) and removed.
`--write` puts the Markdown section into bench/RESULTS.md between the publish markers.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter

from bench.results import write_section
from engine.publish import connect
from engine.publish.postgres import csv_ready

START, END = "<!-- publish:start -->", "<!-- publish:end -->"


def mixed(rows: int, seed: int = 0) -> pa.Table:
    """`rows` rows of int64, float64, a short string, a tz-aware timestamp, decimal(12,2), bool, date."""
    rng = np.random.default_rng(seed)
    cents = rng.integers(-10**9, 10**9, rows)
    return pa.table({
        "id": np.arange(rows, dtype=np.int64),
        "score": rng.random(rows),
        "kind": pa.array(np.array(["view", "like", "login", "share"])[rng.integers(0, 4, rows)]),
        "at": pa.array(1_767_225_600_000_000 + rng.integers(0, 86_400_000_000 * 30, rows),
                       pa.timestamp("us", "UTC")),
        "amount": cents_decimal(cents),
        "flag": rng.random(rows) < 0.5,
        "day": pa.array(rng.integers(0, 20_000, rows).astype("int32"), pa.int32()).cast(pa.date32()),
    })


def cents_decimal(cents: np.ndarray) -> pa.Array:
    """decimal128(12, 2) values cents/100: the 128-bit little-endian integers built in numpy."""
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0], words[:, 1] = cents, cents >> 63  # low word, sign-extended high word
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words)])


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_pair(n: int, ours: Callable[[], None], floor: Callable[[], None]) -> tuple[float, float]:
    """The fastest of `n` runs of each, interleaved (ours, floor, ours, …) so that both see the
    same machine: (ours, floor) seconds."""
    times = [(timed(ours), timed(floor)) for _ in range(n)]
    return min(t[0] for t in times), min(t[1] for t in times)


def bench_duckdb(table: pa.Table, folder: Path, repeat: int) -> tuple[float, float]:
    """(Headwater publish, DuckDB's own CTAS from Arrow) seconds on DuckDB files."""
    wh = connect(f"duckdb:///{folder / 'hw.duckdb'}")
    con = duckdb.connect(str(folder / "floor.duckdb"))

    def floor() -> None:
        con.register("arrow_table", table)
        con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM arrow_table")
        con.unregister("arrow_table")

    try:
        return best_pair(repeat, lambda: wh.publish("t", table, lake_version=1, run_id="bench"), floor)
    finally:
        con.close()
        wh.dispose()


def bench_postgres(table: pa.Table, url: str, repeat: int) -> tuple[float, float, float]:
    """(Headwater publish, raw COPY of rendered CSV, rendering that CSV) seconds on PostgreSQL."""
    buf = io.BytesIO()
    render = timed(lambda: pcsv.write_csv(csv_ready(table.combine_chunks().to_batches()[0]), buf,
                                          pcsv.WriteOptions(include_header=False)))
    data = buf.getvalue()
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def floor() -> None:
        with psycopg.connect(dsn) as pg, pg.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")  # the CSV has UTC wall times, as Headwater writes them
            cur.execute("DROP TABLE IF EXISTS floor")
            cur.execute("CREATE TABLE floor (id bigint, score double precision, kind text, at timestamptz,"
                        " amount numeric(12,2), flag boolean, day date)")
            with cur.copy("COPY floor FROM STDIN (FORMAT csv)", writer=QueuedLibpqWriter(cur)) as copy:
                copy.write(data)  # psycopg sends it in its best buffer size, from a worker thread

    wh = connect(url)
    try:
        ours, theirs = best_pair(repeat, lambda: wh.publish("t", table, lake_version=1, run_id="bench"), floor)
    finally:
        wh.dispose()
    return ours, theirs, render


def throwaway_postgres() -> tuple[str, Callable[[], None]]:
    """Start a PostgreSQL cluster (tests/support/pg.py's); its URL and a function that removes it."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from tests.support.pg import Cluster, pg_bin_dir

    bindir = pg_bin_dir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries: install postgresql or pass --pg-url")
    root = Path(tempfile.mkdtemp(prefix="hwpg-bench-"))
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        import pwd

        account = pwd.getpwnam(user)
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = Cluster(bindir, root, user)
    return cluster.start(), cluster.stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6,5e6", help="comma-separated row counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-url", help="a PostgreSQL URL (postgresql+psycopg://…); default: a throwaway cluster")
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    counts = [int(float(r)) for r in args.rows.split(",")]
    url, stop = (args.pg_url, lambda: None) if args.pg_url else throwaway_postgres()
    lines = []
    try:
        for rows in counts:
            table = mixed(rows)
            with tempfile.TemporaryDirectory(prefix="hw-bench-") as folder:
                duck, duck_floor = bench_duckdb(table, Path(folder), args.repeat)
            pg, pg_floor, render = bench_postgres(table, url, args.repeat)
            lines.append(f"| {rows:,} | {duck:.2f} | {duck_floor:.2f} | {duck / duck_floor:.2f} "
                         f"| {pg:.2f} | {pg_floor:.2f} | {pg / pg_floor:.2f} | {render:.2f} |")
            print(lines[-1], flush=True)
            del table
    finally:
        stop()
    section = report(lines, " ".join(sys.argv[1:]), args.repeat)
    print(section)
    if args.write:
        write_section(section, START, END)


def report(lines: list[str], argv: str, repeat: int) -> str:
    """The Markdown section for bench/RESULTS.md."""
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "\n".join([
        f"## Publishing to the warehouse vs the databases' own bulk load ({date.today().isoformat()})",
        "",
        f"Machine: {platform.machine()}, {cores} cores, {memory:.0f} GiB, shared; Python "
        f"{platform.python_version()}, duckdb {duckdb.__version__}, psycopg {psycopg.__version__}, "
        f"pyarrow {pa.__version__}; PostgreSQL a local cluster (fsync off). Rows: int64, float64, "
        f"short string, timestamptz, decimal(12,2), bool, date. Best of {repeat}, interleaved, in one process.",
        "",
        f"`python -m bench.publish {argv}`:",
        "",
        "| rows | DuckDB: publish (s) | DuckDB: CTAS from Arrow (s) | ratio | PostgreSQL: publish (s) "
        "| PostgreSQL: raw COPY (s) | ratio | CSV render, not in the floor (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *lines,
        "",
        "Headwater's side is a whole `Warehouse.publish(mode=\"replace\")`: opening the warehouse, the load, "
        "the swap and the bookkeeping row in one transaction (DuckDB: one `CREATE OR REPLACE … AS SELECT` "
        "from the Arrow table; PostgreSQL: staging table, Arrow's CSV writer 100k rows at a time into "
        "`COPY` through psycopg's queued writer, drop and rename). The PostgreSQL floor is the same CSV, "
        "rendered before its clock starts, sent by one raw psycopg `COPY` into a fresh table; the last "
        "column is what rendering that CSV took, which Headwater's side includes.",
    ])


if __name__ == "__main__":
    main()
