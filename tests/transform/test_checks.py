"""Data checks: specs parse (or fail with a hint), and every kind counts failing rows exactly.

Expected counts are computed here in plain Python over the same rows the checks see."""
from __future__ import annotations

import random
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from engine.graph import TableRef
from engine.lake import Lake
from engine.transform.backends.pandas import PandasBackend
from engine.transform.checks import (
    accepted_values,
    custom,
    describe,
    expression,
    failure_error,
    failures,
    not_null,
    parse,
    relationships,
    row_count,
    run_checks,
    unique,
)

KINDS_OF_EVENT = ["view", "like", "login"]


def make_rows(n: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """Rows with duplicates, nulls and out-of-range values sprinkled in, deterministically."""
    rng = random.Random(seed)

    def maybe(value: Any, p: float = 0.05) -> Any:
        return None if rng.random() < p else value

    return [{"photo_id": maybe(rng.randrange(n * 3 // 4)),
             "user_id": maybe(rng.randrange(60)),
             "day": maybe(rng.randrange(5)),
             "kind": maybe(rng.choice(KINDS_OF_EVENT + ["share"]) if rng.random() < 0.1
                           else rng.choice(KINDS_OF_EVENT)),
             "likes": maybe(rng.randrange(-3, 50)),
             "views": maybe(rng.randrange(0, 60))} for _ in range(n)]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return make_rows()


@pytest.fixture(scope="module")
def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def duplicated_rows(rows: list[dict[str, Any]], cols: list[str]) -> int:
    keys = [tuple(r[c] for c in cols) for r in rows if all(r[c] is not None for c in cols)]
    counts = Counter(keys)
    return sum(n for n in counts.values() if n > 1)


def one(check: Any, table: pa.Table, **kw: Any) -> Any:
    (result,) = run_checks([check], table, **kw)
    return result


# -- each kind, pass and fail ---------------------------------------------------------------
@pytest.mark.parametrize("cols", [["photo_id"], ["user_id", "day"], ["photo_id", "user_id", "day"]])
def test_unique_counts_rows_whose_key_repeats_and_skips_null_keys(rows, table, cols) -> None:
    expected = duplicated_rows(rows, cols)
    assert expected > 0 or cols == ["photo_id", "user_id", "day"]
    result = one(unique(*cols), table)
    assert (result.passed, result.failing_rows) == (expected == 0, expected)
    if expected:
        keys = Counter(tuple(r[c] for c in cols) for r in rows if all(r[c] is not None for c in cols))
        top_key, top = keys.most_common(1)[0]
        assert result.status == "fail" and result.detail.startswith(
            f"{expected:,} rows share {sum(n > 1 for n in keys.values()):,} duplicated key(s), e.g. ")
        assert f" ({top} rows)" in result.detail.split(";")[0]


def test_unique_passes_on_a_key_with_nulls_and_no_repeats() -> None:
    t = pa.table({"a": [1, 1, None, None, 2], "b": ["x", "y", "x", "x", None]})
    assert one("unique(a, b)", t).passed  # (None, x) twice: nulls are never equal
    assert one("unique(a)", t).failing_rows == 2


def test_not_null_counts_rows_with_any_listed_column_null(rows, table) -> None:
    cols = ["photo_id", "user_id"]
    expected = sum(any(r[c] is None for c in cols) for r in rows)
    result = one(not_null(*cols), table)
    assert (result.passed, result.failing_rows) == (False, expected)
    for col in cols:
        assert f"{col}: {sum(r[col] is None for r in rows):,}" in result.detail
    clean = table.filter(pa.compute.and_(table["photo_id"].is_valid(), table["user_id"].is_valid()))
    assert one(not_null(*cols), clean).passed


def test_not_null_treats_nan_as_a_value() -> None:
    t = pa.table({"x": pa.array([1.0, float("nan"), None])})
    assert one("not_null(x)", t).failing_rows == 1


def test_accepted_values_counts_other_non_null_values(rows, table) -> None:
    expected = sum(r["kind"] is not None and r["kind"] not in KINDS_OF_EVENT for r in rows)
    assert expected > 0
    result = one(accepted_values("kind", KINDS_OF_EVENT), table)
    assert (result.passed, result.failing_rows) == (False, expected)
    assert "'share'" in result.detail
    assert one(accepted_values("kind", KINDS_OF_EVENT + ["share"]), table).passed  # nulls pass


def test_accepted_values_on_numbers_and_dates() -> None:
    t = pa.table({"stars": [1, 2, 5, None, 3], "day": [date(2026, 1, 1), date(2026, 1, 2), None,
                                                        date(2026, 1, 1), date(2026, 1, 3)]})
    assert one("accepted_values(stars, [1, 2, 3])", t).failing_rows == 1
    assert one("accepted_values(day, ['2026-01-01', '2026-01-02'])", t).failing_rows == 1


def test_row_count_fails_by_the_distance_from_the_range(table) -> None:
    n = table.num_rows
    assert one(row_count(min=n), table).passed and one(row_count(max=n), table).passed
    below, above = one(row_count(min=n + 7), table), one(row_count(1, n - 3), table)
    assert (below.passed, below.failing_rows) == (False, 7) and f"at least {n + 7:,}" in below.detail
    assert (above.passed, above.failing_rows) == (False, 3)
    assert one("row_count(min=1)", table.slice(0, 0)).failing_rows == 1


def test_expression_fails_rows_where_it_is_false_or_null(rows, table) -> None:
    def holds(r: dict[str, Any]) -> bool:
        return r["likes"] is not None and r["views"] is not None and 0 <= r["likes"] <= r["views"]

    expected = sum(not holds(r) for r in rows)
    result = one(expression("likes >= 0 AND likes <= views"), table)
    assert (result.passed, result.failing_rows) == (False, expected)
    assert one("expression(views >= 0 or views is null)", table).passed


def test_relationships_to_a_model_table(rows, table) -> None:
    known = sorted({r["user_id"] for r in rows if r["user_id"] is not None})[:40]
    users = pa.table({"user_id": known + [None]})
    expected = sum(r["user_id"] is not None and r["user_id"] not in known for r in rows)
    asked: list[str] = []

    def resolve(ref: str) -> pa.Table:
        asked.append(ref)
        return users

    result = one("relationships(user_id, to=user_activity.user_id)", table, resolve=resolve)
    assert (result.passed, result.failing_rows, asked) == (False, expected, ["user_activity"])
    every = pa.table({"uid": [r["user_id"] for r in rows]})
    assert one(relationships("user_id", to="user_activity", field="uid"), table, resolve=lambda _: every).passed


def test_relationships_to_a_raw_delta_table(tmp_path: Path, rows, table) -> None:
    lake = Lake(str(tmp_path / "lake"))
    photos = sorted({r["photo_id"] for r in rows if r["photo_id"] is not None})
    kept = photos[::2]
    lake.write("raw.photos", pa.table({"photo_id": kept, "title": [f"p{p}" for p in kept]}),
               run_id="r1", meta={})
    expected = sum(r["photo_id"] is not None and r["photo_id"] not in set(kept) for r in rows)

    def resolve(ref: str) -> Any:
        return lake.dataset(str(TableRef.parse(ref)))

    result = one("relationships(photo_id, raw.photos.photo_id)", table, resolve=resolve)
    assert (result.passed, result.failing_rows) == (False, expected)
    missing = one("relationships(photo_id, to=raw.nothing)", table, resolve=resolve)
    assert missing.errored and "no lake table 'raw.nothing'" in missing.detail


# -- custom checks on the pandas backend's frames ----------------------------------------
def test_custom_checks_return_a_mask_a_count_or_a_bool(rows, table) -> None:
    negative = sum(r["likes"] is not None and r["likes"] < 0 for r in rows)
    nulls = sum(r["likes"] is None for r in rows)
    frames: list[Any] = []

    def no_negative_likes(df: pd.DataFrame) -> pd.Series:
        frames.append(df)
        return df["likes"] >= 0  # NaN compares False: a null row fails

    checks = [no_negative_likes,
              custom(lambda df: (df["likes"] >= 0).to_numpy(), name="likes_numpy"),
              custom(lambda df: pd.array([None if pd.isna(v) else v >= 0 for v in df["likes"]], dtype="boolean"),
                     name="likes_nullable"),
              custom(lambda df: pa.array((df["likes"] >= 0).tolist()), name="likes_arrow"),
              custom(lambda df: int((df["likes"] < 0).sum()), name="count"),
              custom(lambda df: np.int64(0), name="numpy_zero"),
              custom(lambda df: bool(df["likes"].max() < 100), name="all_small"),
              custom(lambda df: np.bool_(len(df) > 10**6), name="huge")]
    results = run_checks(checks, table, to_frame=PandasBackend().from_arrow)
    got = {r.name: (r.passed, r.failing_rows) for r in results}
    assert got == {"custom(no_negative_likes)": (False, negative + nulls), "likes_numpy": (False, negative + nulls),
                   "likes_nullable": (False, negative + nulls), "likes_arrow": (False, negative + nulls),
                   "count": (False, negative), "numpy_zero": (True, 0), "all_small": (True, 0),
                   "huge": (False, 0)}
    assert isinstance(frames[0], pd.DataFrame) and len(frames[0]) == len(rows)
    assert results[-1].detail == "returned False"


def test_custom_check_on_a_dask_frame_computes_its_answer(rows, table) -> None:
    dd = pytest.importorskip("dask.dataframe", reason="the dask extra is not installed")
    negative = sum(r["likes"] is not None and r["likes"] < 0 for r in rows)
    to_dask = lambda t: dd.from_pandas(t.to_pandas(), npartitions=3)  # noqa: E731
    assert one(custom(lambda df: (df["likes"] < 0).sum()), table, to_frame=to_dask).failing_rows == negative


@pytest.mark.gpu
def test_custom_check_on_a_cudf_frame(table) -> None:
    pytest.importorskip("cudf", reason="cuDF needs an NVIDIA GPU and the gpu extra")
    from engine.transform.backends.cudf import CudfBackend

    expected = pa.compute.sum(pa.compute.fill_null(pa.compute.less(table["likes"], 0), False)).as_py()
    result = one(custom(lambda df: ~(df["likes"] < 0)), table, to_frame=CudfBackend().from_arrow)
    assert result.failing_rows == expected + table["likes"].null_count


@pytest.mark.parametrize("fn, says", [
    (lambda df: df, "return a boolean Series"),
    (lambda df: df["likes"], "not booleans"),
    (lambda df: (df["likes"] > 0).head(3), "returned 3 values for 400 rows"),
    (lambda df: -2, "cannot be negative"),
    (lambda df: df["no_such_column"], "KeyError"),
])
def test_a_custom_check_that_misbehaves_fails_with_the_reason(table, fn, says) -> None:
    result = one(custom(fn, name="mine"), table)
    assert result.errored and not result.passed and says in result.detail


# -- severity, errors inside checks, summaries -------------------------------------------
def test_warn_checks_report_without_failing(rows, table) -> None:
    results = run_checks(["warn: unique(photo_id)", "unique(photo_id)", "error: not_null(kind)",
                          "row_count(min=1)"], table)
    assert [r.status for r in results] == ["warn", "fail", "fail", "pass"]
    assert [r.name for r in failures(results)] == ["unique(photo_id)", "not_null(kind)"]
    dup = duplicated_rows(rows, ["photo_id"])
    nulls = sum(r["kind"] is None for r in rows)
    assert describe(results) == (f"4 checks: 1 passed, 1 warned (unique(photo_id): {dup:,} rows), "
                                 f"2 failed (unique(photo_id): {dup:,} rows; not_null(kind): {nulls:,} rows)")
    err = failure_error("photo_features", results)
    assert err is not None and "model 'photo_features': 2 check(s) failed" in err.message and "warn: " in err.hint
    assert failure_error("photo_features", results[:1] + results[3:]) is None
    assert results[0].to_dict()["status"] == "warn" and set(results[0].to_dict()) >= {
        "name", "kind", "severity", "passed", "failing_rows", "detail", "seconds"}


def test_a_check_that_cannot_run_fails_and_names_the_columns(table) -> None:
    results = run_checks(["unique(photo)", "expression(lieks > 0)", "expression(likes + 1)",
                          "relationships(user_id, to=users)", "warn: not_null(nope)"], table,
                         resolve=lambda ref: pa.table({"id": [1]}))
    assert all(r.errored and not r.passed for r in results)
    assert "['photo'] not in the output; its columns are photo_id, user_id" in results[0].detail
    assert "lieks" in results[1].detail and "columns are photo_id" in results[1].detail
    assert "not true/false" in results[2].detail
    assert "['user_id'] not in 'users'; its columns are id" in results[3].detail
    assert results[4].status == "warn"
    assert describe(results[4:]) == "1 check: 0 passed, 1 warned (not_null(nope): could not run)"
    assert "needs resolve=" in one("relationships(user_id, to=users)", table).detail


def test_odd_column_names_are_quoted() -> None:
    t = pa.table({'we"ird col': [1, 1, 2], "select": [None, 1, 2]})
    check = unique('we"ird col')
    assert parse(check.name) == check and one(check, t).failing_rows == 2
    assert one(not_null("select"), t).failing_rows == 1
    assert one("expression(\"select\" > 0)", t).failing_rows == 1


def test_a_million_rows(tmp_path: Path) -> None:
    n = 1_000_000
    rng = np.random.default_rng(3)
    ids = np.arange(n)
    ids[rng.choice(n, 500, replace=False)] = 7  # 500 rows collide with row 7
    kinds = rng.choice(np.array(KINDS_OF_EVENT + ["share"]), n, p=[0.5, 0.3, 0.1999, 0.0001])
    likes = rng.integers(-1, 1000, n)
    t = pa.table({"id": ids, "kind": kinds, "likes": likes, "ref": rng.integers(0, 1000, n)})
    _, counts = np.unique(ids, return_counts=True)
    results = run_checks(["unique(id)", "not_null(id, kind)", f"accepted_values(kind, {KINDS_OF_EVENT})",
                          "expression(likes >= 0)", "relationships(ref, to=raw.refs.ref)", "row_count(1, 2000000)"],
                         t, resolve=lambda _: pa.table({"ref": np.arange(0, 1000, 2)}))
    assert [r.failing_rows for r in results] == [
        int(counts[counts > 1].sum()), 0, int((kinds == "share").sum()), int((likes < 0).sum()),
        int((t["ref"].to_numpy() % 2 == 1).sum()), 0]
