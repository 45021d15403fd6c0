"""What a run reports: a `Step` per load, build and publish, and the `RunSummary` of them all."""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from engine.errors import HeadwaterError, ModelError, exception_line, traceback_text
from engine.redact import mask_data

StepKind = Literal["load", "model", "publish"]
Status = Literal["landed", "built", "published", "unchanged", "failed", "skipped"]


@dataclass
class Step:
    """What one step did. A failed step keeps its exception in `error` (not serialised) and its
    traceback as text in `traceback` (the user's own frames for a model that raised)."""

    kind: StepKind
    name: str
    table: str
    status: Status
    rows: int = 0
    version: int | None = None
    seconds: float = 0.0
    detail: str = ""
    quarantined: int = 0  # rows (or whole files) sent to quarantine.<source>: rows in = rows + quarantined
    inputs: dict[str, int] = field(default_factory=dict)  # models: input table -> lake version read
    checks: list[dict[str, Any]] = field(default_factory=list)  # models: every check's result
    traceback: str = ""  # failed steps: where it failed
    retryable: bool = False  # failed steps: running it again unchanged may succeed
    error: BaseException | None = field(default=None, repr=False, compare=False)

    @classmethod
    def failed(cls, kind: StepKind, name: str, table: str, error: BaseException, **known: Any) -> Step:
        """A failed step that keeps `error`: its detail is one line, a model's naming the user's
        file and line; its traceback starts at the user's code when the user's code raised."""
        if isinstance(error, ModelError):
            detail = f"{error.location}: {error.cause_line}" if error.location else error.cause_line
        elif isinstance(error, HeadwaterError):
            detail = str(error)
        else:  # not one of ours: keep the type for the user
            detail = exception_line(error)
        return cls(kind, name, table, "failed", detail=detail, traceback=traceback_text(error),
                   retryable=bool(getattr(error, "retryable", False)), error=error, **known)

    def to_dict(self) -> dict[str, Any]:
        """Every field but the exception, as plain data with credentials masked: what leaves the
        run (the runs table, a Prefect task's result)."""
        return mask_data({f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "error"})


@dataclass
class RunSummary:
    """Every step of one run, and how it ended."""

    run_id: str
    pipeline: str
    backend: str = ""
    backend_reason: str = ""
    steps: list[Step] = field(default_factory=list)
    error: str | None = None  # what failed, in one line (None: nothing did)
    started_at: datetime | None = None
    selection: dict[str, Any] = field(default_factory=dict)  # select, exclude, full_refresh as asked

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def skipped(self) -> list[Step]:
        return [s for s in self.steps if s.status == "skipped"]

    def describe_failure(self, hint: str | None = None) -> str | None:
        """One line naming the first failed step and what went wrong, how many other steps
        failed or were skipped, and `hint`; None when no step failed."""
        failed = self.failed
        if not failed:
            return None
        first = failed[0]
        more = [f"{len(failed) - 1} more step(s) failed" if len(failed) > 1 else "",
                f"{len(self.skipped)} skipped" if self.skipped else "", hint or ""]
        tail = "; ".join(m for m in more if m)
        return f"{first.kind} {first.name!r} failed: {first.detail}" + (f" ({tail})" if tail else "")

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
