"""Runs the photo-popularity demo on two backends (default: pandas and cudf) and checks that
every model's output is the same, order-insensitive, floats to rel 1e-9; prints the timings.

    python bench/gpu_demo_check.py [--backends pandas,cudf] [--photos N] [--users N] [--log-days N]

On a machine without a GPU, `--backends pandas,pandas` checks the script itself.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from engine import Config, Lake, Runner
from engine.demo.generate import generate
from engine.demo.pipeline import make_pipeline
from engine.runs.compare import differences


def run(data: Path, root: Path, backend: str) -> tuple[dict[str, pa.Table], dict[str, float]]:
    """Every model's output and each step's seconds, for one backend."""
    config = Config(lake=str(root / "lake"), warehouse=f"duckdb:///{root / 'wh.duckdb'}", backend=backend)
    summary = Runner(make_pipeline(data), config).run()
    if not summary.ok:
        raise SystemExit(f"{backend}: {summary.error}")
    lake = Lake(config.lake)
    outputs = {t: lake.read(t) for t in lake.tables() if t.startswith("models.")}
    return outputs, {f"{s.kind} {s.name}": s.seconds for s in summary.steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="pandas,cudf")
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--log-days", type=int, default=21)
    args = parser.parse_args()
    first, second = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(data, photos=args.photos, users=args.users, days=args.log_days)
        started = time.perf_counter()
        out_a, secs_a = run(data, Path(tmp) / "a", first)
        out_b, secs_b = run(data, Path(tmp) / "b", second)
        print(f"both runs in {time.perf_counter() - started:.1f} s")
    failed = False
    for table, frame in out_a.items():
        diff = differences(frame, out_b[table])  # every column sorted, floats within FLOAT_RTOL
        failed |= bool(diff)
        print(f"{table:<28} {frame.num_rows:>8} rows  {'SAME' if not diff else 'DIFFERENT: ' + '; '.join(diff)}")
    print(f"{'step':<32} {first:>10} {second:>10}")
    for step, seconds in secs_a.items():
        print(f"{step:<32} {seconds:>10.3f} {secs_b[step]:>10.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
