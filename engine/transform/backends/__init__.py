"""Backends turn lake tables into the frames models take (pandas, cuDF or dask) and results back into Arrow."""
from engine.transform.backends.base import Backend
from engine.transform.backends.detect import available, gpu_info, resolve

__all__ = ["Backend", "available", "gpu_info", "resolve"]
