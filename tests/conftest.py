"""Shared test settings (no telemetry, no stray Headwater settings from the environment) and the
fixtures that tests in several folders use: a PostgreSQL server, an S3 server, the small shop
pipeline's folder. Their helpers are in tests/support/. A folder's own fixtures are in its
conftest.py.

Every test session loads this file, including bench/gpu_session.sh's on a GPU machine that
lacks some test dependencies, so SQLAlchemy (and boto3, in tests/support/s3.py) are imported
where they are used, not here.
"""
from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import Cluster, pg_bin_dir
from tests.support.s3 import S3Server, admin_key, free_port, moto_command, require_auth, wait_until_up

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _clean_headwater_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set HEADWATER_* themselves; the developer's shell must not leak in."""
    for var in ("HEADWATER_LAKE", "HEADWATER_WAREHOUSE", "HEADWATER_BACKEND", "HEADWATER_DEBUG",
                "HEADWATER_FAULT", "HEADWATER_DASK_ADDRESS", "HEADWATER_DASK_CLUSTER"):
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


# The shop pipeline's folder (tests/support/shop.py): runs and cli tests. The flow tests
# (tests/flows/test_flows.py) have a `shop` of their own, module-scoped, that overrides this one.


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
