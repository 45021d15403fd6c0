"""The photo popularity pipeline: app database, event logs and classifier output in; a daily
training set out, whose uploader features are joined point in time from `user_activity_daily`
(nothing a photo's uploader did on or after its upload day), and `user_features_latest`, each
user's newest features for online lookup. Beside the pandas-API models, `uploader_stats` is a
SQL model (`sql/uploader_stats.sql`, DuckDB on a CPU) and `daily_engagement` a polars model,
partitioned by day: a run recomputes only the days whose events changed, and
`headwater backfill ... -s daily_engagement --from D1 --to D2` rebuilds a range.
(`user_activity_daily` is not partitioned: each day's rows are running totals over every
earlier day, so no day can be rebuilt from its own events alone.)

Each run lands only what is new: users by id, photos by `updated_at` as an SCD2 history on
`photo_id` (an edit closes the photo's version and adds one, so `photo_features` can use a
title as it was at label time), event logs and classifier outputs file by file.
`examples/photo_popularity/pipeline.py` is this pipeline as a file for `headwater run`.

This file is also a pipeline file: it is what the run manifest records for a demo run (its
models are defined here), so `headwater reproduce` finds them. Loaded as one, its `pipeline`
reads `$PHOTO_POPULARITY_DATA`, else `data/photo_popularity` in the working directory.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine import sources
from engine.demo import models, polars_models
from engine.pipeline import Pipeline
from engine.transform.models import model

SQL_MODELS = Path(__file__).parent / "sql"  # the pipeline's .sql models
DEMO_FILE = Path(__file__).resolve()  # the file a demo run's manifest names (see above)
DEFAULT_DATA = "data/photo_popularity"


def make_pipeline(data_dir: str | Path) -> Pipeline:
    """The pipeline over the generated data in `data_dir` (see `generate.py`; a relative
    `data_dir` starts at the working directory)."""
    data_dir = Path(data_dir).absolute()
    db = f"sqlite:///{data_dir / 'photos.sqlite'}"
    users = sources.sql("users", url=db, table="users", cursor="user_id")
    photos = sources.sql("photos", url=db, table="photos", cursor="updated_at",  # every version kept
                         primary_key="photo_id", write="scd2")
    events = sources.files("events", f"{data_dir}/events/*.jsonl", format="jsonl")
    classifier = sources.files("classifier", f"{data_dir}/classifier/*.parquet", format="parquet")
    return Pipeline("photo_popularity", sources=[users, photos, events, classifier], models=[
        model(inputs={"events": "raw.events", "photos": "raw.photos"}, tags=["features"],
              checks=["unique(user_id, day)", "not_null(user_id, day, known_at)"])(models.user_activity_daily),
        model(inputs={"users": "raw.users", "user_activity_daily": "user_activity_daily"}, tags=["features"],
              checks=["unique(user_id)", "relationships(user_id, raw.users.user_id)"])(
            models.user_features_latest),
        model(inputs={"photos": "raw.photos", "events": "raw.events"},
              checks=["unique(photo_id)", "expression(views_7d >= 0 and likes_7d >= 0)"])(models.photo_engagement),
        model(inputs={"photos": "raw.photos", "photo_engagement": "photo_engagement",
                      "user_activity_daily": "user_activity_daily", "users": "raw.users",
                      "classifier": "raw.classifier"},
              checks=["unique(photo_id)", "not_null(photo_id, user_id, uploaded_at)",
                      "relationships(photo_id, raw.photos.photo_id)"])(models.photo_features),
        model(inputs={"photo_features": "photo_features"}, tags=["ml"],
              checks=["unique(photo_id)", "warn: row_count(min=1)"])(models.training_set),
        model(inputs={"events": "raw.events"}, frame="polars", tags=["reports"],
              checks=["unique(day)", "not_null(day)"],  # partitioned: a build recomputes only the days that changed
              partition_by="day", event_time={"events": "ts"})(polars_models.daily_engagement),
    ], models_dir=SQL_MODELS, source_file=DEMO_FILE)  # models_dir: the SQL models (uploader_stats)


def __getattr__(name: str) -> Pipeline:
    """`pipeline`, made when this file is loaded as a pipeline file (`headwater reproduce`)."""
    if name == "pipeline":
        return make_pipeline(os.environ.get("PHOTO_POPULARITY_DATA", DEFAULT_DATA))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
