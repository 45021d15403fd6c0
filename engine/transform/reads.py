"""Whole-table reads shared by the models of one run.

Models often read the same lake table: the three TPC-H models of the ELT-H benchmark all read
`raw.lineitem`. Within one `Runner.run`, a table that more than one of the run's models read
whole is read once, with the union of the columns they ask for, and kept until the last of
those models is done; each model gets a frame of its own (`Backend.share`), so a model that
changes its input cannot change another model's. Rows read incrementally (landed since a
model's last build) differ per model and are not shared. Backends without `share` (Dask:
reads are lazy, nothing to keep) read per model as before.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from engine.transform.models import Model

if TYPE_CHECKING:
    from engine.transform.backends import Backend

ALL = None  # a reader that wants every column


class SharedReads:
    """The shared whole-table frames of one run of `models` (in build order)."""

    def __init__(self, models: Iterable[Model]) -> None:
        self.readers: Counter[str] = Counter()  # table -> models of the run not yet done with it
        self.columns: dict[str, set[str] | None] = {}  # table -> the union its readers want (None: all)
        for model in models:
            if model.kind != "pandas":  # SQL and polars models scan the lake themselves
                continue
            for param, ref in model.inputs.items():
                table = str(ref)
                self.readers[table] += 1
                wanted = model.columns.get(param)
                prior = self.columns.get(table, set())
                self.columns[table] = ALL if wanted is None or prior is ALL else prior | set(wanted)
        self.frames: dict[str, tuple[int, Any]] = {}  # table -> (version, frame of the union's columns)

    def read(self, backend: Backend, table: str, version: int, names: list[str],
             columns: list[str] | None, read: Callable[[list[str] | None], Any]) -> Any:
        """`columns` (None: all) of `table` at `version` as a frame of the caller's own; `names`
        are the table's columns and `read(columns)` reads it. Read once for all the run's
        readers of the table when more than one is left and the backend can share."""
        share: Callable[[Any, list[str] | None], Any] | None = getattr(backend, "share", None)
        cached = self.frames.get(table)
        if cached is None or cached[0] != version:
            if share is None or self.readers[table] < 2:
                return read(columns)
            union = self.columns.get(table, ALL)
            wanted = None if union is None else [n for n in names if n in union]  # the table's order
            cached = self.frames[table] = (version, read(wanted))
        assert share is not None  # a frame is only kept for a backend that shares
        return share(cached[1], columns)

    def done(self, model: Model) -> None:
        """`model` read its inputs (or did not need to): drop the frames nobody else will read."""
        if model.kind != "pandas":
            return
        for ref in model.inputs.values():
            table = str(ref)
            self.readers[table] -= 1
            if self.readers[table] <= 0:
                self.frames.pop(table, None)

    @property
    def held(self) -> list[str]:
        """The tables whose frames are held now."""
        return sorted(self.frames)
