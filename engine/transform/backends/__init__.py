"""Backends turn lake tables into the frames pandas-API models take (pandas, cuDF or dask) and
results back into Arrow; engines run SQL and polars models (DuckDB, polars, cudf-polars)."""
from engine.transform.backends.base import Backend, Engine
from engine.transform.backends.detect import available, gpu_info, resolve

__all__ = ["Backend", "Engine", "available", "gpu_info", "resolve"]
