"""Headwater: extract and load into a Delta lake, transform on cuDF or pandas, publish to SQL.

The public API::

    from engine import Pipeline, model, sql_model, sources, Config, run

The stages live in packages named after them: sources (extract), load, lake, transform,
publish, runs, cli; see ARCHITECTURE.md.
"""
from engine import sources
from engine._version import __version__
from engine.config import Config
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.pipeline import Pipeline, load_pipeline
from engine.runs.runner import Runner, run
from engine.runs.steps import RunSummary, Step
from engine.transform import augment, checks, features
from engine.transform.models import Context, Model, model
from engine.transform.sql import sql_model

__all__ = ["Config", "Context", "HeadwaterError", "Lake", "Model", "Pipeline", "RunSummary",
           "Runner", "Step", "__version__", "augment", "checks", "features", "load_pipeline", "model",
           "run", "sources", "sql_model"]
