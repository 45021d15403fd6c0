"""The feature store: as-of joins never show a label a value from its future (nor from its own
instant), checked case by case and against a brute-force oracle on random data; `latest`; the
errors. The backend-parametrised tests run on pandas here and on cuDF where it imports."""
from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import HeadwaterError
from engine.transform.features import FeatureSet, as_of, latest, training_set

GPU_SKIP = "cuDF not installed / no GPU: runs on the GPU machine"
T0 = pd.Timestamp("2026-03-01")
S = pd.Timedelta(seconds=1)


@pytest.fixture(params=["pandas", pytest.param("cudf", marks=pytest.mark.gpu)])
def on(request: pytest.FixtureRequest) -> Any:
    """Moves a pandas frame onto the backend under test (results come back with .to_pandas())."""
    if request.param == "cudf":
        cudf = pytest.importorskip("cudf", reason=GPU_SKIP)
        return cudf.from_pandas
    return lambda frame: frame.copy()


def back(frame: Any) -> pd.DataFrame:
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


# ---- no value from the future --------------------------------------------------------------

def test_only_values_known_strictly_before_the_label_are_seen(on: Any) -> None:
    """Each label has feature rows just before, exactly at and just after its time: only the
    one before (the newest of those before) is seen."""
    label_times = [T0 + pd.Timedelta(hours=h) for h in (1, 5, 9)]
    labels = pd.DataFrame({"user": [1, 2, 1], "t": label_times, "label": ["a", "b", "c"]})
    rows = []
    for user, t in zip(labels["user"], labels["t"]):
        for delta in (-10 * S, -S, 0 * S, S):
            rows.append({"user": user, "at": t + delta, "v": int((t + delta - T0) / S)})
    features = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    got = back(as_of(on(labels), on(features), entity="user", label_time="t", feature_time="at",
                     columns=["v", "at"], prefix="f_"))
    assert list(got.columns) == ["user", "t", "label", "f_v", "f_at"]
    for row in got.itertuples():
        before = [r for r in rows if r["user"] == row.user and r["at"] < row.t]
        newest = max(before, key=lambda r: r["at"])
        assert row.f_at == newest["at"] < row.t
        assert row.f_v == newest["v"] == int((row.t - S - T0) / S)  # 1 s before, not at, not after
    pd.testing.assert_frame_equal(got[["user", "t", "label"]], labels)


def brute_force(labels: pd.DataFrame, features: pd.DataFrame) -> list[Any]:
    """For each label row: `v` of the newest feature row of its entity strictly before it (the
    later row on a tie of times), or None; plain Python loops, nothing shared with engine code."""
    out = []
    feats = list(features.itertuples(index=False))
    for lab in labels.itertuples(index=False):
        best, best_at = None, None
        if not (missing(lab.e) or missing(lab.t)):
            for f in feats:  # frame order: a later row with the same time replaces the earlier
                if not missing(f.e) and not missing(f.at) and f.e == lab.e and f.at < lab.t:
                    if best_at is None or f.at >= best_at:
                        best, best_at = f, f.at
        out.append((None if best is None else best.v, None if best is None else best.at))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_random_data_matches_a_brute_force_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_lab, n_feat, n_ent, n_times = rng.integers(1, 40), rng.integers(0, 60), rng.integers(1, 6), rng.integers(1, 12)
    times = T0 + pd.to_timedelta(rng.integers(0, n_times, n_feat), unit="h")  # few times: many ties
    features = pd.DataFrame({"e": rng.integers(0, n_ent, n_feat).astype(float), "at": times,
                             "v": np.round(rng.normal(size=n_feat), 3)})
    features.loc[rng.random(n_feat) < 0.15, "v"] = np.nan  # a newest row's null value is its value
    features.loc[rng.random(n_feat) < 0.05, "at"] = pd.NaT  # never known: ignored
    features.loc[rng.random(n_feat) < 0.05, "e"] = np.nan
    labels = pd.DataFrame({"e": rng.integers(0, n_ent + 2, n_lab).astype(float),  # some never featured
                           "t": T0 + pd.to_timedelta(rng.integers(0, n_times + 1, n_lab), unit="h"),
                           "y": rng.integers(0, 2, n_lab)}, index=rng.permutation(n_lab) + 100)
    labels.loc[labels.index[rng.random(n_lab) < 0.05], "t"] = pd.NaT
    got = as_of(labels, features, entity="e", label_time="t", feature_time="at", columns=["v", "at"],
                prefix="f_")
    want = brute_force(labels, features)
    assert len(got) == len(labels) and isinstance(got.index, pd.RangeIndex)
    pd.testing.assert_frame_equal(got[["e", "t", "y"]], labels.reset_index(drop=True))
    for (v, at), got_v, got_at, t in zip(want, got["f_v"], got["f_at"], got["t"]):
        assert (missing(v) and missing(got_v)) or v == got_v
        assert (at is None and missing(got_at)) or at == got_at
        assert missing(got_at) or got_at < t
    # and the same as pandas' own merge_asof, where the data has no tie pandas resolves differently
    if not features.dropna(subset=["e", "at"]).duplicated(["e", "at"]).any():
        ref = pd.merge_asof(labels.reset_index(drop=True).reset_index().dropna(subset=["t", "e"]).sort_values("t"),
                            features.dropna(subset=["e", "at"]).sort_values("at"), left_on="t",
                            right_on="at", by="e", allow_exact_matches=False).set_index("index")
        mine = got.loc[ref.index]
        assert np.allclose(mine["f_v"].to_numpy(float), ref["v"].to_numpy(float), equal_nan=True)


def test_entities_are_kept_apart_and_missing_ones_get_na(on: Any) -> None:
    labels = pd.DataFrame({"shop": ["a", "a", "b", "zz"], "item": [1, 2, 1, 1],
                           "t": [T0 + 3 * S] * 4})
    features = pd.DataFrame({"shop": ["a", "a", "b", "b"], "item": [1, 2, 2, 1],
                             "at": [T0, T0 + S, T0, T0 + 5 * S], "price": [10.0, 20.0, 30.0, 40.0]})
    got = back(as_of(on(labels), on(features), entity=["shop", "item"], label_time="t", feature_time="at"))
    assert got["price"].iloc[:2].tolist() == [10.0, 20.0]
    assert got["price"].iloc[2:].isna().all()  # b/1's only row is after t; zz has none
    assert list(got.columns) == ["shop", "item", "t", "price"]


def test_a_newer_null_value_wins_over_an_older_value(on: Any) -> None:
    labels = pd.DataFrame({"u": [1, 1], "t": [T0 + 2 * S, T0 + 5 * S]})
    features = pd.DataFrame({"u": [1, 1, 1], "at": [T0, T0 + S, T0 + 3 * S], "v": [1.0, None, 3.0]})
    got = back(as_of(on(labels), on(features), entity="u", label_time="t", feature_time="at"))
    assert got["v"].isna().iloc[0] and got["v"].iloc[1] == 3.0


def test_ties_the_later_feature_row_wins_and_equal_times_are_not_seen(on: Any) -> None:
    labels = pd.DataFrame({"u": [1, 1], "t": [T0 + S, T0 + 2 * S]})
    features = pd.DataFrame({"u": [1, 1, 1, 1], "at": [T0, T0, T0 + S, T0 + S], "v": [1, 2, 3, 4]})
    got = back(as_of(on(labels), on(features), entity="u", label_time="t", feature_time="at"))
    assert got["v"].tolist() == [2, 4]


def test_labels_with_a_null_time_or_entity_get_na(on: Any) -> None:
    labels = pd.DataFrame({"u": [1.0, None, 1.0], "t": [pd.NaT, T0 + S, T0 + S]})
    features = pd.DataFrame({"u": [1.0], "at": [T0], "v": [7.0]})
    got = back(as_of(on(labels), on(features), entity="u", label_time="t", feature_time="at"))
    assert got["v"].isna().tolist() == [True, True, False]


def test_time_zones_are_compared_as_instants() -> None:
    labels = pd.DataFrame({"u": [1], "t": [pd.Timestamp("2026-03-01 12:00", tz="UTC")]})
    paris = pd.to_datetime(["2026-03-01 12:30", "2026-03-01 13:30"]).tz_localize("Europe/Paris")
    features = pd.DataFrame({"u": [1, 1], "at": paris, "v": [1, 2]})  # 11:30 UTC and 12:30 UTC
    got = as_of(labels, features, entity="u", label_time="t", feature_time="at")
    assert got["v"].tolist() == [1]


def test_times_of_different_units_compare_exactly() -> None:
    """Labels in nanoseconds, features in microseconds: half a microsecond decides."""
    at = pd.Timestamp("2026-03-01 12:00:00")
    labels = pd.DataFrame({"u": [1, 1], "t": pd.Series([at, at + pd.Timedelta(500, "ns")]).astype("datetime64[ns]")})
    features = pd.DataFrame({"u": [1, 1], "at": pd.Series([at - S, at]).astype("datetime64[us]"), "v": [1, 2]})
    got = as_of(labels, features, entity="u", label_time="t", feature_time="at")
    assert got["v"].tolist() == [1, 2]
    assert got["t"].dtype == "datetime64[ns]"


def test_training_set_joins_each_feature_set_point_in_time(on: Any) -> None:
    labels = pd.DataFrame({"photo": [1, 2], "user": [7, 7], "t": [T0 + 2 * S, T0 + 4 * S]})
    users = pd.DataFrame({"user": [7, 7], "day_end": [T0 + S, T0 + 3 * S], "views": [5, 9]})
    photos = pd.DataFrame({"photo": [1, 2, 2], "at": [T0, T0, T0 + 4 * S], "score": [0.5, 0.1, 0.9]})
    got = back(training_set(on(labels), FeatureSet(on(users), "user", "day_end", ["views"], "user_"),
                            FeatureSet(on(photos), "photo", "at", prefix="photo_"), label_time="t"))
    assert list(got.columns) == ["photo", "user", "t", "user_views", "photo_score"]
    assert got["user_views"].tolist() == [5, 9]
    assert got["photo_score"].tolist() == [0.5, 0.1]  # photo 2's 0.9 comes at its label's instant


def test_latest_gives_each_entity_its_newest_row(on: Any) -> None:
    rng = np.random.default_rng(5)
    n = 200
    features = pd.DataFrame({"u": rng.integers(0, 20, n), "at": T0 + pd.to_timedelta(rng.integers(0, 30, n), "h"),
                             "v": rng.integers(0, 1000, n)})
    features.loc[rng.random(n) < 0.05, "at"] = pd.NaT
    got = back(latest(on(features), entity="u", feature_time="at"))
    want = {}
    for u, at, v in features.itertuples(index=False):
        if not missing(at) and (u not in want or at >= want[u][0]):
            want[u] = (at, v)
    assert got["u"].tolist() == sorted(want)
    assert [(r.at, r.v) for r in got.itertuples()] == [want[u] for u in sorted(want)]
    assert list(got.columns) == ["u", "at", "v"]


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_dask_joins_and_latest_equal_pandas(seed: int) -> None:
    """The same rows as pandas (Dask returns them grouped by partition), ties included: the
    shuffle must not change which of two rows at one time wins."""
    import dask.dataframe as dd

    rng = np.random.default_rng(seed)
    n = 400
    labels = pd.DataFrame({"e": rng.integers(0, 20, n), "t": T0 + pd.to_timedelta(rng.integers(0, 60, n), "h"),
                           "y": rng.integers(0, 2, n)})
    features = pd.DataFrame({"e": rng.integers(0, 25, n).astype("float64"),  # other key dtype
                             "at": T0 + pd.to_timedelta(rng.integers(0, 60, n), "h"), "v": rng.integers(0, 99, n)})
    assert features.duplicated(["e", "at"]).any()
    join = dict(entity="e", label_time="t", feature_time="at")
    lazy = as_of(dd.from_pandas(labels, npartitions=3), dd.from_pandas(features, npartitions=4), **join)
    assert isinstance(lazy, dd.DataFrame)
    got = lazy.compute()
    assert got.dtypes.to_dict() == lazy.dtypes.to_dict()
    order = ["e", "t", "y", "v"]
    pd.testing.assert_frame_equal(got.sort_values(order, ignore_index=True),
                                  as_of(labels, features, **join).sort_values(order, ignore_index=True))
    newest = latest(dd.from_pandas(features, npartitions=4), entity="e", feature_time="at").compute()
    pd.testing.assert_frame_equal(newest.reset_index(drop=True), latest(features, entity="e", feature_time="at"))


# ---- errors ----------------------------------------------------------------------------------

def error(call: Any) -> HeadwaterError:
    with pytest.raises(HeadwaterError) as info:
        call()
    assert info.value.hint
    return info.value


def test_clear_errors_for_bad_input() -> None:
    labels = pd.DataFrame({"u": [1], "t": [T0]})
    features = pd.DataFrame({"u": [1], "at": [T0], "v": [1]})
    join = dict(entity="u", label_time="t", feature_time="at")
    assert "labels has no column 'user'" in str(error(lambda: as_of(labels, features, **{**join, "entity": "user"})))
    assert "'when'" in str(error(lambda: as_of(labels, features, **{**join, "feature_time": "when"})))
    assert "'nope'" in str(error(lambda: as_of(labels, features, columns=["nope"], **join)))
    text = labels.assign(t=["2026-03-01"])
    assert "to_datetime" in error(lambda: as_of(text, features, **join)).hint
    aware = labels.assign(t=labels["t"].dt.tz_localize("UTC"))
    err = error(lambda: as_of(aware, features, **join))
    assert "time zone" in err.message and "tz_localize" in err.hint and "tz_convert" in err.hint
    clash = labels.assign(v=[0])
    assert "prefix" in error(lambda: as_of(clash, features, **join)).hint
    assert "entity column 'u'" in str(error(lambda: as_of(labels.assign(u=["1"]), features, **join)))
    assert "FeatureSet" in error(lambda: training_set(labels, label_time="t")).hint
    assert "FeatureSet" in str(error(lambda: training_set(labels, features, label_time="t")))
    assert "pandas, cuDF or Dask" in str(error(lambda: as_of({"u": [1]}, features, **join)))
    assert "not a timestamp" in str(error(lambda: latest(features.assign(at=[1]), entity="u", feature_time="at")))
