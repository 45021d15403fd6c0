"""Fixtures of the container tests that use podman (marked `containers`): podman itself, set up by
docker/local-base.sh (the repository's copy; CI machines may lack the shared one), the local Python
base image, and the CPU image built from this checkout once per session and removed after it.

Where podman cannot be had (not root, no apt-get, an install or a base image that fails) every
test that needs it skips with the reason; a build of docker/Dockerfile that fails fails them.
The time each step took is printed at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import Podman

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docker" / "local-base.sh"
LOCAL_BASE = "localhost/python-local:3.11-slim-bookworm"  # what the script's `python` verb makes
LOGS = {"debian": Path("/tmp/debootstrap.log"), "python": Path("/tmp/python-base.log")}  # the script's


def script(verb: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), verb], capture_output=True, text=True, timeout=timeout)


def why(done: subprocess.CompletedProcess[str], *logs: Path) -> str:
    """The end of what a failed step printed, and of the logs it names."""
    text = (done.stdout + done.stderr).strip()
    for log in logs:
        if log.name in text and log.exists():
            text += f"\n{log}:\n" + log.read_text()[-1500:]
    return text[-2500:]


TIMES: dict[str, float] = {}  # seconds per step of this session's container tests


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMES:
        terminalreporter.write_line("container steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMES.items()))


@pytest.fixture(scope="session")
def container_times() -> dict[str, float]:
    """Where the tests record how long their steps took (printed at the end of the session)."""
    return TIMES


@pytest.fixture(scope="session")
def podman(container_times: dict[str, float]) -> Podman:
    """podman with runc and this machine's settings (`local-base.sh setup`: apt-get when missing)."""
    if os.geteuid() != 0:
        pytest.skip("the container tests need root: docker/local-base.sh installs podman with apt-get "
                    "and runs it rootful")
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and there is no apt-get to install it with")
    start = time.monotonic()
    done = script("setup")
    if done.returncode != 0:
        pytest.skip(f"podman could not be set up (bash docker/local-base.sh setup):\n{why(done)}")
    container_times["setup"] = time.monotonic() - start
    return Podman.from_script(SCRIPT)


@pytest.fixture(scope="session")
def podman_compose(podman: Podman) -> str:
    """The podman-compose that `local-base.sh setup` installs."""
    if not os.access(podman.compose, os.X_OK):
        pytest.skip(f"{podman.compose} was not installed by docker/local-base.sh setup")
    return podman.compose


@pytest.fixture(scope="session")
def local_base(podman: Podman, container_times: dict[str, float]) -> str:
    """The local Debian and Python base images (kept between sessions: the script skips what exists)."""
    start = time.monotonic()
    done = script("python")
    if done.returncode != 0:
        pytest.skip(f"podman cannot make the local base image here (bash docker/local-base.sh python):\n"
                    f"{why(done, *LOGS.values())}")
    container_times["base" if "built" in done.stdout else "base (kept)"] = time.monotonic() - start
    return LOCAL_BASE


@pytest.fixture(scope="session")
def image(podman: Podman, local_base: str, container_times: dict[str, float]) -> Iterator[str]:
    """The CPU image, docker/Dockerfile built from this checkout on the local base; removed after the
    session, as are the layers only it used."""
    tag = f"localhost/headwater-test:{uuid.uuid4().hex[:12]}"
    try:
        start = time.monotonic()
        done = podman.build(REPO / "docker" / "Dockerfile", REPO, tag, {"BASE": local_base})
        assert done.returncode == 0, f"podman build failed:\n{(done.stdout + done.stderr)[-4000:]}"
        container_times["build"] = time.monotonic() - start
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


@pytest.fixture(scope="session")
def image_user(podman: Podman, image: str) -> tuple[int, int]:
    """The uid and gid the image's USER names."""
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


@pytest.fixture(scope="module")
def new_volume(podman: Podman) -> Iterator[Callable[[], tuple[str, Path]]]:
    """Makes named volumes for a module (`new_volume()` returns name and mountpoint) and removes
    them after it, whether its tests passed or not."""
    made: list[str] = []

    def make() -> tuple[str, Path]:
        name = f"hwtest-{uuid.uuid4().hex[:12]}"
        made.append(name)
        return name, podman.volume(name)

    try:
        yield make
    finally:
        for name in made:
            podman("volume", "rm", "--force", name, check=False)
