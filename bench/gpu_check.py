"""Check the cuDF backend against pandas on one synthetic Delta table: same results, and the speed-up.

On the GPU machine (cuDF under /tmp/site, offline):
    PYTHONPATH=/tmp/site python bench/gpu_check.py                # 4M rows, both backends
On a CPU, to check the script itself:
    python bench/gpu_check.py --backends pandas --rows 100000

It writes a partitioned Delta table of events (timestamps with and without tz, strings, nulls) and a
users table in a temporary folder, reads both with each backend, runs one groupby/merge/filter
workload, compares every result across backends (order-insensitive, floats to rtol 1e-9), and prints
timings. Exit status 1 when a result differs. It writes nothing outside the temporary folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.lake import delta_schema  # noqa: E402
from engine.transform.backends import gpu_info  # noqa: E402
from engine.transform.backends.base import Backend  # noqa: E402

KINDS = ["like", "view", "share", "comment", "save", "report"]
DAY_US = 86_400_000_000
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
RESULT_KEYS = {"features": ["user_id"], "by_country": ["country"], "per_day_kind": ["day", "kind"],
               "picked": ["event_id"]}


def strings(rng: np.random.Generator, codes: np.ndarray, vocab: list[str],
            null_rate: float = 0.0) -> pa.Array:
    """`vocab[codes]` as a plain string array, with about `null_rate` of it null."""
    mask = rng.random(len(codes)) < null_rate if null_rate else None
    indices = pa.array(codes.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(vocab)).cast(pa.string())


def synthetic(rows: int, days: int, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    """Events (partitioned by day later) and the users they refer to."""
    rng = np.random.default_rng(seed)
    n_users = max(rows // 40, 10)
    kind = rng.integers(0, len(KINDS), rows)
    day = rng.integers(0, days, rows)
    at = START_US + day * DAY_US + rng.integers(0, DAY_US, rows)
    user = rng.integers(0, n_users, rows)
    amount = np.round(rng.normal(50.0, 30.0, rows), 2)
    events = pa.table({
        "event_id": pa.array(np.arange(rows, dtype=np.int64)),
        "user_id": pa.array(user.astype(np.int64)),
        "kind": strings(rng, kind, KINDS),
        "amount": pa.array(amount, mask=(kind == 1) & (rng.random(rows) < 0.1)),  # nulls on views only
        "at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "local_at": pa.array(at + 3_600_000_000, pa.timestamp("us"), mask=rng.random(rows) < 0.02),
        "note": strings(rng, user % 1000, [f"n{i}" for i in range(1000)], null_rate=0.03),
        "day": strings(rng, day, [f"2024-01-{d + 1:02d}" for d in range(days)]),
    })
    users = pa.table({
        "user_id": pa.array(np.arange(n_users, dtype=np.int64)),
        "country": strings(rng, rng.integers(0, 20, n_users), [f"C{i:02d}" for i in range(20)]),
        "signup": pa.array(START_US - rng.integers(0, 400 * DAY_US, n_users), pa.timestamp("us")),
        "tier": pa.array(rng.integers(0, 5, n_users).astype(np.int32), mask=rng.random(n_users) < 0.2),
    })
    return events, users


def write_lake(root: Path, events: pa.Table, users: pa.Table,
               commits: int = 4) -> tuple[DeltaTable, DeltaTable]:
    """Events in `commits` appends, partitioned by day; users in one commit."""
    step = -(-events.num_rows // commits)
    for i in range(commits):
        write_deltalake(str(root / "events"), events.slice(i * step, step), mode="append",
                        partition_by=["day"])
    write_deltalake(str(root / "users"), users)
    return DeltaTable(str(root / "events")), DeltaTable(str(root / "users"))


def workload(ev: Any, users: Any) -> dict[str, Any]:
    """One model's worth of work, written once for pandas and cuDF frames alike."""
    likes = ev[ev["kind"] == "like"]
    per_user = likes.groupby("user_id").agg({"event_id": "count", "amount": "sum", "local_at": "max"})
    per_user.columns = ["likes", "like_amount", "last_like"]
    features = users.merge(per_user.reset_index(), on="user_id", how="left")
    by_country = features.groupby("country").agg({"likes": "sum", "like_amount": "sum", "tier": "max"})
    per_day_kind = ev.groupby(["day", "kind"]).agg({"amount": "mean", "event_id": "count"})
    picked = ev[ev["note"].str.startswith("n1") & (ev["amount"] > 80.0)]
    picked = picked[["event_id", "user_id", "note", "at", "day"]]
    return {"features": features, "by_country": by_country, "per_day_kind": per_day_kind, "picked": picked}


def run(backend: Backend, tables: tuple[DeltaTable, DeltaTable], repeat: int) -> dict[str, Any]:
    """Timings (every repeat) and the results and reads of the last repeat, as Arrow."""
    reads, works = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ev, users = backend.read(tables[0]), backend.read(tables[1])
        t1 = time.perf_counter()
        results = {k: backend.to_arrow(v) for k, v in workload(ev, users).items()}  # to host: work is done
        t2 = time.perf_counter()
        reads.append(t1 - t0)
        works.append(t2 - t1)
    results["read:events"], results["read:users"] = backend.to_arrow(ev), backend.to_arrow(users)
    return {"read": reads, "work": works, "results": results}


def stored(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` cast to the lake's storage types (pandas turns nullable ints into floats)."""
    return pa.table([table[f.name].cast(f.type) for f in schema], schema=schema)


def compare(name: str, a: pa.Table, b: pa.Table, keys: list[str],
            labels: tuple[str, str] = ("a", "b")) -> list[str]:
    """What differs between two results, ignoring row order; floats within rtol 1e-9."""
    if "index" in a.column_names + b.column_names:  # row labels of a filtered frame: not data
        print(f"  note: {name}: row index came back as column 'index' "
              f"on {[n for n, t in zip(labels, (a, b)) if 'index' in t.column_names]}; ignored")
        a, b = (t.drop_columns(["index"]) if "index" in t.column_names else t for t in (a, b))
    if set(a.column_names) != set(b.column_names):
        return [f"{name}: columns {a.column_names} vs {b.column_names}"]
    if a.num_rows != b.num_rows:
        return [f"{name}: {a.num_rows} rows vs {b.num_rows}"]
    a, b = a.sort_by([(k, "ascending") for k in keys]), b.sort_by([(k, "ascending") for k in keys])
    problems = []
    for col in a.column_names:
        x, y = a[col], b[col]
        numeric = [pa.types.is_integer(c.type) or pa.types.is_floating(c.type) for c in (x, y)]
        if all(numeric):
            xs, ys = (c.cast(pa.float64()).to_numpy(zero_copy_only=False) for c in (x, y))
            bad = int((~np.isclose(xs, ys, rtol=1e-9, atol=0.0, equal_nan=True)).sum())
        elif pa.types.is_timestamp(x.type) and pa.types.is_timestamp(y.type):
            if x.type.tz != y.type.tz:
                problems.append(f"{name}.{col}: time zone {x.type.tz} vs {y.type.tz}")
            xs, ys = (pc.cast(c.cast(pa.timestamp("us", c.type.tz)), pa.int64()) for c in (x, y))
            differ = pc.or_(pc.fill_null(pc.not_equal(xs, ys), False), pc.xor(pc.is_null(xs), pc.is_null(ys)))
            bad = int(pc.sum(differ).as_py() or 0)
        else:
            target = pa.string() if pa.types.is_large_string(x.type) else x.type
            bad = 0 if x.cast(target).equals(y.cast(target)) else -1
        if bad:
            count = bad if bad > 0 else "some"
            problems.append(f"{name}.{col}: {count} values differ ({x.type} vs {y.type})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--days", type=int, default=8, help="partitions of the events table")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="pandas,cudf")
    args = parser.parse_args()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    backends: dict[str, Backend] = {}
    for name in names:
        if name == "cudf":
            from engine.transform.backends.cudf import CudfBackend
            backends[name] = CudfBackend()
        else:
            from engine.transform.backends.pandas import PandasBackend
            backends[name] = PandasBackend()
    info = gpu_info()
    print(f"gpu: {', '.join(info.get('names', [])) or info.get('error')}  driver {info.get('driver', '-')}")
    if "cudf" in backends:
        print(f"cudf {backends['cudf'].xp.__version__}")
    with tempfile.TemporaryDirectory(prefix="headwater-gpu-check-") as tmp:
        t0 = time.perf_counter()
        events, users = synthetic(args.rows, args.days)
        tables = write_lake(Path(tmp), events, users)
        print(f"lake: {args.rows:,} events in {len(tables[0].file_uris())} files, "
              f"{users.num_rows:,} users; written in {time.perf_counter() - t0:.1f}s")
        runs = {name: run(backend, tables, args.repeat) for name, backend in backends.items()}
        schemas = {f"read:{t}": delta_schema(pa.schema(dt.schema().to_arrow()))
                   for t, dt in zip(("events", "users"), tables)}
    print(f"{'backend':8} {'read first':>11} {'read best':>10} {'work first':>11} {'work best':>10}")
    for name, r in runs.items():
        read, work = r["read"], r["work"]
        print(f"{name:8} {read[0]:11.3f} {min(read):10.3f} {work[0]:11.3f} {min(work):10.3f}")
    if len(runs) < 2:
        print("one backend only: nothing to compare")
        return 0
    (base, a), (other, b) = list(runs.items())[:2]
    for step in ("read", "work"):
        print(f"speed-up {base}/{other} {step}: {min(a[step]) / min(b[step]):.1f}x")
    total = (min(a["read"]) + min(a["work"])) / (min(b["read"]) + min(b["work"]))
    print(f"speed-up {base}/{other} read+work: {total:.1f}x")
    problems = []
    for key, ta in a["results"].items():
        tb = b["results"][key]
        if key in schemas:
            ta, tb = stored(ta, schemas[key]), stored(tb, schemas[key])
        keys = RESULT_KEYS.get(key, ["event_id" if key == "read:events" else "user_id"])
        problems += compare(key, ta, tb, keys, (base, other))
    print("results: " + ("all equal" if not problems else "DIFFER"))
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
