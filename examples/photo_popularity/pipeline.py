"""The photo-popularity demo as a pipeline file, for `headwater run`, prefect.yaml's deployments
and the containers: app database, event logs and classifier output in, a daily training set out.

    python -m engine.demo.generate data/photo_popularity
    headwater run examples/photo_popularity/pipeline.py
    python -m engine.demo.daily data/photo_popularity    # one more day, then run again

The sources, models and checks are in engine/demo/pipeline.py and engine/demo/models.py
(`headwater demo` runs the same pipeline). The data folder is `$PHOTO_POPULARITY_DATA`, else
`data/photo_popularity` (relative to the working directory).
"""
from __future__ import annotations

import os

from engine.demo.pipeline import make_pipeline

pipeline = make_pipeline(os.environ.get("PHOTO_POPULARITY_DATA", "data/photo_popularity"))
