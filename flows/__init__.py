"""Prefect flows over Headwater's engine steps: `elt` runs a whole pipeline as one flow run, with
`extract_load` and `transform` subflows; `flows.cli` holds `headwater deploy` and `serve`."""
from __future__ import annotations

import warnings

# `python -m flows.elt` imports this package, and so flows.elt, before running flows.elt as
# __main__; runpy warns about that. flows/elt.py's __main__ block hands over to the imported
# module, so the warning says nothing useful.
warnings.filterwarnings("ignore", message="'flows.elt' found in sys.modules", category=RuntimeWarning)

from flows.elt import elt, extract_load, transform  # noqa: E402

__all__ = ["elt", "extract_load", "transform"]
