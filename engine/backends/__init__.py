"""Backends turn lake tables into the frames models take (pandas or cuDF) and results back into Arrow."""
from engine.backends.base import Backend
from engine.backends.detect import gpu_info, resolve

__all__ = ["Backend", "gpu_info", "resolve"]
