"""Shared test settings (no telemetry, no stray Headwater settings from the environment) and the
fixtures that tests in several folders use: a PostgreSQL server, an S3 server, the small shop
pipeline's folder, one Prefect server for the session. Their helpers are in tests/support/. A
folder's own fixtures are in its conftest.py.

Every test session loads this file, including bench/gpu_session.sh's on a GPU machine that
lacks some test dependencies, so SQLAlchemy, Prefect (slow to import) and boto3 (in
tests/support/s3.py) are imported where they are used, not here.
"""
from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pg import Cluster, pg_bin_dir
from tests.support.processes import ROOT, start, stop
from tests.support.processes import free_port as free_loopback_port
from tests.support.s3 import S3Server, admin_key, free_port, moto_command, require_auth, wait_until_up

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _clean_headwater_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set HEADWATER_* themselves; the developer's shell must not leak in."""
    for var in ("HEADWATER_LAKE", "HEADWATER_WAREHOUSE", "HEADWATER_BACKEND", "HEADWATER_DEBUG",
                "HEADWATER_FAULT", "HEADWATER_DASK_ADDRESS", "HEADWATER_DASK_CLUSTER", "HEADWATER_SQL_ENGINE"):
        monkeypatch.delenv(var, raising=False)


# PostgreSQL (tests/support/pg.py): sources, publish and docker tests


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A superuser SQLAlchemy URL of a PostgreSQL server for this test session."""
    if os.environ.get("HEADWATER_TEST_PG_URL"):
        yield os.environ["HEADWATER_TEST_PG_URL"]
        return
    bindir = pg_bin_dir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql; "
                    "install postgresql or set HEADWATER_TEST_PG_URL")
    user = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to run PostgreSQL as; "
                        "install postgresql (it creates one) or set HEADWATER_TEST_PG_URL")
        user = "postgres"
    base = os.environ.get("HEADWATER_TEST_PG_ROOT") or None
    if base:
        os.makedirs(base, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="hwpg-", dir=base))
    if user:
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = Cluster(bindir, root, user)
    try:
        url = cluster.start()
        yield url
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL of a fresh, empty database on the session's server, dropped after the test."""
    import sqlalchemy as sa

    name = f"hw_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# S3 (tests/support/s3.py): lake, transform (Dask reads) and docker tests


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A running moto S3 server on 127.0.0.1 that checks credentials; stopped after the session."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(moto_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(endpoint, proc)
        key, secret = admin_key(endpoint)
        require_auth(endpoint)
        yield S3Server(endpoint, key, secret)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket for one test; its name."""
    name = f"hw-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


# The shop pipeline's folder (tests/support/shop.py): runs and cli tests. The flow tests have a
# shop pipeline of their own (`flow_shop`, tests/flows/conftest.py).


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "day1.csv").write_text(
        "order_id,customer_id,amount\n1,1,10.5\n2,1,4.5\n3,2,7.0\n4,3,1.0\n")
    con = sqlite3.connect(tmp_path / "shop.sqlite")
    con.execute("create table customers (id integer primary key, country text)")
    con.executemany("insert into customers values (?, ?)", [(1, "fr"), (2, "de"), (3, "fr")])
    con.commit()
    con.close()
    return tmp_path


# Prefect: the flow tests (tests/flows/) and whatever else needs an API to talk to


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One `prefect server start` on a free loopback port for the whole session, with its own
    PREFECT_HOME; in-process Prefect points at it for the session. Yields its API `url`, the `env`
    that points a subprocess at it (no stray PREFECT_*/HEADWATER_* settings) and a `root` folder
    for the session's Prefect files. In-process log and event workers are drained, and any worker
    a test started is stopped by that test, before the server stops."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("prefect")
    url = f"http://127.0.0.1:{free_loopback_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HEADWATER_"))}
    env.update({"PREFECT_HOME": str(root / "home"), "PREFECT_API_URL": url, "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc = start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
                 env, root / "server.log")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (f"`prefect server start` exited with {proc.returncode} before "
                                         f"{url}/health answered; its log:\n" + (root / "server.log").read_text())
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (f"no answer from {url}/health after 90 s; the server's log:\n"
                                                 + (root / "server.log").read_text())
            time.sleep(0.5)
        # temporary_settings reaches this thread's context (and the threads Prefect starts with a
        # copy of it); a thread a test starts itself begins with an empty context and reads the
        # process-global settings, so those point at the server too, as prefect_test_harness does
        # (without it, such a thread starts an ephemeral server of its own).
        with temporary_settings(updates={PREFECT_API_URL: url}), \
                _temporary_global_settings_context(get_settings_context()):
            try:
                yield {"url": url, "env": env, "root": root}
            finally:  # what in-process flows still have to send goes before the server stops
                APILogWorker.drain_all(timeout=10)
                EventsWorker.drain_all(timeout=10)
    finally:
        stop(proc)
