"""The Dask backends on a real 2-worker `distributed.LocalCluster` on 127.0.0.1 (worker
processes, tests/transform/conftest.py), reached the way users reach a cluster: `HEADWATER_DASK_ADDRESS`.

Pipelines run through `engine.Runner` on `dask` and on `pandas` and every model table must be
equal; settings come from env, toml and arguments; missing packages and unreachable schedulers
fail with a HeadwaterError that says what to do; `local` clusters start and stop. Reads are
tested in test_dask_read.py. LocalCUDACluster runs on a GPU machine (here: its clear error).
"""
from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import pytest
from distributed import LocalCluster

from engine import Config, Runner, sources
from engine.demo.generate import generate
from engine.demo.pipeline import make_pipeline
from engine.errors import HeadwaterError
from engine.pipeline import Pipeline
from engine.transform.backends import available, resolve
from engine.transform.backends.dask import cluster_address, task_runner_options
from engine.transform.models import model
from tests.support.dask_cluster import events

FLOAT_RTOL = 1e-9  # sums of float64s may be added up in another order across partitions


def run(pipeline: Pipeline, root: Path, backend: str) -> Runner:
    """Run `pipeline` on `backend` into a lake and warehouse of its own under `root`."""
    config = Config.load(root, lake=str(root / backend / "lake"),
                         warehouse=f"duckdb:///{root / backend / 'wh.duckdb'}", backend=backend)
    runner = Runner(pipeline, config)
    try:
        summary = runner.run()
        assert summary.ok, summary.error
        assert summary.backend == backend
    finally:
        if runner._backend is not None and hasattr(runner._backend[0], "close"):
            runner._backend[0].close()
    return runner


def assert_same_tables(a: Runner, b: Runner, tables: list[str]) -> None:
    """Every table equal row for row (order-insensitive), floats to FLOAT_RTOL."""
    for table in tables:
        left = a.lake.read(table).to_pandas()
        right = b.lake.read(table).to_pandas()
        assert list(left.columns) == list(right.columns), table
        assert len(left) == len(right) > 0, table
        order = list(left.columns)
        pd.testing.assert_frame_equal(left.sort_values(order, ignore_index=True),
                                      right.sort_values(order, ignore_index=True),
                                      check_exact=False, rtol=FLOAT_RTOL, obj=table)


# ---- the photo popularity example ------------------------------------------------------------

def test_photo_popularity_on_dask_equals_pandas(tmp_path: Path, on_cluster: str) -> None:
    generate(tmp_path / "data", seed=3, users=30, photos=60, days=10)
    pipeline = make_pipeline(tmp_path / "data")
    on_pandas, on_dask = run(pipeline, tmp_path, "pandas"), run(pipeline, tmp_path, "dask")
    assert_same_tables(on_pandas, on_dask, [f"models.{m.name}" for m in pipeline.models])


# ---- a pipeline of the same kinds of operations, landed over two runs ---------------------------

def write_events(folder: Path, day: int, rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"day{day}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def day_rows(day: int) -> list[dict[str, Any]]:
    """Views, likes and logins by 5 users; logins have no photo (a null in an integer column)."""
    out = []
    for i in range(40):
        kind = ("view", "like", "login")[i % 3]
        out.append({"user_id": 1 + (i * 7 + day) % 5, "kind": kind,
                    "photo_id": None if kind == "login" else 100 + (i * 3 + day) % 9,
                    "ts": f"2026-03-{day:02d}T{i % 24:02d}:{i % 60:02d}:00Z", "score": i * 0.1 + day / 3})
    return out


def per_user(events: Any, users: Any, ctx: Any) -> Any:
    acts = events[events["kind"].isin(["view", "like"]) & events["photo_id"].notnull()]
    acts = acts.assign(photo_id=acts["photo_id"].astype("int64"), likes=(acts["kind"] == "like").astype("int64"))
    agg = acts.groupby("user_id").agg(likes=("likes", "sum"), acts=("photo_id", "count"),
                                      score=("score", "sum"), first=("ts", "min"), last=("ts", "max"))
    out = users[["user_id", "name"]].merge(agg.reset_index(), on="user_id", how="left")
    out["likes"] = out["likes"].fillna(0).astype("int64")
    out["name_len"] = out["name"].str.len()
    return out.sort_values("user_id").reset_index(drop=True)


def per_day(events: Any, ctx: Any) -> Any:
    ev = events.assign(day=ctx.xp.to_datetime(events["ts"]).dt.floor("D"))
    return ev.groupby(["day", "kind"]).size().rename("events")  # a multi-level index: becomes columns


def top_users(per_user: Any) -> Any:
    return per_user[per_user["likes"] >= 3][["user_id", "name", "likes"]]


def small_pipeline(root: Path) -> Pipeline:
    users = sources.files("users", f"{root}/users/*.csv")
    events = sources.files("events", f"{root}/events/*.jsonl", format="jsonl")
    return Pipeline("small", sources=[users, events], models=[
        model(inputs={"events": "raw.events", "users": "raw.users"})(per_user),
        model(inputs={"events": "raw.events"})(per_day),
        model(inputs={"per_user": "per_user"})(top_users)])


def test_pipeline_on_dask_cluster_equals_pandas_and_hand_counts(tmp_path: Path, on_cluster: str) -> None:
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "u.csv").write_text("user_id,name\n" + "".join(
        f"{u},user-{'x' * u}\n" for u in range(1, 7)))  # user 6 has no events
    pipeline = small_pipeline(tmp_path)
    write_events(tmp_path / "events", 1, day_rows(1))
    run(pipeline, tmp_path, "pandas"), run(pipeline, tmp_path, "dask")
    write_events(tmp_path / "events", 2, day_rows(2))  # a second load: a second Delta file
    on_pandas, on_dask = run(pipeline, tmp_path, "pandas"), run(pipeline, tmp_path, "dask")

    assert_same_tables(on_pandas, on_dask, ["models.per_user", "models.per_day", "models.top_users"])
    assert on_dask.lake.metadata("models.per_user")["backend"] == "dask"
    rows = day_rows(1) + day_rows(2)
    likes = Counter(r["user_id"] for r in rows if r["kind"] == "like")
    got = on_dask.lake.read("models.per_user").to_pandas().set_index("user_id")
    assert got["likes"].to_dict() == {u: likes.get(u, 0) for u in range(1, 7)}
    assert got["name_len"].to_dict() == {u: len(f"user-{'x' * u}") for u in range(1, 7)}
    days = on_dask.lake.read("models.per_day").to_pandas()
    assert sorted(days.columns) == ["day", "events", "kind"]
    assert days["events"].sum() == len(rows)
    raw = on_dask.lake.table("raw.events", on_dask.lake.version("raw.events"))
    assert len(raw.file_uris()) == 2



# ---- clusters, settings and errors ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HEADWATER_DASK_ADDRESS", address)
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(HeadwaterError, match="cannot reach the Dask scheduler") as err:
        resolve("dask", config=Config.load(tmp_path))
    assert address in err.value.message
    assert "HEADWATER_DASK_ADDRESS" in (err.value.hint or "") and "dask scheduler" in (err.value.hint or "")


def test_missing_dask_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)  # as if dask[dataframe] were not installed
    with pytest.raises(HeadwaterError, match="needs dask") as err:
        resolve("dask")
    assert err.value.hint == 'pip install "headwater[dask]"'


@pytest.mark.skipif(importlib.util.find_spec("dask_cudf") is not None, reason="dask-cudf is installed here")
def test_dask_cudf_without_dask_cudf_is_a_clear_error() -> None:
    with pytest.raises(HeadwaterError, match="needs dask-cudf") as err:
        resolve("dask-cudf")
    assert "headwater[dask,gpu]" in (err.value.hint or "")
    assert dask.config.get("dataframe.backend") == "pandas"  # left as it was


def test_settings_from_env_toml_and_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "headwater.toml").write_text('dask_cluster = "local"\n')
    assert Config.load(tmp_path).dask_cluster == "local"
    monkeypatch.setenv("HEADWATER_DASK_CLUSTER", "local-cuda")
    assert Config.load(tmp_path).dask_cluster == "local-cuda"
    monkeypatch.delenv("HEADWATER_DASK_CLUSTER")
    monkeypatch.setenv("HEADWATER_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    with pytest.raises(HeadwaterError, match="both a Dask scheduler address") as err:
        Config.load(tmp_path)  # the toml's cluster and the env's address
    assert "HEADWATER_DASK_CLUSTER" in (err.value.hint or "")
    (tmp_path / "headwater.toml").unlink()
    cfg = Config.load(tmp_path)
    assert cluster_address(cfg) == "tcp://10.0.0.5:8786"
    assert Config.load(tmp_path, dask_address="tcp://other:1").dask_address == "tcp://other:1"
    monkeypatch.delenv("HEADWATER_DASK_ADDRESS")
    assert cluster_address(Config.load(tmp_path)) is None
    monkeypatch.setenv("HEADWATER_DASK_CLUSTER", "k8s")
    with pytest.raises(HeadwaterError, match="unknown Dask cluster 'k8s'") as err:
        Config.load(tmp_path)
    assert "local, local-cuda" in (err.value.hint or "")


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")  # another cluster on this machine
def test_local_cluster_is_started_and_stopped(tmp_path: Path) -> None:
    backend, reason = resolve("dask", config=Config.load(tmp_path, dask_cluster="local"))
    try:
        assert "LocalCluster" in reason
        started = backend.cluster.cluster
        assert started.status.name == "running" and started.scheduler_address.startswith("tcp://")
        frame = backend.from_arrow(events())
        assert backend.to_arrow(frame[["id"]]).num_rows == events().num_rows
    finally:
        backend.close()
    assert started.status.name == "closed"
    backend.close()  # twice is fine


def test_local_cuda_cluster(tmp_path: Path) -> None:
    config = Config.load(tmp_path, dask_cluster="local-cuda")
    if importlib.util.find_spec("dask_cuda") is None:
        with pytest.raises(HeadwaterError, match="needs dask-cuda") as err:
            resolve("dask", config=config)
        assert "headwater[dask,gpu]" in (err.value.hint or "")
        return
    from engine.transform.backends.detect import gpu_info

    backend, reason = resolve("dask", config=config)
    try:
        assert "LocalCUDACluster" in reason
        assert len(backend.cluster.client.scheduler_info(n_workers=-1)["workers"]) == gpu_info()["count"]
    finally:
        backend.close()


def test_prefect_dask_task_runner_options(tmp_path: Path) -> None:
    prefect_dask = pytest.importorskip("prefect_dask")
    runner = prefect_dask.DaskTaskRunner(**task_runner_options(Config.load(tmp_path, dask_address="tcp://h:8786")))
    assert runner.address == "tcp://h:8786"
    local = prefect_dask.DaskTaskRunner(**task_runner_options(Config.load(tmp_path, dask_cluster="local")))
    assert local.resolved_cluster_class is LocalCluster  # DaskTaskRunner imports the class it is named
    cuda = task_runner_options(Config.load(tmp_path, dask_cluster="local-cuda"))
    assert cuda == {"cluster_class": "dask_cuda.LocalCUDACluster"}
    if importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        assert prefect_dask.DaskTaskRunner(**cuda).resolved_cluster_class is LocalCUDACluster
    assert task_runner_options(Config.load(tmp_path)) == {}


def test_available_lists_dask_here() -> None:
    names = available()
    assert names[0] == "pandas" and "dask" in names
    assert ("dask-cudf" in names) == (importlib.util.find_spec("dask_cudf") is not None and "cudf" in names)




def test_dask_settings_hold_while_the_backend_lives() -> None:
    before = dask.config.get("dataframe.convert-string", None)
    backend, reason = resolve("dask")  # no address, no cluster: dask's own scheduler
    try:
        assert "local threaded scheduler" in reason
        frame = backend.from_arrow(events())
        assert str(frame.dtypes["kind"]) == "str" == str(events().to_pandas().dtypes["kind"])
        assert frame["kind"].str.len().compute().isna().sum() == 2  # NaN, as pandas 3 gives for str
    finally:
        backend.close()
    assert dask.config.get("dataframe.convert-string", None) == before
