"""A real PostgreSQL server for tests: `HEADWATER_TEST_PG_URL` if set, else a throwaway cluster.

The throwaway cluster is initdb'd into a temporary folder (as the `postgres` OS user when the
tests run as root, since PostgreSQL refuses to run as root), listens on a free loopback port
with its socket in that folder, and is stopped and removed at the end of the session.
Tests skip, saying why, only when no PostgreSQL binaries are installed.
Set `HEADWATER_TEST_PG_ROOT` to make the temporary folder under a known path (CI cleans it).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


def pg_bin_dir() -> Path | None:
    """The folder with `initdb` and `pg_ctl`: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster in `root`, run by `user` (None: the current user)."""

    def __init__(self, bindir: Path, root: Path, user: str | None) -> None:
        self.bindir, self.root, self.user = bindir, root, user
        self.data, self.log = root / "data", root / "server.log"
        self.port = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], user=self.user,
                              capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> str:
        """initdb, start on a free port; the superuser URL (postgresql+psycopg)."""
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--no-sync", "--no-instructions")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        for _ in range(3):  # another process may take the free port between pick and bind
            self.port = _free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c full_page_writes=off -c synchronous_commit=off")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                             "-o", opts, "start")
            if done.returncode == 0:
                return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        log = self.log.read_text() if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log[-2000:]}")

    def stop(self) -> None:
        """Stop the server (if it runs) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


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
