"""The `headwater-backfill` flow on a real Prefect server: one task per partition under the
concurrency limit, a progress artifact at 100%, one publish of the rebuilt partitions, and the
table equal to the events counted in plain Python."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from engine import Config, Pipeline, Runner, sources
from flows import backfill as backfill_module
from flows.elt import PROGRESS_KEY
from tests.support.flow_shop import read_artifacts
from tests.transform.test_partitions import daily, expected, write_day

PIPELINE = '''
from engine import Pipeline, sources
from tests.transform.test_partitions import daily
events = sources.files("events", "{root}/events/*.jsonl", format="jsonl")
pipeline = Pipeline("days", sources=[events], models=[daily], models_dir=None)
'''


@pytest.mark.prefect
def test_backfill_flow_rebuilds_each_partition_as_a_task(prefect_server: dict[str, Any], tmp_path: Path) -> None:
    for d in range(5):
        write_day(tmp_path, d, 10)
    (tmp_path / "pipeline.py").write_text(PIPELINE.format(root=tmp_path))
    settings = {"lake": str(tmp_path / "lake"), "warehouse": f"duckdb:///{tmp_path / 'wh.duckdb'}",
                "backend": "pandas"}
    events = sources.files("events", f"{tmp_path}/events/*.jsonl", format="jsonl")
    runner = Runner(Pipeline("days", sources=[events], models=[daily], models_dir=None),
                    Config.load(tmp_path, **settings))
    assert runner.run().ok
    write_day(tmp_path, 9, 0, late=[(1, 2), (2, 3)])  # land late rows without building
    assert Runner(runner.pipeline, Config.load(tmp_path, **settings)).run(select=["raw.events"]).ok

    state = backfill_module.backfill(str(tmp_path / "pipeline.py"), "daily", "2026-03-02", "2026-03-04",
                                     parallel=2, **settings, return_state=True)
    assert state.is_completed(), state.message
    steps = state.result()
    assert [s["name"] for s in steps] == ["daily[2026-03-02]", "daily[2026-03-03]", "daily[2026-03-04]", "daily"]
    assert steps[-1]["detail"] == "to duckdb, 3 partition(s) replaced"
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert sorted(r.name for r in runs if r.name.startswith("backfill-")) == [
        f"backfill-daily-2026-03-0{d}" for d in (2, 3, 4)]
    assert read_artifacts(flow_run_id, [PROGRESS_KEY])[PROGRESS_KEY].data == 100.0
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        published = con.execute("select day, likes, views from daily order by day").fetchall()
    assert published == expected(tmp_path)  # late rows of days 2 and 3 now counted
    again = backfill_module.backfill(str(tmp_path / "pipeline.py"), "daily", "2026-03-02", "2026-03-04",
                                     **settings, return_state=True)
    assert [s["name"] for s in again.result()][:1] == ["daily[2026-03-02]"]  # done before: a new one starts over
