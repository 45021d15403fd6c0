"""`as_of_history`: each label gets the version of its entity valid at its time in an SCD2 table
read from a real lake, compared with the versions a brute-force pass over an independently
computed history says were valid then (a version starting exactly at the label's time counts, one
ending then does not); on pandas, Dask, and cuDF where it imports."""
from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.transform.features import as_of_history
from tests.support.history import COLUMNS, LOADED, T1, T2, T3, expected_history, land_snapshots, valid_then

GPU_SKIP = "cuDF not installed / no GPU: runs on the GPU machine"


@pytest.fixture(params=["pandas", pytest.param("cudf", marks=pytest.mark.gpu)])
def on(request: pytest.FixtureRequest) -> Any:
    if request.param == "cudf":
        cudf = pytest.importorskip("cudf", reason=GPU_SKIP)
        return cudf.from_pandas
    return lambda frame: frame.copy()


@pytest.fixture
def history(tmp_path: Path) -> pd.DataFrame:
    lake = Lake(str(tmp_path))
    land_snapshots(lake)
    return lake.read("raw.customers").to_pandas()


def labels() -> pd.DataFrame:
    """Labels of every customer at times around each load (before, at, between, after)."""
    times = [T1 - timedelta(hours=1), T1, T1 + timedelta(hours=6), T2, T2 + timedelta(seconds=1), T3,
             T3 + timedelta(days=30)]
    rows = [{"id": i, "t": pd.Timestamp(t), "y": n} for n, (i, t) in enumerate((i, t) for i in range(1, 7)
                                                                               for t in times)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def oracle(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    versions = expected_history(LOADED, columns=COLUMNS)
    out = []
    for row in frame.itertuples():
        version = valid_then(versions, row.t.to_pydatetime()).get(row.id)
        out.append((row.id, row.t, row.y, *(version[1:3] if version else (None, None))))
    return out


def rows_of(got: Any) -> list[tuple[Any, ...]]:
    got = got.to_pandas() if hasattr(got, "to_pandas") else got
    return [(r.id, r.t, r.y, *(None if pd.isna(v) else v for v in (r.c_name, r.c_plan))) for r in got.itertuples()]


def test_each_label_gets_the_version_valid_at_its_time(history: pd.DataFrame, on: Any) -> None:
    asked = labels()
    got = as_of_history(on(asked), on(history), entity="id", label_time="t", prefix="c_")
    assert list(got.columns) == ["id", "t", "y", "c_name", "c_plan"]  # the history's own columns only
    assert rows_of(got) == oracle(asked)  # labels keep their rows and order
    assert {r[3] for r in oracle(asked)} >= {None, "cy", "cyd"}  # before, deleted, versions on both sides


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask is not installed")
def test_dask_gives_the_same_versions(history: pd.DataFrame) -> None:
    import dask.dataframe as dd

    asked = labels()
    got = as_of_history(dd.from_pandas(asked, npartitions=3), dd.from_pandas(history, npartitions=2),
                        entity="id", label_time="t", columns=["plan"]).compute()
    want = [(i, t, y, plan) for i, t, y, _, plan in oracle(asked)]
    found = [(r.id, r.t, r.y, None if pd.isna(r.plan) else r.plan) for r in got.itertuples()]
    assert sorted(found, key=repr) == sorted(want, key=repr)


def test_a_frame_that_is_no_history_is_named(history: pd.DataFrame) -> None:
    with pytest.raises(HeadwaterError, match="history .*has no column '_hw_valid_to'"):
        as_of_history(labels(), history.drop(columns=["_hw_valid_to"]), entity="id", label_time="t")
    naive = labels().assign(t=lambda f: f["t"].dt.tz_convert(None))
    with pytest.raises(HeadwaterError, match="time zone"):
        as_of_history(naive, history, entity="id", label_time="t")
