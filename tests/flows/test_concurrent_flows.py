"""Two flow runs of one pipeline at once on the session's Prefect server: the steps one of them
loses (ConcurrentRunError, retryable) are retried and find nothing left to do, so both flow runs
complete and every row is landed, built and published once."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine import Config, Runner, load_pipeline
from engine.lake import Lake
from flows import tasks
from flows.elt import elt
from tests.support.race import FILES, PIPELINE, ROWS, check_exactly_once, write_day

pytestmark = pytest.mark.prefect


def test_two_flow_runs_at_once_land_build_and_publish_every_row_once(
        prefect_server: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("load_source", "build_model", "publish_model"):  # retry at once, not after seconds
        monkeypatch.setattr(tasks, name, getattr(tasks, name).with_options(retry_delay_seconds=0))
    settings = {"lake": str(tmp_path / "lake"), "warehouse": f"duckdb:///{tmp_path / 'wh.duckdb'}",
                "backend": "pandas"}
    expected = write_day(tmp_path, 0)
    (tmp_path / "pipeline.py").write_text(PIPELINE.format(orders=str(tmp_path / "orders" / "*.csv")))
    config = Config(**settings)  # type: ignore[arg-type]
    assert Runner(load_pipeline(tmp_path / "pipeline.py"), config).run().ok  # yesterday's run
    expected += write_day(tmp_path, 1)
    states: list[Any] = []

    def flow_run() -> None:
        states.append(elt(str(tmp_path / "pipeline.py"), **settings, return_state=True))

    runs = [threading.Thread(target=flow_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(300)
    assert len(states) == 2 and all(s.is_completed() for s in states), [s.message for s in states]
    check_exactly_once(Lake(settings["lake"]), expected)
    landed = sorted(next(s for s in state.result() if s["kind"] == "load")["rows"] for state in states)
    assert landed == [0, FILES * ROWS]  # one flow run landed today's files, the other found them landed
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert dict(con.execute("select customer, amount from totals").fetchall()) == pytest.approx(expected)
        assert con.execute("select count(*), count(distinct order_id) from order_log").fetchone() == (
            2 * FILES * ROWS, 2 * FILES * ROWS)
