"""Which backend runs models: pandas, cuDF, dask, dask-cudf, or `auto` (cuDF when a usable NVIDIA
GPU and cuDF are there, else pandas; `auto` never picks a Dask backend)."""
from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.transform.backends.base import Backend
from engine.transform.backends.pandas import PandasBackend

if TYPE_CHECKING:
    from engine.config import Config

log = logging.getLogger("headwater.transform")
INSTALL_HINT = "pip install 'headwater[gpu]' on a machine with an NVIDIA GPU and driver"
_logged: set[str] = set()  # fallback reasons already logged by this process


def gpu_info() -> dict[str, Any]:
    """What NVML reports: device count, device names and driver version, or the error that stopped it."""
    try:
        import pynvml
    except ImportError as exc:
        return {"count": 0, "error": f"nvidia-ml-py is not installed ({exc})"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"count": 0, "error": f"no NVIDIA driver: NVML says {exc}"}
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = [_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        info: dict[str, Any] = {"count": count, "names": names,
                                "driver": _text(pynvml.nvmlSystemGetDriverVersion())}
        if not count:
            info["error"] = "the NVIDIA driver is loaded but NVML sees no GPU device"
        return info
    except pynvml.NVMLError as exc:
        return {"count": 0, "error": f"NVML failed: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def resolve(name: str, storage_options: dict | None = None, config: Config | None = None) -> tuple[Backend, str]:
    """The backend called `name` ("auto", "pandas", "cudf", "dask" or "dask-cudf") and a one-line
    reason it was chosen. The Dask backends connect to the cluster `config` names (see
    `engine.transform.backends.dask_cluster`); call their `close()` when done."""
    if name in ("dask", "dask-cudf"):
        from engine.transform.backends.dask import make

        dask_backend = make(name, storage_options, config)
        return dask_backend, f"{name} was asked for (on {dask_backend.describe()})"
    if name == "pandas":
        return PandasBackend(storage_options), "pandas was asked for"
    if name == "cudf":
        gpu = gpu_info()
        backend, problem = _cudf(storage_options)
        if backend is None:
            raise ConfigError(f"backend 'cudf' was asked for but cannot run: {problem}; "
                              f"GPU: {_describe(gpu)}",
                              f"{INSTALL_HINT}, or set backend to 'pandas' or 'auto'")
        return backend, f"cudf was asked for ({_describe(gpu)})"
    if name != "auto":
        raise ConfigError(f"unknown backend {name!r}", "use one of auto, pandas, cudf, dask, dask-cudf")
    gpu = gpu_info()
    if gpu.get("count"):
        backend, problem = _cudf(storage_options)
        if backend is not None:
            return backend, f"auto: cuDF on {_describe(gpu)}"
        return _fallback(f"auto: a GPU is there ({_describe(gpu)}) but cuDF cannot be used: {problem}; "
                         f"running on pandas ({INSTALL_HINT})", logging.WARNING, storage_options)
    if "nvidia-ml-py" in gpu["error"]:  # NVML not installed: cuDF may still work, so try it
        backend, problem = _cudf(storage_options)
        if backend is not None:
            return backend, "auto: cuDF imports (GPU not counted: nvidia-ml-py is not installed)"
        # one short line for the usual CPU machine (`headwater doctor` shows the import errors)
        why = ("nvidia-ml-py, cuDF not installed" if problem.startswith("cuDF is not installed")
               else f"nvidia-ml-py not installed; {problem}")
        return _fallback(f"auto: no usable GPU ({why}), so pandas", logging.INFO, storage_options)
    return _fallback(f"auto: no usable GPU ({gpu['error']}), so pandas", logging.INFO, storage_options)


def available() -> list[str]:
    """The backends that can run models on this machine (`auto` aside), without starting any
    cluster: pandas always; cudf with a usable GPU and cuDF; dask with dask.dataframe and
    distributed installed; dask-cudf with those, dask-cudf and a usable cuDF."""
    names = ["pandas"]
    has_cudf = _cudf(None)[0] is not None
    if has_cudf:
        names.append("cudf")
    has_dask = all(_importable(m) for m in ("dask.dataframe", "distributed"))
    if has_dask:
        names.append("dask")
    if has_dask and has_cudf and _importable("dask_cudf"):
        names.append("dask-cudf")
    return names


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def _cudf(storage_options: dict | None) -> tuple[Backend | None, str]:
    """A cuDF backend, or None and why it could not be made."""
    from engine.transform.backends.cudf import CudfBackend

    try:
        return CudfBackend(storage_options), ""
    except ImportError as exc:
        return None, f"cuDF is not installed ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup fails cudf's import in many ways
        return None, f"importing cuDF failed: {type(exc).__name__}: {exc}"


def _fallback(reason: str, level: int, storage_options: dict | None) -> tuple[Backend, str]:
    if reason not in _logged:
        _logged.add(reason)
        log.log(level, reason)
    return PandasBackend(storage_options), reason


def _describe(gpu: dict[str, Any]) -> str:
    if not gpu.get("count"):
        return gpu.get("error", "no GPU counted")
    return f"{gpu['count']} x {', '.join(gpu['names'])}, driver {gpu['driver']}"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
