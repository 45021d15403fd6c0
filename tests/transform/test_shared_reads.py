"""Whole-table reads shared by the models of a run (engine/transform/reads.py), on real Delta tables.

A counting wrapper around the real pandas backend says how often each lake table was read;
every output is compared with the same model built alone (no sharing), and with values
computed from the source rows.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from engine import Config, HeadwaterError, Pipeline, Runner, model, sources
from engine.transform.backends.pandas import PandasBackend
from engine.transform.reads import SharedReads

SEEN: dict[str, list[str]] = {}  # model -> the columns of its `events` input


class Counting(PandasBackend):
    """The pandas backend, counting reads per lake table folder."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    def read(self, table: DeltaTable, columns: list[str] | None = None) -> pd.DataFrame:
        self.reads[Path(table.table_uri.rstrip("/")).name] += 1
        return super().read(table, columns)


@model(inputs={"events": "raw.events"}, columns={"events": ["user_id", "amount"]})
def spend(events: pd.DataFrame) -> pd.DataFrame:
    SEEN["spend"] = list(events.columns)
    out = events.groupby("user_id", as_index=False).agg(spend=("amount", "sum"))
    events.loc[:, "amount"] = 0.0  # changes its own input in place: the others must not see it
    events["junk"] = 1
    return out


@model(inputs={"events": "raw.events"}, columns={"events": ["user_id", "kind"]})
def kinds(events: pd.DataFrame) -> pd.DataFrame:
    SEEN["kinds"] = list(events.columns)
    return events.groupby(["user_id", "kind"], as_index=False).size()


@model(inputs={"events": "raw.events", "users": "raw.users"})
def enriched(events: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    SEEN["enriched"] = list(events.columns)
    out = events.merge(users, on="user_id")
    return out[["user_id", "kind", "amount", "country"]]


MODELS = [spend, kinds, enriched]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    pq.write_table(pa.table({"user_id": [1, 1, 2, 3, 3, 3], "kind": ["a", "b", "a", "a", "b", "b"],
                             "amount": [1.5, 2.0, 4.0, 0.5, 0.25, 8.0]}), tmp_path / "events.parquet")
    pq.write_table(pa.table({"user_id": [1, 2, 3], "country": ["fr", "de", "it"]}), tmp_path / "users.parquet")
    return tmp_path


def pipeline(folder: Path, models: list[Any]) -> Pipeline:
    return Pipeline("shared", sources=[sources.files("events", str(folder / "events*.parquet")),
                                       sources.files("users", str(folder / "users.parquet"))],
                    models=models)


def runner(folder: Path, name: str, models: list[Any]) -> tuple[Runner, Counting]:
    config = Config.load(folder, lake=str(folder / name), warehouse=f"duckdb:///{folder / name}.duckdb")
    run = Runner(pipeline(folder, models), config)
    backend = Counting()
    run._backend = (backend, "test: counting pandas backend")
    return run, backend


def output(run: Runner, name: str) -> pd.DataFrame:
    frame = run.lake.read(f"models.{name}").to_pandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_a_table_read_by_three_models_is_read_once(folder: Path) -> None:
    SEEN.clear()
    run, backend = runner(folder, "shared", MODELS)
    assert run.run().ok
    assert backend.reads["events"] == 1 and backend.reads["users"] == 1
    # each model still sees exactly the columns it asked for (all, for enriched)
    assert SEEN["spend"] == ["user_id", "amount"] and SEEN["kinds"] == ["user_id", "kind"]
    assert SEEN["enriched"][:3] == ["user_id", "kind", "amount"] and "junk" not in SEEN["enriched"]

    # the same models built one by one (no run, so nothing shared) write the same outputs
    alone, alone_backend = runner(folder, "alone", MODELS)
    for source in ("events", "users"):
        assert alone.load(source, "r1").status == "landed"
    for m in MODELS:
        assert alone.build(m.name, "r1").status == "built"
    assert alone_backend.reads["events"] == 3
    for m in MODELS:
        pd.testing.assert_frame_equal(output(run, m.name), output(alone, m.name))

    # values from the source rows: spend's in-place change to `amount` reached no other model
    source = pq.read_table(folder / "events.parquet").to_pandas()
    enriched_out = output(run, "enriched")
    assert enriched_out["amount"].sum() == pytest.approx(source["amount"].sum())
    assert output(run, "spend").set_index("user_id")["spend"].to_dict() == \
        source.groupby("user_id")["amount"].sum().to_dict()


def test_a_table_one_model_reads_is_read_with_its_columns_only(folder: Path) -> None:
    SEEN.clear()
    run, backend = runner(folder, "single", [spend, kinds])
    assert run.run(select=["raw.events", "raw.users", "spend"]).ok
    assert backend.reads["events"] == 1 and SEEN["spend"] == ["user_id", "amount"]
    assert "kinds" not in SEEN


def test_frames_are_dropped_after_their_last_reader(folder: Path) -> None:
    run, _ = runner(folder, "drop", MODELS)
    for source in ("events", "users"):
        run.load(source, "r1")
    backend = PandasBackend()
    shared = SharedReads(MODELS)
    table = run.lake.table("raw.events")
    version, names = table.version(), [f.name for f in table.schema().fields]

    def read(columns: list[str] | None) -> pd.DataFrame:
        return backend.read(table, columns)

    first = shared.read(backend, "raw.events", version, names, ["user_id", "amount"], read)
    assert list(first.columns) == ["user_id", "amount"] and shared.held == ["raw.events"]
    assert list(shared.frames["raw.events"][1].columns) == names  # enriched wants all: the union
    shared.done(spend)
    shared.done(kinds)
    assert shared.held == ["raw.events"]  # enriched has yet to read it
    shared.done(enriched)
    assert shared.held == []


def test_a_missing_column_names_the_model_that_asked_for_it(folder: Path) -> None:
    @model(name="broken", inputs={"events": "raw.events"}, columns={"events": ["user_id", "nope"]})
    def broken(events: pd.DataFrame) -> pd.DataFrame:
        return events

    run, _ = runner(folder, "broken", [spend, broken])
    summary = run.run()
    assert [s.status for s in summary.steps if s.kind == "model"] == ["built", "failed"]
    assert "model 'broken'" in summary.error and "'nope'" in summary.error


def test_incremental_reads_are_not_shared(folder: Path) -> None:
    """An incremental model sees only the new rows while a table model reading the same input
    in the same run sees all of them."""
    @model(name="all_rows", inputs={"events": "raw.events"})
    def all_rows(events: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"rows": [len(events)]})

    @model(name="new_rows", inputs={"events": "raw.events"}, materialized="incremental")
    def new_rows(events: pd.DataFrame) -> pd.DataFrame:
        return events[["user_id", "amount"]]

    run, _ = runner(folder, "incr", [all_rows, new_rows])
    assert run.run().ok
    pq.write_table(pa.table({"user_id": [9, 9], "kind": ["c", "c"], "amount": [1.0, 2.0]}),
                   folder / "events2.parquet")
    summary = run.run()
    assert summary.ok, summary.error
    assert run.lake.read("models.all_rows").column("rows").to_pylist() == [8]
    assert run.lake.read("models.new_rows").num_rows == 8  # 6 from the first run + the 2 new
    step = next(s for s in summary.steps if s.name == "new_rows")
    assert step.rows == 2 and "appended 2" in step.detail


def test_a_failed_model_lets_go_of_the_frame_it_shared(folder: Path) -> None:
    """A model that raises still counts as done with its inputs: the frame it shared is dropped
    (a run stops at the failure, but Runner.build is also called step by step)."""
    @model(name="boom", inputs={"events": "raw.events"})
    def boom(events: pd.DataFrame) -> pd.DataFrame:
        raise ValueError("model bug")

    run, backend = runner(folder, "boom", [spend, boom])
    for source in ("events", "users"):
        assert run.load(source, "r1").status == "landed"
    run._shared = SharedReads([spend, boom])
    assert run.build("spend", "r1").status == "built"
    assert run._shared.held == ["raw.events"]  # boom has yet to read it
    step = run.build("boom", "r1")
    assert step.status == "failed" and "ValueError: model bug" in step.detail
    assert run._shared.held == [] and backend.reads["events"] == 1  # boom got the shared frame
    with pytest.raises(HeadwaterError):
        run.lake.read("models.boom")
