"""The CPU image built and run for real, with podman (there is no Docker engine here): docker/Dockerfile
built from this checkout on the local Python base (tests/docker/conftest.py), its default command
(the demo) run into a named volume, a query from a second container on that volume, the demo again
(it lands nothing: the state is in the volume), and a batch job, `headwater run`, of a pipeline
mounted read-only. What the containers leave in their volumes is read on this machine, through
the volumes' folders, and checked against values computed here from the generated files.
Images and volumes are removed afterwards, whether the tests pass or not.
"""
from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine.lake import Lake
from tests.support.containers import Podman, assert_demo_folder, table_rows
from tests.support.photo_reference import expected_training_set

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]  # the first test also sets podman up and builds

WIDE = {"COLUMNS": "200"}  # tables printed unwrapped
# A batch job of our own: a folder of CSV readings next to the pipeline, which finds them
# through its own path, so it runs from any working directory.
PIPELINE = '''"""Rainfall per station: one CSV source, one model (the container test's batch job)."""
from pathlib import Path

from engine import Pipeline, model, sources

readings = sources.files("readings", str(Path(__file__).parent / "readings" / "*.csv"))


@model(inputs={"readings": "raw.readings"})
def station_rainfall(readings):
    return readings.groupby("station", as_index=False).agg(rainfall_mm=("rainfall_mm", "sum"),
                                                           readings=("rainfall_mm", "size"))


pipeline = Pipeline("rainfall", sources=[readings], models=[station_rainfall])
'''
STATIONS = ("north", "south", "east", "west", "summit")


def timed(times: dict[str, float], step: str, call: Callable[[], Any]) -> Any:
    start = time.monotonic()
    try:
        return call()
    finally:
        times[step] = time.monotonic() - start


@pytest.fixture(scope="module")
def demo(podman: Podman, image: str, new_volume: Callable[[], tuple[str, Path]],
         container_times: dict[str, float]) -> dict[str, Any]:
    """The image's default command, the demo, run once into a new named volume."""
    volume, root = new_volume()
    done = timed(container_times, "demo", lambda: podman.run(image, volumes=(f"{volume}:/data",), env=WIDE))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {"volume": volume, "root": root, "run": done}


def test_demo_runs_into_the_named_volume(demo: dict[str, Any]) -> None:
    assert "landed" in demo["run"].stdout
    assert_demo_folder(demo["root"])  # raw rows, published rows, training set against the pandas oracle


def test_image_runs_as_its_non_root_user(podman: Podman, image: str, image_user: tuple[int, int],
                                         demo: dict[str, Any]) -> None:
    uid, gid = image_user
    assert uid != 0 and gid != 0
    done = podman.run(image, "-c", "id -u; id -g", entrypoint="/bin/sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(uid), str(gid)]
    written = [demo["root"] / "warehouse.duckdb", *(demo["root"] / "lake").rglob("*.parquet")]
    assert len(written) > 1 and {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(uid, gid)}


def test_query_in_a_second_container_reads_the_volume(podman: Podman, image: str, demo: dict[str, Any],
                                                      container_times: dict[str, float]) -> None:
    done = timed(container_times, "query", lambda: podman.run(
        image, "query", "select count(*) from training_set", volumes=(f"{demo['volume']}:/data",), env=WIDE))
    assert done.returncode == 0, done.stdout + done.stderr
    want = len(expected_training_set(demo["root"] / "data" / "photo_popularity"))
    assert want > 0 and table_rows(done.stdout) == [[str(want)]]


def test_demo_again_lands_nothing_its_state_is_in_the_volume(podman: Podman, image: str,
                                                             demo: dict[str, Any],
                                                             container_times: dict[str, float]) -> None:
    lake = Lake(str(demo["root"] / "lake"))
    versions = {t: lake.version(t) for t in lake.tables()}
    again = timed(container_times, "demo again", lambda: podman.run(
        image, volumes=(f"{demo['volume']}:/data",), env=WIDE))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert "landed 0 new rows" in again.stdout
    assert {t: lake.version(t) for t in lake.tables()} == versions
    assert_demo_folder(demo["root"])


def write_readings(folder: Path, seed: int) -> list[dict[str, str]]:
    """Three days of rainfall readings as CSV files; the rows as written."""
    rng = random.Random(seed)
    (folder / "readings").mkdir(parents=True)
    rows = []
    for day in range(3):
        day_rows = [{"station": rng.choice(STATIONS), "rainfall_mm": f"{rng.uniform(0, 30):.1f}"}
                    for _ in range(rng.randint(15, 30))]
        with (folder / "readings" / f"day{day}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["station", "rainfall_mm"])
            writer.writeheader()
            writer.writerows(day_rows)
        rows += day_rows
    return rows


def test_batch_job_runs_a_pipeline_mounted_read_only(podman: Podman, image: str, tmp_path: Path,
                                                     new_volume: Callable[[], tuple[str, Path]],
                                                     container_times: dict[str, float]) -> None:
    job = tmp_path / "job"
    rows = write_readings(job, seed=18)
    (job / "pipeline.py").write_text(PIPELINE)
    for path in (job, *job.rglob("*")):  # readable by the image's user (tmp_path is the owner's only)
        path.chmod(0o755 if path.is_dir() else 0o644)
    volume, root = new_volume()
    done = timed(container_times, "batch job", lambda: podman.run(
        image, "run", "/work/pipeline.py", volumes=(f"{job}:/work:ro", f"{volume}:/data"), env=WIDE))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    want: dict[str, list[float]] = {}
    for row in rows:
        want.setdefault(row["station"], []).append(float(row["rainfall_mm"]))
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        got = con.execute("select station, rainfall_mm, readings from station_rainfall order by station").fetchall()
    assert [s for s, _, _ in got] == sorted(want)
    for station, rainfall, count in got:
        assert count == len(want[station]) and rainfall == pytest.approx(sum(want[station])), station
    assert Lake(str(root / "lake")).dataset("raw.readings").count_rows() == len(rows)
    assert sorted(p.name for p in job.rglob("*")) == ["day0.csv", "day1.csv", "day2.csv", "pipeline.py", "readings"]
