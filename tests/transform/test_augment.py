"""drop_cells: the same seed drops the same cells on pandas, Dask (any partitioning) and cuDF,
about `frac` of them, only in the columns named, and nothing else changes."""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import HeadwaterError
from engine.transform.augment import BLOCK, cell_mask, drop_cells

GPU_SKIP = "cuDF not installed / no GPU: runs on the GPU machine"
N = 2 * BLOCK + 12_345  # crosses two block boundaries


def frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": np.arange(n, dtype="int64") + 2**62,  # too big for a float64 to hold exactly
        "x": rng.normal(size=n),
        "word": rng.choice(["cat", "dog", "owl"], n),
        "flag": rng.random(n) < 0.5,
        "at": pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        "keep": rng.integers(0, 9, n),
    }, index=pd.RangeIndex(n) * 3 + 5)  # not a default index: it must survive
    df.loc[df.index[rng.random(n) < 0.02], "x"] = np.nan  # some cells are null already
    return df


COLUMNS = ["id", "x", "word", "flag", "at"]


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return frame()


def test_same_seed_same_cells_other_seed_other_cells(df: pd.DataFrame) -> None:
    a = drop_cells(df, 0.2, COLUMNS, seed=11).isna()
    b = drop_cells(df, 0.2, COLUMNS, seed=11).isna()
    c = drop_cells(df, 0.2, COLUMNS, seed=12).isna()
    pd.testing.assert_frame_equal(a, b)
    for col in COLUMNS:
        assert (a[col] != c[col]).mean() > 0.2  # two independent 20% draws differ in ~32% of cells


@pytest.mark.parametrize("frac", [0.05, 0.3, 0.9])
def test_about_frac_of_the_cells_are_dropped(df: pd.DataFrame, frac: float) -> None:
    out = drop_cells(df, frac, COLUMNS, seed=3)
    for col in COLUMNS:
        was = df[col].notna()
        dropped = (out[col].isna() & was).sum() / was.sum()
        sd = (frac * (1 - frac) / was.sum()) ** 0.5
        assert abs(dropped - frac) < 5 * sd, col


def test_only_drawn_cells_change_and_other_columns_are_untouched(df: pd.DataFrame) -> None:
    before = df.copy()
    out = drop_cells(df, 0.25, COLUMNS, seed=7)
    pd.testing.assert_frame_equal(df, before)  # the input is not modified
    pd.testing.assert_index_equal(out.index, df.index)
    assert list(out.columns) == list(df.columns)
    pd.testing.assert_series_equal(out["keep"], df["keep"])
    for col in COLUMNS:
        drawn = cell_mask(7, col, 0, len(df), 0.25)
        assert (out[col].isna().to_numpy() == (df[col].isna().to_numpy() | drawn)).all(), col
        assert int(out[col].isna().sum()) == int((df[col].isna().to_numpy() | drawn).sum())
        kept = ~out[col].isna()
        assert out[col][kept].astype(object).tolist() == df[col][kept].astype(object).tolist(), col
    assert out["id"].dtype == "Int64" and out["flag"].dtype == "boolean"  # no float, no object
    assert out["id"].dropna().max() == df["id"][out["id"].notna()].max()  # exact past 2**53


def test_a_columns_cells_do_not_depend_on_the_other_columns_named(df: pd.DataFrame) -> None:
    alone = drop_cells(df, 0.4, ["word"], seed=5)["word"]
    together = drop_cells(df, 0.4, ["x", "word", "at"], seed=5)["word"]
    pd.testing.assert_series_equal(alone, together)
    everything = drop_cells(df, 0.4, seed=5)  # columns=None: all of them
    pd.testing.assert_series_equal(everything["word"], alone)
    assert everything["keep"].isna().any()


def test_rows_are_drawn_by_position_not_by_index_label() -> None:
    df = frame(1000)
    twice = df.set_axis([7] * len(df))  # every row has the same label
    got = drop_cells(twice, 0.5, ["x", "id"], seed=2)
    want = drop_cells(df, 0.5, ["x", "id"], seed=2)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert (got.index == 7).all()


def test_zero_and_one(df: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(drop_cells(df, 0.0, ["x", "word"], seed=1), df)
    assert drop_cells(df, 1.0, ["x", "word"], seed=1)[["x", "word"]].isna().all().all()


@pytest.mark.parametrize("start,rows", [(0, 1), (BLOCK - 3, 10), (BLOCK, BLOCK), (17, 2 * BLOCK + 5), (N - 4, 4)])
def test_any_slice_of_rows_draws_what_the_whole_draws(start: int, rows: int) -> None:
    whole = cell_mask(9, "x", 0, N, 0.5)
    assert (cell_mask(9, "x", start, rows, 0.5) == whole[start:start + rows]).all()


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask is not installed")
@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_dask_drops_the_same_cells_as_pandas(df: pd.DataFrame, partitions: int) -> None:
    import dask
    import dask.dataframe as dd

    want = drop_cells(df, 0.3, COLUMNS, seed=21)
    with dask.config.set({"dataframe.convert-string": False}):  # keep pandas' own string dtype
        ddf = dd.from_pandas(df, npartitions=partitions)
        lazy = drop_cells(ddf, 0.3, COLUMNS, seed=21)
        assert isinstance(lazy, dd.DataFrame)
        got = lazy.compute()
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.gpu
def test_cudf_drops_the_same_cells_as_pandas(df: pd.DataFrame) -> None:
    cudf = pytest.importorskip("cudf", reason=GPU_SKIP)
    want = drop_cells(df, 0.3, COLUMNS, seed=21)
    got = drop_cells(cudf.from_pandas(df), 0.3, COLUMNS, seed=21)
    assert isinstance(got, cudf.DataFrame)
    got = got.to_pandas(nullable=True)  # ints stay exact, bools stay bools
    pd.testing.assert_frame_equal(got.isna(), want.isna())
    for col in df.columns:
        assert got[col].dropna().astype(object).tolist() == want[col].dropna().astype(object).tolist(), col


@pytest.mark.parametrize("kwargs,needle", [
    ({"frac": 1.5}, "frac must be a number from 0 to 1"),
    ({"frac": "0.1"}, "frac must be a number from 0 to 1"),
    ({"frac": 0.1, "seed": -1}, "seed must be a non-negative integer"),
    ({"frac": 0.1, "columns": ["nope"]}, "has no column 'nope'"),
])
def test_bad_arguments_say_what_to_do(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(HeadwaterError) as info:
        drop_cells(frame(10), **kwargs)
    assert needle in str(info.value) and info.value.hint


def test_not_a_frame() -> None:
    with pytest.raises(HeadwaterError, match="pandas, cuDF or Dask"):
        drop_cells({"a": [1]}, 0.1)
