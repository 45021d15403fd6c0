"""Headwater: extract and load into a Delta lake, transform on cuDF or pandas, publish to SQL.

The public API::

    from engine import Pipeline, model, sources, Config, run
"""
from engine import sources
from engine.config import Config
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.models import Context, Model, model
from engine.pipeline import Pipeline, load_pipeline
from engine.runner import Runner, RunSummary, Step, run

__all__ = ["Config", "Context", "HeadwaterError", "Lake", "Model", "Pipeline", "RunSummary",
           "Runner", "Step", "load_pipeline", "model", "run", "sources"]
__version__ = "0.1.0"
