"""What the CLI shows: progress bars per step on a terminal, and tables of results."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.errors import one_line
from engine.redact import mask
from engine.runs.runner import RunSummary, Step

STATUS_STYLE = {"landed": "green", "built": "green", "published": "green",
                "unchanged": "dim", "skipped": "yellow", "failed": "bold red"}


class RichReporter:
    """One progress line per step (rows counted while landing); silent when not on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TextColumn("{task.fields[rows]:>12,} rows"), TimeElapsedColumn(),
                                 console=console, transient=False,
                                 disable=not console.is_terminal)
        self._task: Any = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, kind: str, name: str) -> None:
        self._task = self.progress.add_task(f"{kind:<8} {name}", rows=0, total=None)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self.progress.update(self._task, rows=self.progress.tasks[self._task].fields["rows"] + rows)

    def finish(self, step: Step) -> None:
        if self._task is not None:
            style = STATUS_STYLE.get(step.status, "")
            self.progress.update(self._task, rows=step.rows, total=1, completed=1,
                                 description=f"{step.kind:<8} {step.name} [{style}]{step.status}[/]")
            self._task = None


def summary_table(summary: RunSummary) -> Table:
    """The run's steps: table, status, rows, Delta version, seconds, detail."""
    title = f"run {summary.run_id} of {summary.pipeline}"
    if summary.backend:
        title += f" — models on {summary.backend}"
    table = Table(title=title, title_justify="left")
    widths = {"step": 7, "table": 18, "status": 9, "rows": 7, "quarantined": 11, "version": 7, "seconds": 7}
    for col, width in widths.items():
        table.add_column(col, justify="right" if col in ("rows", "quarantined", "version", "seconds") else "left",
                         no_wrap=True, min_width=width)
    table.add_column("detail", overflow="ellipsis", no_wrap=True)
    for s in summary.steps:
        style = STATUS_STYLE.get(s.status, "")
        table.add_row(s.kind, Text(s.table), f"[{style}]{s.status}[/]", f"{s.rows:,}",
                      f"{s.quarantined:,}" if s.quarantined else "",
                      "" if s.version is None else str(s.version), f"{s.seconds:.2f}", Text(_line(s.detail)))
    return table


def checks_table(summary: RunSummary) -> Table | None:
    """Every check of the run's model builds: model, check, severity, result, failing rows."""
    rows = [(s.name, c) for s in summary.steps for c in s.checks]
    if not rows:
        return None
    table = Table(title="checks", title_justify="left")
    for col in ("model", "check", "severity", "result", "failing rows"):
        table.add_column(col, justify="right" if col == "failing rows" else "left", no_wrap=col != "check")
    table.add_column("detail", overflow="ellipsis", no_wrap=True)
    for model, c in rows:
        style = {"pass": "green", "warn": "yellow", "fail": "red"}.get(c["status"], "")
        table.add_row(Text(model), Text(c["name"]), c["severity"], f"[{style}]{c['status']}[/]",
                      f"{c['failing_rows']:,}", Text(_line(c.get("detail") or "")))
    return table


def arrow_table(data: pa.Table, title: str = "", max_width: int = 40, width: int = 120) -> Table:
    """An Arrow table as a rich table; one `column | value` block per row when the columns
    would not fit in `width` characters (like psql's expanded display)."""
    table = Table(title=title or None, title_justify="left")
    if data.num_columns * 14 <= width:
        for field in data.schema:
            table.add_column(f"{field.name}\n[dim]{field.type}[/]", overflow="fold")
        for row in data.to_pylist():
            table.add_row(*(_cell(v, max_width) for v in row.values()))
        return table
    table.add_column("column", no_wrap=True)
    table.add_column("value", overflow="fold")
    for i, row in enumerate(data.to_pylist()):
        if i:
            table.add_section()
        for field, value in zip(data.schema, row.values()):
            table.add_row(Text(f"{field.name} ", style="bold").append(str(field.type), style="dim"),
                          _cell(value, max_width * 2))
    return table


def rows_table(rows: list[dict[str, Any]], title: str = "", no_wrap: tuple[str, ...] = ()) -> Table:
    """A list of dicts (same keys) as a rich table; `no_wrap` columns are never wrapped."""
    table = Table(title=title or None, title_justify="left")
    for key in rows[0] if rows else []:
        table.add_column(key, no_wrap=key in no_wrap, min_width=None)
    for row in rows:
        table.add_row(*(_cell(v, 60) for v in row.values()))
    return table


def _cell(value: Any, width: int) -> Text:
    text = "∅" if value is None else str(value)
    return Text(text if len(text) <= width else text[: width - 1] + "…")


def _line(text: str) -> str:
    """A step's or check's detail as shown: one line, credentials masked."""
    return mask(one_line(text))
