"""A real PostgreSQL server for tests: `HEADWATER_TEST_PG_URL` if set, else a throwaway cluster.

The throwaway cluster is initdb'd into a temporary folder (as the `postgres` OS user when the
tests run as root, since PostgreSQL refuses to run as root), listens on a free loopback port
with its socket in that folder, and is stopped and removed at the end of the session.
Tests skip, saying why, only when no PostgreSQL binaries are installed.
Set `HEADWATER_TEST_PG_ROOT` to make the temporary folder under a known path (CI cleans it).
The fixtures, `pg_server` (session scope) and `pg_url` (a fresh database per test), are in
tests/conftest.py.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


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
