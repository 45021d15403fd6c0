"""Settings: lake URI, warehouse URL, backend and storage options.

Precedence, highest first: explicit arguments, environment (`HEADWATER_LAKE`,
`HEADWATER_WAREHOUSE`, `HEADWATER_BACKEND`, `HEADWATER_DASK_ADDRESS`, `HEADWATER_DASK_CLUSTER`,
`HEADWATER_SQL_ENGINE`),
`headwater.toml` beside the pipeline, defaults.
Relative paths in `headwater.toml` resolve against the folder that holds it.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.redact import remember_settings

DEFAULTS: dict[str, str | None] = {"lake": "./lake", "warehouse": "duckdb:///warehouse.duckdb",
                                   "backend": "auto", "dask_address": None, "dask_cluster": None,
                                   "sql_engine": "auto"}
ENV = {"lake": "HEADWATER_LAKE", "warehouse": "HEADWATER_WAREHOUSE", "backend": "HEADWATER_BACKEND",
       "dask_address": "HEADWATER_DASK_ADDRESS", "dask_cluster": "HEADWATER_DASK_CLUSTER",
       "sql_engine": "HEADWATER_SQL_ENGINE"}
BACKENDS = ("auto", "pandas", "cudf", "dask", "dask-cudf")
SQL_ENGINES = ("auto", "duckdb", "polars")  # auto: DuckDB on a CPU, polars SQL on cudf-polars on a GPU
DASK_CLUSTERS = ("local", "local-cuda")  # what `dask_cluster` may start for a run
CONFIG_FILE = "headwater.toml"


@dataclass(frozen=True)
class Config:
    """Where the lake and the warehouse are, which backend runs models, and (for the Dask
    backends) the scheduler to connect to or the kind of cluster to start."""

    lake: str = "./lake"
    warehouse: str = "duckdb:///warehouse.duckdb"
    backend: str = "auto"
    storage_options: dict[str, str] = field(default_factory=dict)
    source: str = "defaults"  # where the settings came from, for `headwater doctor`
    dask_address: str | None = None  # a running Dask scheduler, e.g. tcp://10.0.0.5:8786
    dask_cluster: str | None = None  # local | local-cuda: a cluster started for the run
    sql_engine: str = "auto"  # auto | duckdb | polars: where SQL models run (polars: on the GPU when the backend is)

    def mask_secrets(self) -> Config:
        """These settings, their credentials (the warehouse URL's password, secret storage
        options, a lake URL's password) now masked in everything Headwater prints or logs."""
        remember_settings(self.warehouse, self.storage_options, self.lake)
        return self

    def with_(self, **changes: Any) -> Config:
        """A copy with some settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(cls, base_dir: str | Path | None = None, **overrides: Any) -> Config:
        """Settings from defaults, `base_dir/headwater.toml`, the environment, then `overrides`."""
        values: dict[str, Any] = dict(DEFAULTS)
        sources = ["defaults"]
        storage: dict[str, str] = {}
        toml_path = Path(base_dir or ".") / CONFIG_FILE
        if toml_path.is_file():
            values, storage = _apply_toml(values, toml_path)
            sources.append(str(toml_path))
        for key, var in ENV.items():
            if os.environ.get(var):
                values[key] = os.environ[var]
                sources.append(var)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "storage_options":
                storage.update(value)
            else:
                values[key] = value
                sources.append("arguments")
        if values["backend"] not in BACKENDS:
            raise ConfigError(
                f"unknown backend {values['backend']!r}",
                f"set HEADWATER_BACKEND or backend= to one of {', '.join(BACKENDS)}",
            )
        if values["sql_engine"] not in SQL_ENGINES:
            raise ConfigError(f"unknown SQL engine {values['sql_engine']!r}",
                              f"set HEADWATER_SQL_ENGINE or sql_engine= to one of {', '.join(SQL_ENGINES)}")
        check_dask(values["dask_address"], values["dask_cluster"])
        return cls(values["lake"], values["warehouse"], values["backend"], storage,
                   " < ".join(dict.fromkeys(sources)), values["dask_address"], values["dask_cluster"],
                   values["sql_engine"])


def check_dask(address: str | None, cluster: str | None) -> None:
    """Raise HeadwaterError unless the Dask settings make sense: a known cluster kind, and not
    both a scheduler to connect to and a cluster to start."""
    if cluster and cluster not in DASK_CLUSTERS:
        raise ConfigError(f"unknown Dask cluster {cluster!r}",
                          f"set HEADWATER_DASK_CLUSTER (dask_cluster) to one of {', '.join(DASK_CLUSTERS)}")
    if address and cluster:
        raise ConfigError(f"both a Dask scheduler address ({address}) and a cluster to start "
                          f"({cluster}) are set", "unset HEADWATER_DASK_ADDRESS or HEADWATER_DASK_CLUSTER")


def _apply_toml(values: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "fix the file or remove it") from exc
    section = data.get("headwater", data)
    unknown = set(section) - set(DEFAULTS) - {"storage_options", "headwater"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}",
                          f"known settings are {sorted(DEFAULTS)} and [storage_options]")
    out = dict(values)
    for key in DEFAULTS:
        if key in section:
            out[key] = str(section[key])
    out["lake"] = _resolve_path(out["lake"], path.parent) if "lake" in section else out["lake"]
    for prefix in ("duckdb:///", "sqlite:///"):  # a file warehouse: relative to headwater.toml too
        if "warehouse" in section and out["warehouse"].startswith(prefix):
            db = out["warehouse"].removeprefix(prefix)
            if db and db != ":memory:":
                out["warehouse"] = prefix + _resolve_path(db, path.parent)
    storage = {str(k): str(v) for k, v in section.get("storage_options", {}).items()}
    return out, storage


def _resolve_path(value: str, base: Path) -> str:
    if "://" in value or Path(value).is_absolute():
        return value
    return str((base / value).resolve())
