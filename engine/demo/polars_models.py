"""The demo's polars model: engagement per day, written with polars expressions over LazyFrames
(polars' streaming engine on a CPU, cudf-polars on a GPU)."""
from __future__ import annotations

from typing import Any


def daily_engagement(events: Any) -> Any:
    """Views, likes, logins and active users per day of the event logs."""
    import polars as pl

    kind = pl.col("kind")
    return (events.with_columns(pl.col("ts").dt.date().alias("day"))
            .group_by("day")
            .agg((kind == "view").sum().cast(pl.Int64).alias("views"),
                 (kind == "like").sum().cast(pl.Int64).alias("likes"),
                 (kind == "login").sum().cast(pl.Int64).alias("logins"),
                 pl.col("user_id").n_unique().cast(pl.Int64).alias("active_users"))
            .sort("day"))
