"""ELT-H out of core: the ELT-H models at a large TPC-H scale on the `dask` backend, each worker
under a memory limit, and the peak memory of landing the sources.

    python -m bench.elt_h.out_of_core --scale 10 [--workers 2 --memory-limit 4GB] [--workdir DIR] [--record]

1. The normalised Parquet of the scale (`bench/elt_h/data.py`, generated or from the cache).
2. Land: a fresh process runs the ELT-H pipeline's loads only (pandas backend) into a new lake;
   its peak RSS is read from the OS.
3. Transform and publish: a `distributed.LocalCluster` on 127.0.0.1 (`--workers` processes of
   one thread, `--memory-limit` each), and a fresh process that connects to it (`dask_address`)
   and builds and publishes the three models on backend "dask", while each worker's resident
   memory is sampled;
   reported per worker: the kernel's high-water mark (VmHWM), the sampled maximum and the bytes
   written to disk (spill and shuffle); and the client process's own peak RSS.
4. Equality: DuckDB SQL (`queries.SQL`) over the same Parquet files, compared with the warehouse
   by `compare.check_equal`.

Prints one JSON object with every measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.elt_h import data, queries
from bench.elt_h.compare import check_equal
from bench.elt_h.measure import machine, versions
from bench.elt_h.peers.duckdb_sql import reader
from bench.elt_h.report import write_markdown
from bench.elt_h.stages import peak_rss_mb, publish_duckdb
from engine.errors import HeadwaterError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_S = 0.5  # how often each worker's RSS is sampled
RESULTS_JSON = ROOT / "bench" / "out_of_core_results.json"
START, END = "<!-- sf10-dask:start -->", "<!-- sf10-dask:end -->"
LAND_BAR_MB = 1500  # issue 6: landing peak RSS at SF10 under 1.5 GB


def _config(workdir: Path, **settings: Any) -> Any:
    from engine import Config

    return Config.load(workdir, lake=str(workdir / "lake"), warehouse=f"duckdb:///{workdir / 'warehouse.duckdb'}",
                       **settings)


def _pipeline(scale: float) -> Any:
    from bench.elt_h import headwater_job

    return headwater_job.pipeline(data.paths(scale, "parquet"), data.schemas(scale), "parquet")


def _failed(summary_error: str | None, stage: str) -> None:
    if summary_error:
        raise HeadwaterError(f"the out-of-core {stage} failed: {summary_error}", "see the step's error above")


def land(scale: float, workdir: Path) -> dict[str, Any]:
    """Land the ELT-H sources of `scale` into `workdir/lake` with the pandas backend (loads only);
    seconds and rows per source, and this process's peak RSS in MB."""
    from engine import Runner

    pipeline = _pipeline(scale)
    runner = Runner(pipeline, _config(workdir, backend="pandas"))
    summary = runner.run(select=[f"raw.{s.name}" for s in pipeline.sources])
    _failed(summary.error, "landing")
    return {"seconds": {s.name: s.seconds for s in summary.steps}, "rows": {s.name: s.rows for s in summary.steps},
            "files": {s.name: len(runner.lake.table(f"raw.{s.name}").file_uris()) for s in summary.steps},
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def _spilled_bytes(dask_worker: Any) -> int:
    """Bytes this worker has written to local disk since it started: spilled data and p2p
    shuffle buffers (every `disk-write` bytes metric)."""
    return int(sum(v for k, v in dask_worker.digests_total.items()
                   if isinstance(k, tuple) and k[-2:] == ("disk-write", "bytes")))


class WorkerMemory:
    """Samples the RSS of each worker process of a local cluster every `SAMPLE_S` seconds on a
    thread, keeping the maximum; `stop()` adds each worker's own high-water mark and spill."""

    def __init__(self, client: Any) -> None:
        import psutil

        self.client = client
        self.pids: dict[str, int] = client.run(os.getpid)
        self.procs = {addr: psutil.Process(pid) for addr, pid in self.pids.items()}
        self.sampled = {addr: 0 for addr in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="worker-memory")
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while True:
            for addr, proc in self.procs.items():
                try:
                    self.sampled[addr] = max(self.sampled[addr], proc.memory_info().rss)
                except psutil.Error:  # the nanny restarted it: the end report says so
                    pass
            if self._stop.wait(SAMPLE_S):
                return

    def stop(self) -> dict[str, dict[str, Any]]:
        """Per worker address: peak RSS (VmHWM and sampled) in MB, MB spilled, and whether it is
        still the same process (a worker killed for memory is restarted by its nanny)."""
        self._stop.set()
        self._thread.join()
        pids = self.client.run(os.getpid)
        hwm = self.client.run(peak_rss_mb)  # each worker's VmHWM
        spilled = self.client.run(_spilled_bytes)
        return {addr: {"pid": pid, "restarted": pids.get(addr) != pid,
                       "peak_rss_mb": round(hwm.get(addr, 0.0), 1),
                       "sampled_peak_mb": round(self.sampled[addr] / 2**20, 1),
                       "spilled_mb": round(spilled.get(addr, 0) / 2**20, 1)}
                for addr, pid in self.pids.items()}


def transform(scale: float, workdir: Path, address: str) -> dict[str, Any]:
    """Build and publish the ELT-H models from `workdir/lake` on backend "dask" against the
    scheduler at `address`; seconds per step, per-worker memory, and this (client) process's
    peak RSS."""
    from distributed import Client

    from engine import Runner
    from engine.runs.steps import new_run_id

    pipeline = _pipeline(scale)
    with Client(address) as client:
        monitor = WorkerMemory(client)
        runner = Runner(pipeline, _config(workdir, backend="dask", dask_address=address))
        run_id, steps = new_run_id(), []
        try:
            for m in pipeline.ordered_models:
                steps.append(runner.build(m.name, run_id, full_refresh=True))
                _failed(steps[-1].detail if steps[-1].status == "failed" else None, f"build of {m.name}")
                steps.append(runner.publish(m.name, run_id))
                _failed(steps[-1].detail if steps[-1].status == "failed" else None, f"publish of {m.name}")
        finally:
            runner.close()
            memory = monitor.stop()
    return {"seconds": {f"{s.kind} {s.name}": s.seconds for s in steps},
            "rows": {s.name: s.rows for s in steps if s.kind == "publish"},
            "workers": memory, "client_peak_rss_mb": round(peak_rss_mb(), 1)}


def duckdb_peer(scale: float, warehouse: Path) -> None:
    """The ELT-H outputs by DuckDB SQL over the source Parquet files, written to `warehouse`."""
    schemas = data.schemas(scale)
    con = duckdb.connect()
    try:
        for table, path in data.paths(scale, "parquet").items():
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {reader(path, schemas[table], 'parquet')}").fetchall()
        outputs = {name: con.sql(sql).to_arrow_table() for name, sql in queries.SQL.items()}
    finally:
        con.close()
    publish_duckdb(warehouse, outputs)


def _child(stage: str, scale: float, workdir: Path, address: str = "") -> dict[str, Any]:
    """Run one stage in a fresh Python process; its JSON result plus the wall seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "bench.elt_h.out_of_core", "--stage", stage, "--scale", f"{scale:g}",
           "--workdir", str(workdir)] + (["--address", address] if address else [])
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise HeadwaterError(f"the out-of-core {stage} stage at SF{scale:g} failed: {done.stderr.strip()[-2000:]}",
                             "run `" + " ".join(cmd[1:]) + "` to see the whole error")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": round(time.perf_counter() - started, 2)}


def run(scale: float, workdir: Path, workers: int = 2, memory_limit: str = "4GB") -> dict[str, Any]:
    """The whole out-of-core benchmark at `scale` under `workdir` (see the module docstring)."""
    if workers < 1:
        raise HeadwaterError(f"--workers {workers} is not positive", "pass --workers 2")
    from dask.utils import parse_bytes

    try:
        limit = parse_bytes(memory_limit)
    except ValueError as exc:
        raise HeadwaterError(f"--memory-limit {memory_limit!r} is not a size ({exc})", "pass e.g. 4GB") from exc
    started = time.perf_counter()
    data.ensure(scale)
    result: dict[str, Any] = {"machine": machine(), "versions": versions(), "scale": scale, "workers": workers,
                              "memory_limit": memory_limit,
                              "memory_limit_mb": round(limit / 2**20, 1),
                              "data_s": round(time.perf_counter() - started, 2)}
    result["land"] = _child("land", scale, workdir)
    from distributed import LocalCluster

    # The scheduler and the workers' nannies live here, not in the process that builds the models
    # (as with a real `dask scheduler`): on Python 3.11 an in-process scheduler can deadlock the
    # client on dask-expr's cached properties (functools.cached_property holds a class-wide lock).
    with LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster:
        result["dask"] = _child("dask", scale, workdir, cluster.scheduler_address)
    started = time.perf_counter()
    duckdb_peer(scale, workdir / "duckdb.duckdb")
    result["duckdb_s"] = round(time.perf_counter() - started, 2)
    result["equal_rows"] = check_equal({"duckdb": workdir / "duckdb.duckdb",
                                        "headwater:dask": workdir / "warehouse.duckdb"})
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    """The RESULTS.md section for `results` (one per scale), between the sf10-dask markers."""
    lines = [START, "## ELT-H out of core: the dask backend under a per-worker memory limit", "",
             "Sources landed by Headwater (pandas backend, loads only) in a fresh process; the three ELT-H "
             "models built and published (DuckDB) on backend `dask` by a fresh process connected to a "
             "`LocalCluster` on 127.0.0.1 (one thread per worker); outputs compared with DuckDB SQL on the "
             "same Parquet files (sorted, floats to rel 1e-9). Worker peak = the worker process's VmHWM "
             f"(kernel high-water mark); sampled = the largest RSS seen every {SAMPLE_S} s; to disk = bytes "
             "the worker wrote to local disk (spilled data and p2p shuffle buffers, dask's `disk-write` "
             "metric). Seconds are each step's own (`Step.seconds`).", ""]
    for r in results:
        bar = r["memory_limit_mb"]
        land, dask = r["land"], r["dask"]
        lines += [f"### SF {r['scale']:g}", "",
                  f"Measured {r['date']} on {r['machine']}; "
                  + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) + ".",
                  "", f"`{r['command']}`", "",
                  "| stage | seconds |", "| --- | ---: |",
                  f"| data (generate or reuse the cache) | {r['data_s']:.1f} |"]
        lines += [f"| land {name} ({land['rows'][name]:,} rows → {land['files'][name]} lake files) | {sec:.1f} |"
                  for name, sec in land["seconds"].items()]
        lines += [f"| {step} | {sec:.1f} |" for step, sec in dask["seconds"].items()]
        lines += [f"| DuckDB SQL on the same files (the check) | {r['duckdb_s']:.1f} |", "",
                  f"| worker | peak RSS (MB) | sampled peak (MB) | vs the {bar:,.0f} MB limit | to disk (MB) "
                  "| restarted |",
                  "| --- | ---: | ---: | --- | ---: | --- |"]
        lines += [f"| {i} | {w['peak_rss_mb']:,.0f} | {w['sampled_peak_mb']:,.0f} | "
                  f"{'under' if w['peak_rss_mb'] < bar else '**over**'} ({w['peak_rss_mb'] / bar:.0%}) | "
                  f"{w['spilled_mb']:,.0f} | {'yes' if w['restarted'] else 'no'} |"
                  for i, w in enumerate(dask["workers"].values(), 1)]
        lines += ["", f"Client (model-building) process peak RSS: {dask['client_peak_rss_mb']:,.0f} MB. "
                  f"Landing process peak RSS: {land['peak_rss_mb']:,.0f} MB "
                  f"({'under' if land['peak_rss_mb'] < LAND_BAR_MB else '**over**'} the {LAND_BAR_MB:,} MB bar). "
                  "Outputs equal DuckDB's: "
                  + ", ".join(f"{k} {v:,} rows" for k, v in r["equal_rows"].items()) + ".", ""]
    return "\n".join(lines + [END])


def record(result: dict[str, Any], command: str, results_md: Path = ROOT / "bench" / "RESULTS.md",
           results_json: Path = RESULTS_JSON) -> None:
    """Keep `result` in bench/out_of_core_results.json (replacing its scale's) and rewrite the
    RESULTS.md section from all kept results (appended at the end the first time)."""
    from datetime import datetime, timezone

    result = {**result, "command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    kept = json.loads(results_json.read_text()) if results_json.exists() else []
    kept = sorted([k for k in kept if k["scale"] != result["scale"]] + [result], key=lambda k: k["scale"])
    results_json.write_text(json.dumps(kept, indent=1) + "\n")
    write_markdown(results_md, markdown(kept), START, END)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.elt_h.out_of_core", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="TPC-H scale factor")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    parser.add_argument("--memory-limit", default="4GB", help="memory limit of each worker")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the lake and warehouses go (default: a temp dir)")
    parser.add_argument("--record", action="store_true",
                        help="keep the result in bench/out_of_core_results.json and bench/RESULTS.md")
    parser.add_argument("--stage", choices=("land", "dask"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)  # --stage dask: the scheduler
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.stage == "land":
            out = land(args.scale, args.workdir)
        elif args.stage == "dask":
            out = transform(args.scale, args.workdir, args.address)
        elif args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            out = run(args.scale, args.workdir, args.workers, args.memory_limit)
        else:
            with tempfile.TemporaryDirectory(prefix="headwater-ooc-") as tmp:
                out = run(args.scale, Path(tmp), args.workers, args.memory_limit)
    except HeadwaterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.record and args.stage is None:
        record(out, "python -m bench.elt_h.out_of_core " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
