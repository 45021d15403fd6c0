"""What a run reports: a `Step` per load, build and publish, and the `RunSummary` of them all."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol


@dataclass
class Step:
    """What one step did: `status` is landed | built | published | unchanged | failed."""

    kind: str  # load | model | publish
    name: str
    table: str
    status: str
    rows: int = 0
    version: int | None = None
    seconds: float = 0.0
    detail: str = ""
    quarantined: int = 0  # rows (or whole files) sent to quarantine.<source>: rows in = rows + quarantined
    inputs: dict[str, int] = field(default_factory=dict)  # models: input ref -> lake version read
    checks: list[dict[str, Any]] = field(default_factory=list)  # models: every check's result

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    """Every step of one run, and how it ended."""

    run_id: str
    pipeline: str
    backend: str = ""
    backend_reason: str = ""
    steps: list[Step] = field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    selection: dict[str, Any] = field(default_factory=dict)  # select, exclude, full_refresh as asked

    @property
    def ok(self) -> bool:
        return self.error is None

    def rows_landed(self) -> int:
        return sum(s.rows for s in self.steps if s.kind == "load")

    def rows_quarantined(self) -> int:
        return sum(s.quarantined for s in self.steps if s.kind == "load")


class Reporter(Protocol):
    """Progress callbacks (the CLI shows them as progress bars)."""

    def start(self, kind: str, name: str) -> None: ...
    def advance(self, rows: int) -> None: ...
    def finish(self, step: Step) -> None: ...


class NullReporter:
    """Reports nothing."""

    def start(self, kind: str, name: str) -> None: ...
    def advance(self, rows: int) -> None: ...
    def finish(self, step: Step) -> None: ...


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
