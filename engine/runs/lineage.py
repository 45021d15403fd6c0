"""A pipeline's lineage as a graph: sources land in raw tables, models read raw tables and
other models, published models become warehouse tables. Rendered as Mermaid or Graphviz DOT
text; pure functions, so the Prefect flow's artifact and the CLI draw the same picture."""
from __future__ import annotations

from dataclasses import dataclass

from engine.graph import TableRef
from engine.pipeline import Pipeline


@dataclass(frozen=True)
class Node:
    """One box of the graph: `kind` is raw | model | warehouse; `label` the table's name."""

    id: str
    kind: str
    label: str


def graph(pipeline: Pipeline) -> tuple[list[Node], list[tuple[str, str]]]:
    """The nodes (raw tables, models in DAG order, warehouse tables) and the edges between them."""
    dag = pipeline.graph
    kinds = {t: "raw" if t.zone == "raw" else "model" for t in dag.tables}
    boxes = {t: Node(f"{kinds[t]}{i}", kinds[t], str(t)) for i, t in enumerate(dag.tables)}
    published = {m.name for m in pipeline.models if m.publish}
    tables = {TableRef.model(name): Node(f"wh{i}", "warehouse", name)
              for i, name in enumerate(dag.models) if name in published}
    edges: list[tuple[str, str]] = []
    for name in dag.models:
        table = TableRef.model(name)
        edges += [(boxes[ref].id, boxes[table].id) for ref in dag.inputs(table)]
        if table in tables:
            edges.append((boxes[table].id, tables[table].id))
    return [*boxes.values(), *tables.values()], edges


_MERMAID_SHAPES = {"raw": '[("{}")]', "model": '["{}"]', "warehouse": '[["{}"]]'}
_GROUPS = (("raw", "lake: raw"), ("model", "lake: models"), ("warehouse", "warehouse"))


def mermaid(pipeline: Pipeline) -> str:
    """A Mermaid `flowchart LR`: raw tables → models → warehouse tables, one subgraph each."""
    nodes, edges = graph(pipeline)
    lines = ["flowchart LR"]
    for kind, title in _GROUPS:
        members = [n for n in nodes if n.kind == kind]
        if members:
            lines.append(f'  subgraph {kind}["{title}"]')
            lines += [f"    {n.id}" + _MERMAID_SHAPES[kind].format(_mermaid_text(n.label)) for n in members]
            lines.append("  end")
    lines += [f"  {a} --> {b}" for a, b in edges]
    return "\n".join(lines) + "\n"


_DOT_SHAPES = {"raw": "cylinder", "model": "box", "warehouse": "box3d"}


def dot(pipeline: Pipeline) -> str:
    """A Graphviz `digraph`, left to right: raw tables → models → warehouse tables."""
    nodes, edges = graph(pipeline)
    lines = [f"digraph {_dot_text(pipeline.name)} {{", "  rankdir=LR;"]
    for kind, title in _GROUPS:
        members = [n for n in nodes if n.kind == kind]
        if members:
            lines.append(f"  subgraph cluster_{kind} {{")
            lines.append(f"    label={_dot_text(title)};")
            lines += [f"    {n.id} [label={_dot_text(n.label)}, shape={_DOT_SHAPES[kind]}];" for n in members]
            lines.append("  }")
    lines += [f"  {a} -> {b};" for a, b in edges]
    return "\n".join(lines) + "\n}\n"


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _dot_text(text: str) -> str:
    """A quoted DOT string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
