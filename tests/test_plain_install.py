"""A plain install (`pip install -e .`, no extras) runs the demo and looks at what it made.

The test venv holds the dev extra, so a module that only an extra installs would go unnoticed
here. This test makes those modules unimportable: every installed distribution outside what the
base dependencies of pyproject.toml pull in (with their own dependencies, recursively) is
blocked in a child process, which then runs `headwater demo`, `query` and `doctor` the way the
README's quick start does."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# always in a venv, whatever the project declares
INSTALLER = {"pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources"}

BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Plain(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in a plain install)", name=name)
        return None
sys.meta_path.insert(0, Plain())
sys.argv = ["headwater", *sys.argv[2:]]
runpy.run_module("engine.cli", run_name="__main__")
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure() -> set[str]:
    """The distributions a plain install brings: pyproject's dependencies and theirs."""
    wanted = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while wanted:
        req = wanted.pop()
        name = _canonical(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue  # an optional platform dependency that is not installed here
        for spec in map(Requirement, requires):
            extras = [""] + sorted(req.extras)
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in extras):
                wanted.append(spec)
    return seen


def blocked_modules() -> set[str]:
    """Top-level modules whose every distribution is outside the plain install."""
    plain = base_closure() | {"headwater"}
    out = set()
    for module, dists in packages_distributions().items():
        if module in INSTALLER or not module.isidentifier():
            continue
        if not any(_canonical(d) in plain for d in dists):
            out.add(module)
    return out


def test_extras_are_blocked_and_the_base_is_not() -> None:
    blocked = blocked_modules()
    assert {"pytest", "moto", "dask", "psycopg", "mkdocs"} <= blocked  # dev, dask and postgres extras
    assert not {"pandas", "pyarrow", "deltalake", "duckdb", "typer", "numpy", "yaml", "prefect"} & blocked


def test_a_plain_install_runs_the_demo(tmp_path: Path) -> None:
    blocked = ",".join(sorted(blocked_modules()))

    def headwater(*args: str, status: int = 0) -> str:
        done = subprocess.run([sys.executable, "-c", BLOCKER, blocked, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                           "COLUMNS": "100", "DO_NOT_TRACK": "1",
                                                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        assert done.returncode == status, f"headwater {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    demo = headwater("demo", "--photos", "300", "--users", "60", "--log-days", "8", "--days", "1")
    assert "day 1 (2026-03-09): landed users 1" in demo
    assert "│ 78 │" in " ".join(headwater("query", "select count(*) as n from training_set").split())
    assert "ok   warehouse" in headwater("doctor")
    assert "dask, which is not installed" in headwater("doctor", "--backend", "dask", status=1)  # blocked indeed
    assert "Usage" in headwater("deploy", "--help")  # the Prefect plugin's commands load too
