"""prefect.yaml: read by pyyaml and by Prefect's own project-file model; its deployments point at
the elt flow with parameters it takes, an inactive daily schedule, and for the GPU pool an NVIDIA
device request that docker-py accepts. `headwater deploy`'s checks that need no server."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.types import DeviceRequest, HostConfig
from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from engine.errors import HeadwaterError
from flows import deploy
from flows.elt import elt

REPO = Path(__file__).resolve().parents[2]

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"photo-popularity-process": ("headwater-process", None),
         "photo-popularity-docker": ("headwater-docker", "docker/Dockerfile"),
         "photo-popularity-gpu": ("headwater-docker-gpu", "docker/Dockerfile.gpu")}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def by_name(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in spec["deployments"]}


def test_prefect_reads_the_project_file(spec: dict[str, Any]) -> None:
    model = PrefectYamlModel.model_validate(spec)
    assert {d.name for d in model.deployments} == set(NAMES)
    for d in model.deployments:
        assert d.entrypoint == "flows/elt.py:elt" and d.work_pool.name == NAMES[d.name][0]
        (schedule,) = d.schedules
        assert isinstance(schedule, RawScheduleConfig)
        assert (schedule.cron, schedule.timezone, schedule.active) == ("0 6 * * *", "UTC", False)
    assert deploy.deployments(ROOT / "prefect.yaml").keys() == NAMES.keys()


def test_entrypoint_is_the_elt_flow_and_takes_the_parameters(spec: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the project, as on a worker after the pull step
    flow = load_flow_from_entrypoint("flows/elt.py:elt")
    assert flow.name == elt.name == "headwater-elt"
    accepted = set(parameter_schema(elt).properties)
    for d in spec["deployments"]:
        assert set(d["parameters"]) == {"pipeline", "select", "exclude", "full_refresh"} <= accepted
        assert (ROOT / d["parameters"]["pipeline"]).is_file()
        assert d["work_pool"]["job_variables"]["env"]["DO_NOT_TRACK"] == "1"


def test_every_deployment_changes_into_its_code(spec: dict[str, Any]) -> None:
    for name, d in by_name(spec).items():
        (pull,) = d["pull"]
        directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
        dockerfile = NAMES[name][1]
        if dockerfile is None:  # the process worker runs in the checkout `prefect deploy` ran in
            (build,) = d["build"]
            assert build["prefect.deployments.steps.run_shell_script"]["script"] == "pwd"
            assert directory == "{{ checkout.stdout }}"
        else:  # containers run the image built from the Dockerfile, code at /opt/headwater
            (build,) = d["build"]
            step = build["prefect_docker.deployments.steps.build_docker_image"]
            assert step["dockerfile"] == dockerfile and directory == "/opt/headwater"
            assert f"{step['image_name']}:{step['tag']}" == ("headwater:latest" if name.endswith("docker")
                                                             else "headwater-gpu:latest")
            assert d["work_pool"]["job_variables"]["image"] == "{{ build-image.image }}"
            assert code_dir(REPO / dockerfile) == directory, f"{dockerfile} keeps the flows elsewhere"


def code_dir(dockerfile: Path) -> str | None:
    """The WORKDIR the Dockerfile copies `flows` into (and keeps: nothing removes it after)."""
    workdir = None
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["WORKDIR"]:
            workdir = words[1]
        if words[:1] == ["COPY"] and "flows" in words and "./flows" in words:
            return workdir
    return None


def test_gpu_deployment_requests_every_nvidia_gpu(spec: dict[str, Any]) -> None:
    variables = by_name(spec)["photo-popularity-gpu"]["work_pool"]["job_variables"]
    (request,) = variables["container_create_kwargs"]["device_requests"]
    parsed = DeviceRequest(**request)  # what docker-py builds from the dict (no daemon needed)
    assert (parsed.driver, parsed.count, parsed.capabilities) == ("nvidia", -1, [["gpu"]])
    host = HostConfig(version="1.44", device_requests=[request])
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Count": -1, "DeviceIDs": [],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    assert "container_create_kwargs" not in by_name(spec)["photo-popularity-docker"]["work_pool"]["job_variables"]


def test_deploy_names_unknown_deployments_and_files(tmp_path: Path) -> None:
    with pytest.raises(HeadwaterError, match=r"no deployment 'nope'.*photo-popularity-process"):
        deploy.deploy(["nope"])
    with pytest.raises(HeadwaterError, match="no Prefect project file"):
        deploy.deploy(prefect_file=tmp_path / "prefect.yaml")
    (tmp_path / "prefect.yaml").write_text("deployments: [: bad")
    with pytest.raises(HeadwaterError, match="not valid YAML"):
        deploy.deployments(tmp_path / "prefect.yaml")


def test_serve_refuses_a_missing_pipeline_before_serving(tmp_path: Path) -> None:
    with pytest.raises(HeadwaterError, match="no pipeline file"):
        deploy.serve(str(tmp_path / "nope.py"), "never-served")


def test_deploy_reads_the_prefect_yaml_of_the_folder_it_runs_from(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the prefect.yaml next to the installed package: the user's project's."""
    from typer.testing import CliRunner

    from engine.cli import app

    monkeypatch.chdir(tmp_path)
    missing = CliRunner().invoke(app, ["deploy"])
    assert missing.exit_code == 1
    assert f"no Prefect project file at {tmp_path / 'prefect.yaml'}" in " ".join(missing.output.split())
    (tmp_path / "prefect.yaml").write_text("deployments:\n  - name: mine\n    entrypoint: flows/elt.py:elt\n")
    assert list(deploy.deployments()) == ["mine"]
    unknown = CliRunner().invoke(app, ["deploy", "--name", "photo-popularity-process"])
    assert unknown.exit_code == 1 and "deployments are mine" in " ".join(unknown.output.split())
