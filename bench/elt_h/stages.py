"""What every engine's run shares: stage timing, its own CPU and peak memory, and the
warehouse write of the peers (a DuckDB file, as Headwater's default warehouse)."""
from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

STAGES = ("land", "transform", "publish")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB: the kernel's high-water mark (VmHWM)
    where there is one (Linux), else `ru_maxrss`. Not `ru_maxrss` on Linux: a process started by
    fork and exec inherits its parent's peak there, so every engine run after the harness had
    compared large outputs reported the harness's memory instead of its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User plus system CPU seconds this process (all its threads) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stages:
    """Seconds per stage, and the peak RSS once landing is done."""

    def __init__(self) -> None:
        self.seconds = {s: 0.0 for s in STAGES}
        self.land_peak_rss_mb = 0.0
        self.land_rows = 0
        self.out_rows = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as (part of) stage `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started
            if name == "land":
                self.land_peak_rss_mb = peak_rss_mb()

    def result(self) -> dict[str, Any]:
        """What the harness records for this run (the process's CPU and peak RSS at the end)."""
        return {**{f"{s}_s": round(v, 4) for s, v in self.seconds.items()},
                "land_rows": self.land_rows, "out_rows": self.out_rows, "cpu_s": round(cpu_seconds(), 3),
                "peak_rss_mb": round(peak_rss_mb(), 1), "land_peak_rss_mb": round(self.land_peak_rss_mb, 1)}


def publish_duckdb(path: Path, tables: dict[str, Any]) -> int:
    """Write each frame or Arrow table of `tables` to the DuckDB file at `path` as a table of that
    name, in one transaction; the rows written."""
    con = duckdb.connect(str(path))
    rows = 0
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        for name, data in tables.items():
            con.register("__elt_h_out", data)
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM __elt_h_out').fetchall()
            con.unregister("__elt_h_out")
            rows += con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
        con.execute("COMMIT").fetchall()
    finally:
        con.close()
    return rows
