"""Round-robin measurement: each engine runs in a fresh process, once per round; a round's
outputs must be equal across engines before any of its times is recorded.

Wall time is taken here around the child process (interpreter start and imports included);
stage seconds, CPU seconds and peak RSS are the child's own (`stages.py`).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.elt_h import data
from bench.elt_h.child import check_engine
from bench.elt_h.compare import check_equal
from engine.errors import HeadwaterError

ROOT = Path(__file__).resolve().parents[2]


def run_child(engine: str, fmt: str, scale: float, workdir: Path) -> dict[str, Any]:
    """One run of `engine` in a fresh Python process; its measurements plus the wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.elt_h.child", engine, fmt, f"{scale:g}", str(workdir)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise HeadwaterError(f"ELT-H run of {engine} on {fmt} at SF{scale:g} failed: "
                             f"{done.stderr.strip()[-1500:]}", "run `python -m bench.elt_h.child "
                             f"{engine} {fmt} {scale:g} /tmp/elt_h` to see the whole error")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": round(wall, 4)}


def measure(scales: list[float], formats: list[str], engines: list[str], runs: int,
            workroot: Path, log: Any = None, keep: bool = False, budget_s: float | None = None,
            after_round: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Every (scale, format) measured `runs` rounds; each round runs every engine once, in a
    rotated order, checks their outputs are equal, then records their measurements. Each run's
    lake and warehouse are removed after its round unless `keep` (then the last round's stay
    under `workroot/sf<N>-<format>-<engine>/`). No round starts once `budget_s` seconds have
    passed; `after_round(records so far)` is called after each round (to save them as they come)."""
    started = time.perf_counter()
    if runs < 1:
        raise HeadwaterError(f"--runs {runs} is below 1", "pass --runs 3 (or more) for a median and range")
    for engine in engines:
        check_engine(engine)
    records = []
    for scale in scales:
        for fmt in formats:
            data.paths(scale, fmt)  # generate before timing anything
            for round_ in range(runs):
                if budget_s is not None and time.perf_counter() - started > budget_s:
                    if log:
                        print(f"SF{scale:g} {fmt}: time budget of {budget_s:.0f}s spent, no more rounds",
                              file=log, flush=True)
                    return records
                order = engines[round_ % len(engines):] + engines[:round_ % len(engines)]
                round_records, warehouses = [], {}
                for engine in order:
                    workdir = workroot / f"sf{scale:g}-{fmt}-{engine.replace(':', '-')}"
                    shutil.rmtree(workdir, ignore_errors=True)
                    result = run_child(engine, fmt, scale, workdir)
                    warehouses[engine] = workdir / "warehouse.duckdb"
                    round_records.append({"scale": scale, "format": fmt, "engine": engine, "run": round_,
                                          **result})
                    if log:
                        print(f"SF{scale:g} {fmt} run {round_ + 1}/{runs} {engine}: {result['wall_s']:.2f}s wall, "
                              f"land {result['land_s']:.2f}s transform {result['transform_s']:.2f}s "
                              f"publish {result['publish_s']:.2f}s, peak {result['peak_rss_mb']:.0f} MB",
                              file=log, flush=True)
                check_equal({e: warehouses[e] for e in engines})  # before any of the round's times count
                records += round_records
                if after_round is not None:
                    after_round(records)
                for engine in engines if not keep else ():
                    shutil.rmtree(warehouses[engine].parent, ignore_errors=True)
    return records


def versions() -> dict[str, str]:
    """Versions of Python and of every engine's libraries that are installed."""
    import importlib

    import engine

    out = {"python": platform.python_version(), "headwater": engine.__version__}
    for name in ("pandas", "pyarrow", "deltalake", "duckdb", "polars", "cudf"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:  # polars is not needed on a GPU machine, cudf only there
            pass
    return out


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, memory, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 ** 2
    except OSError:
        mem = 0.0
    gpu = ""
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
        gpu = f", GPU: {name}" if name else ""
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB{gpu}"


def session(command: str, scales: list[float]) -> dict[str, Any]:
    """What the report says about this measurement session."""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "versions": versions(), "command": command,
            "data": {f"{s:g}": data.manifest(s) for s in scales}}
