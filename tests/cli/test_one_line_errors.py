"""Errors stay one line whatever RUST_BACKTRACE says: a Delta table whose log is corrupt makes
delta-rs raise with a native backtrace appended (`   0: <unknown>` …) under RUST_BACKTRACE=1 or
full; `headwater` prints one `error:` line all the same (and the run's summary and runs table
keep one line per failure). HEADWATER_DEBUG=1 prints the traceback, backtrace and all."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.lake import Lake
from engine.runs.manifest import runs
from tests.support.processes import ROOT
from tests.support.shop import write_pipeline


def headwater(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "RUST_"))}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**clean, "PYTHONPATH": str(ROOT), "HEADWATER_BACKEND": "pandas", **env})


@pytest.fixture
def corrupt(shop: Path) -> Path:
    """The shop pipeline run once, then raw.orders' first commit overwritten with garbage."""
    done = headwater(shop, "run", str(write_pipeline(shop)))
    assert done.returncode == 0, done.stderr
    (shop / "lake" / "raw" / "orders" / "_delta_log" / "00000000000000000000.json").write_text("garbage{\n")
    return shop


@pytest.mark.parametrize("backtrace", ["1", "full"])
def test_a_delta_rs_error_is_one_line_under_rust_backtrace(corrupt: Path, backtrace: str) -> None:
    shown = headwater(corrupt, "show", "raw.orders", RUST_BACKTRACE=backtrace)
    assert shown.returncode == 1
    assert shown.stderr.count("\n") == 1 and shown.stderr.startswith("error: DeltaError: "), shown.stderr
    assert "Json error" in shown.stderr and "<unknown>" not in shown.stderr

    ran = headwater(corrupt, "run", "pipeline.py", RUST_BACKTRACE=backtrace)
    assert ran.returncode == 1
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: load 'orders' failed: DeltaError: ")
    assert " 0: " not in ran.stdout and "backtrace" not in ran.stdout.lower()
    (last,) = [r for r in runs(Lake(str(corrupt / "lake"))) if r["status"] == "failed"]
    assert "\n" not in last["error"] and last["error"].startswith("load 'orders' failed: DeltaError: ")
    (step,) = [s for s in last["steps"] if s["status"] == "failed"]
    assert "\n" not in step["detail"]


def test_headwater_debug_shows_the_whole_error(corrupt: Path) -> None:
    shown = headwater(corrupt, "show", "raw.orders", RUST_BACKTRACE="1", HEADWATER_DEBUG="1")
    assert shown.returncode == 1
    assert "Traceback (most recent call last)" in shown.stderr and "   0: " in shown.stderr
    assert shown.stderr.rstrip().splitlines()[-1].startswith("error: DeltaError: ")
