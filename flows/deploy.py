"""Deployments of the `headwater-elt` flow: the ones `prefect.yaml` declares (registered with
`prefect deploy` against a work pool), and `serve` (a long-lived process that is its own worker)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from engine.errors import ConfigError

PREFECT_FILE = "prefect.yaml"  # looked for in the project folder `headwater deploy` runs from
DEFAULT_DEPLOYMENT = "photo-popularity-process"
POOL_TYPES = {"headwater-process": "process", "headwater-docker": "docker", "headwater-docker-gpu": "docker"}
NO_TELEMETRY = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def deployments(prefect_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """The deployments `prefect_file` (default: ./prefect.yaml) declares, by name."""
    prefect_file = prefect_file or Path.cwd() / PREFECT_FILE
    if not prefect_file.is_file():
        raise ConfigError(f"no Prefect project file at {prefect_file}",
                          "run from your project's folder (the one with prefect.yaml), or pass --prefect-file")
    try:
        spec = yaml.safe_load(prefect_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prefect_file} is not valid YAML: {exc}", "fix the file") from exc
    found = {d.get("name"): d for d in spec.get("deployments") or [] if isinstance(d, dict)}
    if not found or None in found:
        raise ConfigError(f"{prefect_file} declares no named deployments",
                          "add a `deployments:` list whose entries have a `name`")
    return found


def deploy(names: list[str] | None = None, pool: str | None = None,
           prefect_file: Path | None = None) -> list[str]:
    """Register the named deployments of `prefect_file` (default: the process one) with the
    Prefect API, on their work pools or on `pool`; returns their `flow/deployment` names.

    Runs `prefect deploy` in the file's folder, so its build and pull steps see the project.
    Raises HeadwaterError naming an unknown deployment or a work pool that does not exist,
    with the command that creates it."""
    prefect_file = prefect_file or Path.cwd() / PREFECT_FILE
    known = deployments(prefect_file)
    names = list(dict.fromkeys(names or [DEFAULT_DEPLOYMENT]))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"no deployment {', '.join(map(repr, unknown))} in {prefect_file}",
                          f"deployments are {', '.join(known)}")
    for name in names:
        _check_pool(pool or (known[name].get("work_pool") or {}).get("name"))
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(prefect_file)]
    for name in names:
        command += ["--name", name]
    if pool:
        command += ["--pool", pool]
    done = subprocess.run(command, cwd=prefect_file.parent, env={**os.environ, **NO_TELEMETRY},
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"prefect deploy failed (exit {done.returncode}):\n{tail}",
                          "see the output above; PREFECT_API_URL must name a running Prefect server")
    return [f"headwater-elt/{name}" for name in names]


def _check_pool(pool: str | None) -> None:
    if not pool:
        raise ConfigError("the deployment names no work pool", "pass --pool NAME")
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            kind = POOL_TYPES.get(pool, "process")
            raise ConfigError(f"work pool {pool!r} does not exist on {client.api_url}",
                              f"create it: prefect work-pool create {pool} --type {kind}") from None


def serve(pipeline: str, name: str, cron: str | None = None, select: str | list[str] | None = None,
          exclude: str | list[str] | None = None, full_refresh: bool = False, lake: str | None = None,
          warehouse: str | None = None, backend: str | None = None) -> None:
    """Create deployment `headwater-elt/<name>` for `pipeline` and run its flow runs in this
    process until interrupted (no work pool or worker needed); `cron` adds an active UTC schedule."""
    from prefect.schedules import Cron

    from flows.elt import elt
    from flows.tasks import pipeline_at, target_of

    pipeline_at(target_of(pipeline))  # a missing or broken pipeline fails here, not in every run
    os.environ.update(NO_TELEMETRY)
    parameters = {"pipeline": target_of(pipeline), "select": select, "exclude": exclude, "full_refresh": full_refresh,
                  "lake": lake, "warehouse": warehouse, "backend": backend}
    elt.serve(name=name, parameters={k: v for k, v in parameters.items() if v is not None},
              schedules=[Cron(cron, timezone="UTC")] if cron else None,
              tags=["headwater"], pause_on_shutdown=False)
