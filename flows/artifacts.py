"""The artifacts a Headwater flow run leaves in the Prefect UI: the run summary (markdown), the
lineage (markdown with a Mermaid graph), the tables (rows, versions, seconds) and the progress
of the run's steps."""
from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from engine.errors import one_line
from engine.pipeline import Pipeline
from engine.redact import mask, mask_data
from engine.runs.lineage import graph, mermaid
from engine.runs.selection import Selection
from flows.tasks import StepDict

SUMMARY_KEY = "headwater-run-summary"
TABLES_KEY = "headwater-tables"
LINEAGE_KEY = "headwater-lineage"
PROGRESS_KEY = "headwater-progress"
COLUMNS = ("table", "kind", "status", "rows", "quarantined", "version", "seconds", "detail")


def lineage(pipeline: Pipeline, chosen: Selection) -> None:
    """A markdown artifact: the pipeline's lineage as a table of edges (which every Prefect UI
    renders) and as a Mermaid graph (drawn by UIs that draw Mermaid, shown as text by the
    others), and what this run selected."""
    picked = ", ".join([f"`raw.{s}`" for s in chosen.sources] + [f"`{m}`" for m in chosen.models])
    text = (f"# Lineage of {pipeline.name}\n\nSources land in raw tables, models read them and "
            f"each other, published models become warehouse tables.\n\n{edge_table(pipeline)}\n"
            f"This run: {picked or 'nothing selected'}.\n\n"
            f"## As a graph\n\n```mermaid\n{mermaid(pipeline)}```\n")
    create_markdown_artifact(mask(text), key=LINEAGE_KEY, description=f"Lineage of pipeline {pipeline.name}")


def edge_table(pipeline: Pipeline) -> str:
    """The lineage's edges as a markdown table: what reads (or becomes) what."""
    nodes, edges = graph(pipeline)
    by_id = {n.id: n for n in nodes}
    verbs = {"model": "read by", "warehouse": "published as"}
    lines = ["| table | | to |", "| --- | --- | --- |"]
    lines += [f"| `{_md(by_id[a].label)}` | {verbs[by_id[b].kind]} | `{_md(by_id[b].label)}` |"
              for a, b in edges]
    return "\n".join(lines) + "\n"


def summary(run_id: str, pipeline: str, steps: list[StepDict]) -> None:
    """The run summary (markdown) and the per-table rows (table) as flow-run artifacts; every
    text masked (engine.redact)."""
    rows = [mask_data({c: (one_line(s[c] or "") if c == "detail" else s[c]) for c in COLUMNS}) for s in steps]
    landed = sum(s["rows"] for s in steps if s["kind"] == "load")
    lines = [f"# Headwater run `{run_id}`", "",
             f"Pipeline **{pipeline}**: {len(steps)} steps, {landed} rows landed.", "",
             "| table | step | status | rows | Delta version | seconds |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += [f"| `{r['table']}` | {r['kind']} | {r['status']} | {r['rows']} | "
              f"{'' if r['version'] is None else r['version']} | {r['seconds']} |" for r in rows]
    problems = [r for r in rows if r["status"] in ("failed", "skipped")]
    if problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{r['table']}` ({r['kind']}, {r['status']}): {_md(r['detail'])}" for r in problems]
    create_markdown_artifact(mask("\n".join(lines)), key=SUMMARY_KEY,
                             description=f"Headwater run {run_id} of {pipeline}")
    create_table_artifact(rows, key=TABLES_KEY, description=f"Tables of Headwater run {run_id}")


class Progress:
    """A progress artifact over a run's `total` steps, moved on as each one finishes."""

    def __init__(self, artifact_id: UUID, total: int) -> None:
        self.id, self.total, self.done = artifact_id, total, 0

    @classmethod
    def create(cls, total: int, run_id: str) -> Progress:
        """A new progress artifact at 0% (attached to the flow run that creates it)."""
        artifact_id = create_progress_artifact(0.0 if total else 100.0, key=PROGRESS_KEY,
                                               description=f"Steps finished by Headwater run {run_id}")
        return cls(artifact_id, total)

    def advance(self, what: str, steps: int = 1) -> None:
        """`steps` more steps finished, the last of them `what`."""
        self.done = min(self.total, self.done + steps)
        percent = round(100.0 * self.done / self.total, 1) if self.total else 100.0
        update_progress_artifact(self.id, percent)
        get_run_logger().info("progress %d/%d (%.1f%%): %s", self.done, self.total, percent, mask(what))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
