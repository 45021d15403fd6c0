"""The photo-popularity demo's warehouse, read back and checked row for row against the
independent pandas oracle (tests/support/photo_reference.py). Used by the end-to-end demo tests,
the Prefect server test and the container tests, which all end with the demo's warehouse."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.support.photo_reference import expected_training_set


def warehouse_table(directory: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(f"select * from {name}").df()


def assert_matches_oracle(directory: Path) -> None:
    got = warehouse_table(directory, "training_set").sort_values("photo_id", ignore_index=True)
    want = expected_training_set(directory / "data" / "photo_popularity").sort_values(
        "photo_id", ignore_index=True)
    assert len(want) > 0 and list(got.columns) == list(want.columns)
    for column in want.columns:
        if pd.api.types.is_float_dtype(want[column]):
            assert got[column].to_numpy() == pytest.approx(want[column].to_numpy(), rel=1e-9), column
        elif pd.api.types.is_datetime64_any_dtype(want[column]):
            assert (got[column].astype("datetime64[us]") == want[column].astype("datetime64[us]")).all(), column
        else:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column
