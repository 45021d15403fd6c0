"""Which engine runs each kind of model, and why (the table in ARCHITECTURE.md):

| kind | CPU | GPU | Dask |
| pandas (`@model`) | pandas | cuDF | dask / dask-cudf |
| sql (`sql_model`, `.sql`) | DuckDB | polars SQL on cudf-polars | cudf-polars on the Dask cluster (dask-cudf) |
| polars (`@model(frame="polars")`) | polars streaming | cudf-polars | cudf-polars on the Dask cluster (dask-cudf) |

The backend setting picks the column: `pandas` and `dask` the CPU one (a CPU Dask cluster
runs pandas-API models only: SQL and polars models run in this process), `cudf` and
`dask-cudf` the GPU one, `auto` the GPU one when a GPU is usable and cudf-polars imports.
`sql_engine` can send SQL models to polars instead of DuckDB (`polars`) or keep them on
DuckDB on a GPU machine (`duckdb`).
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.transform.backends.base import Engine

if TYPE_CHECKING:
    from engine.config import Config

GPU_BACKENDS = ("cudf", "dask-cudf")


def engine_for(kind: str, config: Config, storage_options: dict[str, Any] | None = None,
               dask_client: Any = None) -> tuple[Engine, str]:
    """The engine that runs `kind` ("sql" or "polars") models under `config`, and a one-line
    reason; `dask_client` is the cluster's client when the backend is dask-cudf."""
    gpu, why = gpu_wanted(config)
    if kind == "sql" and (config.sql_engine == "duckdb" or (config.sql_engine == "auto" and not gpu)):
        from engine.transform.backends.duckdb import DuckDBEngine

        asked = "sql_engine is duckdb" if config.sql_engine == "duckdb" else why
        return DuckDBEngine(), f"DuckDB ({asked})"
    if kind not in ("sql", "polars"):
        raise ValueError(f"no engine for {kind!r} models: pandas-API models run on the backend")
    from engine.transform.backends.polars import POLARS_HINT, PolarsEngine

    client = dask_client if config.backend == "dask-cudf" else None
    where = "polars SQL" if kind == "sql" else "polars"
    try:
        engine = PolarsEngine(gpu, storage_options, dask_client=client if gpu else None)
    except ImportError as exc:
        raise ConfigError(f"{kind} models need polars, which is not installed ({exc})", POLARS_HINT) from exc
    if gpu:
        return engine, f"{where} on cudf-polars{' across the Dask cluster' if client is not None else ''} ({why})"
    return engine, f"{where}, streaming, on the CPU ({why})"


def gpu_wanted(config: Config) -> tuple[bool, str]:
    """Whether SQL and polars models go to cudf-polars, and why; a ConfigError when the backend
    asks for a GPU that cudf-polars cannot use."""
    if config.backend in GPU_BACKENDS:
        problem = cudf_polars_problem()
        if problem:
            raise ConfigError(f"backend {config.backend!r} runs SQL and polars models on cudf-polars, "
                              f"which cannot be used: {problem}",
                              "pip install 'headwater[gpu]' on a machine with an NVIDIA GPU, or set backend to "
                              "'pandas' or 'auto'")
        return True, f"backend {config.backend}"
    if config.backend != "auto":
        return False, f"backend {config.backend}"
    problem = cudf_polars_problem()
    return (False, f"auto: {problem}") if problem else (True, "auto: a GPU and cudf-polars")


def cudf_polars_problem() -> str:
    """Why cudf-polars cannot run here ("" when it can): not installed, or no GPU counted."""
    try:
        if importlib.util.find_spec("cudf_polars") is None:
            return "cudf-polars is not installed"
    except (ImportError, ValueError):
        return "cudf-polars is not installed"
    from engine.transform.backends.detect import gpu_info

    gpu = gpu_info()
    return "" if gpu.get("count") else f"no usable GPU ({gpu.get('error', 'none counted')})"


def describe(config: Config) -> list[tuple[str, str]]:
    """(model kind, where it runs and why) for SQL and polars models under `config`, without
    running anything (pandas-API models: see `resolve`)."""
    rows = []
    for kind in ("sql", "polars"):
        try:
            rows.append((kind, engine_for(kind, config)[1]))
        except ConfigError as exc:
            rows.append((kind, f"cannot run: {exc.message}"))
    return rows
