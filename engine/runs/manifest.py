"""The run manifest: one row per run in the lake table `_headwater.runs`.

Each row says which code ran (git commit, pipeline file hash, backend) on which data (every
input version read, every output version written), with rows and timings per step. With
Delta time travel that is enough to rebuild any model exactly as a run built it
(`engine.runs.reproduce`).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine._version import __version__
from engine.errors import ConfigError, one_line
from engine.lake import Lake
from engine.redact import mask, mask_data, remember, secret_values

if TYPE_CHECKING:
    from engine.pipeline import Pipeline
    from engine.runs.steps import RunSummary

RUNS = "_headwater.runs"

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("pipeline", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
    ("seconds", pa.float64()), ("backend", pa.string()), ("git_commit", pa.string()),
    ("git_dirty", pa.bool_()), ("pipeline_file", pa.string()), ("pipeline_hash", pa.string()),
    ("selection", pa.string()), ("headwater_version", pa.string()), ("steps", pa.string()),
])


def record(lake: Lake, summary: RunSummary, pipeline: Pipeline) -> int:
    """Append `summary` as one row of `_headwater.runs`; returns the commit's version. Every
    text in it is masked (engine.redact): no credential is stored."""
    remember(*secret_values(lake.storage_options))
    finished = datetime.now(timezone.utc)
    started = summary.started_at or finished
    source = pipeline.source_file
    commit, dirty = git_state(source) if source else (None, None)
    row = {
        "run_id": summary.run_id, "pipeline": summary.pipeline, "status": "ok" if summary.ok else "failed",
        "error": mask(one_line(summary.error)) if summary.error else None,
        "started_at": started, "finished_at": finished,
        "seconds": round((finished - started).total_seconds(), 3),
        "backend": summary.backend or _backend_of(lake, summary) or None,
        "git_commit": commit, "git_dirty": dirty, "pipeline_file": str(source) if source else None,
        "pipeline_hash": file_hash(source) if source else None,
        "selection": json.dumps(mask_data(summary.selection)), "headwater_version": __version__,
        "steps": json.dumps([s.to_dict() for s in summary.steps], default=str),
    }
    table = pa.Table.from_pylist([row], schema=SCHEMA)
    return lake.write_append(RUNS, table, run_id=summary.run_id, meta={"kind": "run manifest"}).version or 0


def _backend_of(lake: Lake, summary: RunSummary) -> str | None:
    """The backend the run's models were built on, from their commits (a Prefect run's tasks
    each resolved it; the flow itself did not)."""
    built = next((s for s in summary.steps if s.kind == "model" and s.status == "built" and s.version is not None),
                 None)
    if built is None:
        return None
    return next((c.get("backend") for c in lake.history(built.table) if c.get("version") == built.version), None)


def runs(lake: Lake, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded runs, newest first, each with `steps` decoded."""
    if not lake.exists(RUNS):
        return []
    rows = lake.read(RUNS).sort_by([("started_at", "descending")]).to_pylist()
    for row in rows:
        row["steps"] = json.loads(row["steps"] or "[]")
        row["selection"] = json.loads(row["selection"] or "{}")
    return rows[:limit] if limit else rows


def find(lake: Lake, run_id: str) -> dict[str, Any]:
    """The recorded run `run_id` (a unique prefix will do)."""
    matches = [r for r in runs(lake) if r["run_id"].startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"no recorded run {run_id!r} in the lake",
                          "list runs with `headwater runs`")
    raise ConfigError(f"run id {run_id!r} matches {len(matches)} runs",
                      "give more of the id: " + ", ".join(r["run_id"] for r in matches[:5]))


def file_hash(path: Path) -> str | None:
    """sha256 of a file's bytes (None when it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def git_state(path: Path) -> tuple[str | None, bool | None]:
    """The commit checked out where `path` lives and whether `path` differs from it (None, None
    outside a git checkout or without git)."""
    folder = Path(path).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", str(Path(path).resolve())],
                                capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
