"""What `headwater run` shows: progress bars per step on a terminal, then the run's summary and
checks laid out for the terminal's width (tables.py), and the backend note on one line."""
from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.cli.tables import PLAIN, Col, fit, natural, render
from engine.errors import one_line
from engine.redact import mask
from engine.runs.runner import RunSummary, Step

STATUS_STYLE = {"landed": "green", "built": "green", "published": "green",
                "unchanged": "dim", "skipped": "yellow", "failed": "bold red"}
CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


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


DETAIL_MIN = 30  # narrower than this, details go below their table instead of beside it


def _table(step: Step) -> str:
    """The step's table, and the partition when the step built one (a backfill's `model[day]`)."""
    _, bracket, partition = step.name.partition("[")
    return f"{step.table}[{partition}" if bracket else step.table


def summary_view(summary: RunSummary, width: int) -> RenderableType:
    """The run's steps in `width` columns: step, table, status, rows and version always, then
    quarantined rows and seconds where they fit; each step's detail beside them (wrapped) when
    at least DETAIL_MIN columns are left, else below the table."""
    title = f"run {summary.run_id} of {summary.pipeline}"
    if summary.backend:
        title += f" — models on {summary.backend}"
    cols = [Col("step", keep=True), Col("table", keep=True, wrap=True), Col("status", keep=True),
            Col("rows", right=True, keep=True), Col("quarantined", right=True), Col("version", right=True, keep=True),
            Col("seconds", right=True)]
    rows = [[s.kind, _table(s), s.status, f"{s.rows:,}", f"{s.quarantined:,}" if s.quarantined else "",
             "" if s.version is None else str(s.version), f"{s.seconds:.2f}"] for s in summary.steps]
    styles = [["", "", STATUS_STYLE.get(s.status, ""), "", "", "", ""] for s in summary.steps]
    if not any(s.quarantined for s in summary.steps):
        del cols[4]
        for row in rows + styles:
            del row[4]
    details = [_line(s.detail) for s in summary.steps]
    return _with_details(cols, rows, styles, details, [_table(s) for s in summary.steps], width, title)


def checks_view(summary: RunSummary, width: int) -> RenderableType | None:
    """Every check of the run's model builds: model, check, severity, result, failing rows, and
    the check's detail beside them or below, as in `summary_view`."""
    found = [(s.name, c) for s in summary.steps for c in s.checks]
    if not found:
        return None
    cols = [Col("model", keep=True, wrap=True), Col("check", keep=True, wrap=True), Col("severity", keep=True),
            Col("result", keep=True), Col("failing", right=True, keep=True)]
    rows = [[model, c["name"], c["severity"], c["status"], f"{c['failing_rows']:,}"] for model, c in found]
    styles = [["", "", "", CHECK_STYLE.get(c["status"], ""), ""] for _, c in found]
    details = [_line(c.get("detail") or "") for _, c in found]
    return _with_details(cols, rows, styles, details, [f"{m} {c['name']}" for m, c in found], width, "checks")


def _with_details(cols: list[Col], rows: list[list[str]], styles: list[list[str]], details: list[str],
                  names: list[str], width: int, title: str) -> RenderableType:
    """`rows` laid out in `width`, with a wrapped detail column when DETAIL_MIN columns are left,
    else a `name  detail` list below the table (rows without a detail left out)."""
    widths = [natural(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    beside = width - DETAIL_MIN - 3  # what the other columns may take with a detail column beside
    keep = [w for c, w in zip(cols, widths) if c.keep]
    if any(details) and PLAIN.total(keep) <= beside:
        column = Col("detail", wrap=True)
        layout = fit(cols, widths, beside, PLAIN, cap=None)
        room = width - PLAIN.total([*layout.widths, 0])
        layout.shown.append(len(cols))
        layout.widths.append(min(room, natural(column, details)))
        return render([*cols, column], [[*r, d] for r, d in zip(rows, details)], layout, PLAIN, title,
                      [[*s, ""] for s in styles])
    layout = fit(cols, _shrink_wrapping(cols, widths, width), width, PLAIN, cap=None)
    if not any(details):
        return render(cols, rows, layout, PLAIN, title, styles)
    below = Table.grid(padding=(0, 2))
    name_width = min(max(cell_len(n) for n, d in zip(names, details) if d) + 2, width // 2)
    below.add_column(width=name_width, overflow="fold")
    below.add_column(max_width=max(width - name_width - 2, 10), overflow="fold")
    for name, detail in zip(names, details):
        if detail:
            below.add_row(Text("  " + name), Text(detail))
    return Group(render(cols, rows, layout, PLAIN, title, styles), Text("details", style="bold"), below)


def _shrink_wrapping(cols: list[Col], widths: list[int], width: int) -> list[int]:
    """`widths` with the wrapping `keep` columns narrowed, widest first, when the `keep`
    columns alone are wider than `width`: their cells then wrap, and nothing is hidden."""
    widths = list(widths)
    keep = [i for i, c in enumerate(cols) if c.keep]
    while PLAIN.total([widths[i] for i in keep]) > width:
        wrapping = [i for i in keep if cols[i].wrap and widths[i] > 8]
        if not wrapping:
            break
        widest = max(wrapping, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def backend_note(summary: RunSummary, width: int) -> Text:
    """Why the run's models ran where they did, on one line (cut to `width`)."""
    note = Text(f"backend: {mask(one_line(summary.backend_reason))}", style="dim")
    note.truncate(width, overflow="ellipsis")
    return note


def _line(text: str) -> str:
    """A step's or check's detail as shown: one line, credentials masked."""
    return mask(one_line(text))
