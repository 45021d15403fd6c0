"""Types Delta cannot store land as exact equivalents (engine/lake/types.py `delta_type`), and a
pandas model that passes such a table through builds: a Parquet map once landed but failed every
model over it, because pandas turns a map into (key, value) tuples it cannot write back."""
from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import Config
from engine.pipeline import Pipeline
from engine.runs.runner import Runner
from engine.sources import files
from engine.transform.models import model

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
D = decimal.Decimal


@model(inputs={"things": "raw.things"})
def passed(things: pd.DataFrame) -> pd.DataFrame:
    return things


def test_unstorable_types_land_exactly_and_pass_through_pandas(tmp_path: Path) -> None:
    pq.write_table(pa.table({
        "id": [1, 2],
        "attrs": pa.array([[("colour", 1), ("size", 2)], []], pa.map_(pa.string(), pa.int64())),
        "half": pa.array(np.array([1.5, -2.25], np.float16)),
        "wide": pa.array([D("12345678901234567890.25"), None], pa.decimal256(60, 2)),
        "took": pa.array([1_500_000, 3], pa.duration("us")),
        "at": pa.array([dt.time(8, 30), dt.time(23, 59, 59, 999_999)], pa.time64("us")),
    }), tmp_path / "a.parquet")
    runner = Runner(Pipeline("t", sources=[files("things", str(tmp_path / "a.parquet"))], models=[passed]),
                    Config(lake=str(tmp_path / "lake"), backend="pandas"))
    step = runner.load("things", "r1", NOW)
    assert (step.status, step.rows, step.quarantined) == ("landed", 2, 0), step.detail
    raw = runner.lake.read("raw.things")
    assert raw.schema.field("attrs").type == pa.list_(pa.struct([pa.field("key", pa.string(), nullable=False),
                                                                  ("value", pa.int64())]))
    assert {f.name: str(f.type) for f in raw.schema if f.name in ("half", "wide", "took", "at")} == {
        "half": "float", "wide": "decimal128(38, 2)", "took": "int64", "at": "string"}
    rows = sorted(raw.to_pylist(), key=lambda r: r["id"])
    assert [r["attrs"] for r in rows] == [[{"key": "colour", "value": 1}, {"key": "size", "value": 2}], []]
    assert [(r["half"], r["wide"], r["took"], r["at"]) for r in rows] == [
        (1.5, D("12345678901234567890.25"), 1_500_000, "08:30:00.000000"), (-2.25, None, 3, "23:59:59.999999")]

    built = runner.build("passed", "r1")
    assert built.status == "built", built.detail
    out = sorted(runner.lake.read("models.passed").to_pylist(), key=lambda r: r["id"])
    assert [r["attrs"] for r in out] == [r["attrs"] for r in rows]
    assert [r["took"] for r in out] == [1_500_000, 3]
