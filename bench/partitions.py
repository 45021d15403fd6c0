"""What rebuilding one day of a day-partitioned model costs against a full build.

    python -m bench.partitions [--days 30] [--rows-per-day 100000] [--runs 3]

30 days of events land (one Parquet file a day); a partitioned model (events per user and
kind per day) is built whole, then late rows for one day land and the model rebuilds: only
that day's partition. Both builds run in this process on pandas, each timed as the model
step's wall and CPU seconds; the medians and their ratio (the target: about 1/30) are printed
and, with --markdown FILE (bench/RESULTS.md), written there between its partition markers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.results import write_section
from engine import Config, Pipeline, Runner, model, sources

START = datetime(2026, 3, 1)
BEGIN, END = "<!-- partitions:begin -->", "<!-- partitions:end -->"


@model(inputs={"events": "raw.events"}, partition_by="day", event_time={"events": "ts"})
def per_user_day(events: Any) -> Any:
    """Events per user, kind and day."""
    out = events.assign(day=events["ts"].dt.floor("D"))
    return out.groupby(["day", "user_id", "kind"], as_index=False).agg(events=("event_id", "count"))


def write_day(folder: Path, day: int, rows: int, seed: int, name: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    ts = np.datetime64(START + timedelta(days=day)) + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]")
    table = pa.table({"event_id": np.arange(rows) + day * 10_000_000 + seed * 1_000_000_000,
                      "ts": pa.array(ts, pa.timestamp("us")),
                      "user_id": rng.integers(0, 20_000, rows),
                      "kind": pa.array(rng.choice(["view", "like", "share"], rows))})
    pq.write_table(table, folder / (name or f"day{day:02d}.parquet"))


def one_round(root: Path, days: int, rows: int, seed: int) -> dict[str, float]:
    events_dir = root / "events"
    events_dir.mkdir(parents=True)
    for d in range(days):
        write_day(events_dir, d, rows, seed + d)
    events = sources.files("events", f"{events_dir}/*.parquet", format="parquet")
    pipeline = Pipeline("bench", sources=[events], models=[per_user_day], models_dir=None)
    config = Config.load(root, lake=str(root / "lake"), backend="pandas", warehouse=f"duckdb:///{root}/wh.duckdb")
    Runner(pipeline, config).run(select=["raw.events"])
    out: dict[str, float] = {}
    for label in ("full", "one_day"):
        if label == "one_day":
            write_day(events_dir, days // 2, max(1, rows // 100), seed + 999, name="late.parquet")
            Runner(pipeline, config).run(select=["raw.events"])
        runner = Runner(pipeline, config)
        wall, cpu = time.perf_counter(), time.process_time()
        step = runner.build("per_user_day", f"bench-{label}")
        out[f"{label}_s"], out[f"{label}_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
        assert step.status == "built", step.detail
        out[f"{label}_detail"] = step.detail  # type: ignore[assignment]
        runner.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.partitions", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--markdown", type=Path, default=None, help="write the table into this file")
    args = parser.parse_args(argv)
    rounds = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-partitions-") as work:
            rounds.append(one_round(Path(work), args.days, args.rows_per_day, seed=7 + i))
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if not k.endswith("_detail")}
    command = "python -m bench.partitions " + " ".join(sys.argv[1:] if argv is None else argv)
    late = max(1, args.rows_per_day // 100)
    lines = [f"`{command.strip()}` ({args.days} days × {args.rows_per_day:,} rows, one Parquet file a day; "
             f"median of {args.runs} rounds, pandas backend; the late file adds {late:,} rows to one day)", "",
             "| build | wall s | CPU s | share of the full build |", "| --- | --- | --- | --- |",
             f"| full (all {args.days} partitions) | {med['full_s']:.2f} | {med['full_cpu_s']:.2f} | 1 |",
             f"| one day's partition | {med['one_day_s']:.2f} | {med['one_day_cpu_s']:.2f} | "
             f"{med['one_day_s'] / med['full_s']:.3f} wall, {med['one_day_cpu_s'] / med['full_cpu_s']:.3f} CPU "
             f"(1/{args.days} = {1 / args.days:.3f}) |", "",
             f"The one-day build's detail: `{rounds[0]['one_day_detail']}`."]
    text = "\n".join(lines)
    print(text)
    if args.markdown is not None:
        write_section(text, BEGIN, END, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
