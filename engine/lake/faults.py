"""Crash points for the exactly-once tests: a process can be made to die at a named point of a load.

Set `HEADWATER_FAULT` to one of `POINTS` and the process that reaches that point kills itself
with SIGKILL (no cleanup, no `finally`, no flush: as a power cut or the OOM killer would):

* `before_commit`: every row of the load has been handed to the writer (for a merge: read and
  spooled), the Delta log entry is not written;
* `after_commit`: the load's commit (rows and state) is in the Delta log, nothing after it ran.

A kill *during* the write, with some data files on disk and no log entry, needs no hook: the
crash tests kill the process from outside when the table's first new data file appears. Unset
(always, outside those tests), `reached` is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

FAULT_ENV = "HEADWATER_FAULT"
POINTS = ("before_commit", "after_commit")


def reached(point: str) -> None:
    """Die here, with SIGKILL, if `HEADWATER_FAULT` names `point`."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
