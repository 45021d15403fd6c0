"""A feature store over frames: point-in-time (as-of) joins, so that a label at time t only sees
feature values known strictly before t, and the latest value per entity for online lookup.

The same calls work on pandas and cuDF frames (cuDF has no `merge_asof`): label and feature rows
are stacked, sorted by (entity, time, labels before features), and each label takes the time of
the newest feature row before it by a per-entity forward fill, then that row's values by a merge.

Rules, on every backend:

* **strict**: a feature row whose time equals the label's time is *not* visible to it (a value
  computed at t was not known to a decision made at t); NA where an entity has no earlier row;
* two feature rows of one entity with the same time: the later row in the frame wins (as in
  `latest`); rows with a null entity or time are ignored (never known);
* labels keep their order and columns; the result has a fresh RangeIndex. On Dask frames
  both sides are shuffled on the entity and joined partition by partition, so rows come out
  grouped by partition instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pandas.api.types import is_numeric_dtype

from engine.errors import HeadwaterError
from engine.lake.history import VALID_FROM, VALID_TO
from engine.transform.frames import frame_module, require_columns

ROW, KIND, TIME, KNOWN = "_hw_row", "_hw_kind", "_hw_time", "_hw_known_at"  # working columns
ORDER = "_hw_order"  # a feature row's place in the whole Dask frame
UNTIL = "_hw_until"  # a version's end, carried through an as-of join of a history
# sort order of the kinds of stacked row at one time: labels first (strict), or after features
LABEL, FEATURE, LABEL_AFTER = 0, 1, 2


@dataclass(frozen=True)
class FeatureSet:
    """A feature table for `training_set`: rows of (entity, feature_time, values), each value known
    from its `feature_time` on. `columns` picks the values (default: all others); `prefix` is put
    in front of their names in the training set."""

    frame: Any
    entity: str | Sequence[str]
    feature_time: str
    columns: Sequence[str] | None = None
    prefix: str = ""


def as_of(labels: Any, features: Any, *, entity: str | Sequence[str], label_time: str,
          feature_time: str, columns: Sequence[str] | None = None, prefix: str = "",
          xp: ModuleType | None = None, strict: bool = True) -> Any:
    """`labels` with, on each row, the feature values of its entity known strictly before its
    `label_time`: those of the newest `features` row whose `feature_time` is earlier (NA if none).

    `entity` names the key column(s), present in both frames. `columns` are the feature columns
    to bring (default: all but the entity and `feature_time`), named `prefix + column`.
    `strict=False` lets a row stamped exactly at the label's time be seen too (`as_of_history`).
    """
    keys = _keys(entity)
    xp = xp or frame_module(labels)
    _same_backend(labels, features)
    require_columns(labels, [*keys, label_time], "labels")
    require_columns(features, [*keys, feature_time], "features")
    values = _value_columns(features, keys, feature_time, columns)
    names = {c: f"{prefix}{c}" for c in values}
    clash = [n for n in [*names.values(), ROW, KIND, TIME, KNOWN] if n in list(labels.columns)]
    if clash:
        raise HeadwaterError(f"the as-of join would add columns labels already has: {clash}",
                             "pass prefix='...' (or columns=[...]) to name the feature columns apart")
    for key in keys:
        _check_keys(labels[key], features[key], key)
    if xp.__name__ == "dask.dataframe":
        return _as_of_dask(labels, features, keys, label_time, feature_time, values, prefix, strict)
    label = LABEL if strict else LABEL_AFTER

    lab = labels.reset_index(drop=True)
    lab = lab.assign(**{ROW: _row_numbers(lab)})
    f = features.reset_index(drop=True)
    known = _feature_times(lab[label_time], f[feature_time], label_time, feature_time)
    f = f[keys].assign(**{KNOWN: known}, **{n: f[c] for c, n in names.items()})
    f = f[_present(f, [*keys, KNOWN])].drop_duplicates(subset=[*keys, KNOWN], keep="last")  # frame order

    asked = lab[_present(lab, [*keys, label_time])]
    asked = asked[[*keys, ROW]].assign(**{TIME: asked[label_time], KIND: label,
                                          KNOWN: _nulls_like(asked[label_time], f[KNOWN].dtype)})
    offered = f[keys].assign(**{ROW: -1, TIME: f[KNOWN], KIND: FEATURE, KNOWN: f[KNOWN]})
    both = xp.concat([asked, offered], ignore_index=True)
    both = both.sort_values([*keys, TIME, KIND]).reset_index(drop=True)
    both[KNOWN] = both.groupby(keys)[KNOWN].ffill()
    hits = both[(both[KIND] == label) & both[KNOWN].notnull()][[*keys, ROW, KNOWN]]
    hits = hits.assign(**{KNOWN: hits[KNOWN].astype(f[KNOWN].dtype)})
    hits = hits.merge(f, on=[*keys, KNOWN], how="inner")[[ROW, *names.values()]]
    out = lab.merge(hits, on=ROW, how="left").sort_values(ROW)
    return out.drop(columns=[ROW]).reset_index(drop=True)


def _as_of_dask(labels: Any, features: Any, keys: list[str], label_time: str, feature_time: str,
                values: list[str], prefix: str, strict: bool) -> Any:
    """as_of on Dask frames: both are shuffled on the entity into the same number of partitions
    (an entity's rows all land in one), then joined partition by partition on their own backend.
    Rows come out grouped by partition, not in the labels' order."""
    features = features.astype({k: labels[k].dtype for k in keys})  # equal keys must hash equally
    features = features.assign(**{ORDER: _row_numbers(features)})  # the shuffle moves rows: keep ties' order
    parts = max(labels.npartitions, features.npartitions)
    join: dict[str, Any] = dict(entity=keys, label_time=label_time, feature_time=feature_time, columns=values,
                                prefix=prefix, strict=strict)
    meta = as_of(labels._meta_nonempty, features._meta_nonempty, **join).iloc[:0]
    return labels.shuffle(on=keys, npartitions=parts).map_partitions(
        _as_of_partition, features.shuffle(on=keys, npartitions=parts), join, meta=meta,
        align_dataframes=False)


def _as_of_partition(labels: Any, features: Any, join: dict[str, Any]) -> Any:
    return as_of(labels, features.sort_values(ORDER).drop(columns=[ORDER]), **join)


def as_of_history(labels: Any, history: Any, *, entity: str | Sequence[str], label_time: str,
                  columns: Sequence[str] | None = None, prefix: str = "", xp: ModuleType | None = None) -> Any:
    """`labels` with, on each row, the values of its entity's version that was valid at its
    `label_time` in `history`, a frame of an SCD2 history table (write="scd2"): the version with
    `_hw_valid_from <= label_time < _hw_valid_to` (no `_hw_valid_to`: still current), the rule of
    `headwater show --as-of`; NA where the entity had no version then (not yet, or deleted).

    `columns` are the history's columns to bring (default: all but the entity and the `_hw_`
    ones), named `prefix + column`; `label_time` must be tz-aware, as the history's times are.
    """
    keys = _keys(entity)
    require_columns(history, [*keys, VALID_FROM, VALID_TO], "history (an SCD2 table, write='scd2')")
    values = [c for c in history.columns if c not in keys and not str(c).startswith("_hw_")] \
        if columns is None else ([columns] if isinstance(columns, str) else list(columns))
    require_columns(history, values, "history")
    versions = history[[*keys, VALID_FROM, *values]].assign(**{UNTIL: history[VALID_TO]})
    out = as_of(labels, versions, entity=keys, label_time=label_time, feature_time=VALID_FROM,
                columns=[*values, UNTIL], prefix=prefix, xp=xp, strict=False)
    names = [prefix + c for c in values]
    if (xp or frame_module(labels)).__name__ == "dask.dataframe":  # partition by partition: no index alignment
        return out.map_partitions(_ended_as_na, label_time, names, prefix + UNTIL,
                                  meta=out._meta.drop(columns=[prefix + UNTIL]))
    return _ended_as_na(out, label_time, names, prefix + UNTIL)


def _ended_as_na(frame: Any, label_time: str, names: list[str], until: str) -> Any:
    """`frame` with NA in `names` where the version joined had ended (`until`) by the label's time
    (its entity was deleted by then), and without `until`."""
    ended = frame[until].notnull() & (frame[until] <= frame[label_time])
    return frame.assign(**{n: frame[n].mask(ended) for n in names}).drop(columns=[until])


def training_set(labels: Any, *feature_sets: FeatureSet, label_time: str,
                 xp: ModuleType | None = None) -> Any:
    """`labels` joined point-in-time (see `as_of`) with each feature set in turn, at `label_time`."""
    if not feature_sets:
        raise HeadwaterError("training_set() got no feature sets",
                             "pass FeatureSet(frame, entity=..., feature_time=...) for each feature table")
    out = labels
    for fs in feature_sets:
        if not isinstance(fs, FeatureSet):
            raise HeadwaterError(f"training_set() takes FeatureSet objects, got {type(fs).__name__}",
                                 "wrap each feature table: FeatureSet(frame, entity=..., feature_time=...)")
        out = as_of(out, fs.frame, entity=fs.entity, label_time=label_time, feature_time=fs.feature_time,
                    columns=fs.columns, prefix=fs.prefix, xp=xp)
    return out


def latest(features: Any, *, entity: str | Sequence[str], feature_time: str) -> Any:
    """One row per entity: its newest feature row by `feature_time` (the later row in the frame on a
    tie; rows with a null entity or time are ignored), sorted by entity, with a fresh RangeIndex."""
    keys = _keys(entity)
    require_columns(features, [*keys, feature_time], "features")
    _require_time(features[feature_time], "features", feature_time)
    f = features.reset_index(drop=True)
    if ROW in list(f.columns):
        raise HeadwaterError(f"features has a column named {ROW!r}, which latest() uses itself",
                             "rename that column")
    f = f.assign(**{ROW: _row_numbers(f)})
    f = f[_present(f, [*keys, feature_time])].sort_values([*keys, feature_time, ROW])
    f = f.drop_duplicates(subset=keys, keep="last").sort_values(keys)
    return f.drop(columns=[ROW]).reset_index(drop=True)


def _keys(entity: str | Sequence[str]) -> list[str]:
    keys = [entity] if isinstance(entity, str) else list(entity)
    if not keys:
        raise HeadwaterError("no entity column given", "pass entity='user_id' (or a list of columns)")
    return keys


def _same_backend(labels: Any, features: Any) -> None:
    if frame_module(labels) is not frame_module(features):
        raise HeadwaterError(f"labels is a {type(labels).__module__} frame but features a "
                             f"{type(features).__module__} one", "build both on the same backend (ctx.xp)")


def _value_columns(features: Any, keys: list[str], feature_time: str,
                   columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return [c for c in features.columns if c not in keys and c != feature_time]
    columns = [columns] if isinstance(columns, str) else list(columns)
    require_columns(features, columns, "features")
    return columns


def _require_time(col: Any, what: str, name: str) -> None:
    if getattr(col.dtype, "kind", "") != "M":
        raise HeadwaterError(f"{what} column {name!r} is {col.dtype}, not a timestamp",
                             f"convert it first, e.g. frame[{name!r}] = ctx.xp.to_datetime(frame[{name!r}])")


def _feature_times(label_col: Any, feature_col: Any, label_time: str, feature_time: str) -> Any:
    """The feature times, in the label times' time zone; an error if one is tz-aware and one naive."""
    _require_time(label_col, "labels", label_time)
    _require_time(feature_col, "features", feature_time)
    label_tz, feature_tz = getattr(label_col.dtype, "tz", None), getattr(feature_col.dtype, "tz", None)
    if (label_tz is None) != (feature_tz is None):
        aware, naive = (label_time, feature_time) if label_tz is not None else (feature_time, label_time)
        raise HeadwaterError(f"cannot compare times: {aware!r} has a time zone but {naive!r} has none",
                             f"make both naive UTC (.dt.tz_convert(None) on {aware!r}) or both aware "
                             f"(.dt.tz_localize('UTC') on {naive!r})")
    if label_tz is not None and str(label_tz) != str(feature_tz):
        return feature_col.dt.tz_convert(label_tz)
    return feature_col


def _check_keys(label_key: Any, feature_key: Any, name: str) -> None:
    if is_numeric_dtype(label_key.dtype) != is_numeric_dtype(feature_key.dtype):
        raise HeadwaterError(f"entity column {name!r} is {label_key.dtype} in labels but "
                             f"{feature_key.dtype} in features", "cast one so both have the same type")


def _row_numbers(frame: Any) -> Any:
    """0, 1, 2, … down the frame (a running sum, so Dask can compute it across partitions)."""
    return frame.assign(**{ROW: 1})[ROW].cumsum() - 1


def _present(frame: Any, columns: list[str]) -> Any:
    """A mask of the rows where none of `columns` is null."""
    mask = frame[columns[0]].notnull()
    for c in columns[1:]:
        mask = mask & frame[c].notnull()
    return mask


def _nulls_like(col: Any, dtype: Any) -> Any:
    """A column of nulls with `col`'s index, of type `dtype`."""
    return col.where(col.isna()).astype(dtype)
