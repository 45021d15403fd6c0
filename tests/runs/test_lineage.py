"""engine.runs.lineage: a pipeline's lineage as Mermaid and DOT text, parsed back into edges."""
from __future__ import annotations

import re
from pathlib import Path

from engine.pipeline import Pipeline
from engine.runs.lineage import _dot_text, _mermaid_text, dot, mermaid
from engine.sources import files
from engine.transform.models import model


def make(name: str, publish: bool = True, **inputs: str):  # type: ignore[no-untyped-def]
    namespace: dict = {}
    exec(f"def f({', '.join(inputs)}):\n    return None", namespace)
    return model(inputs=inputs, name=name, publish=publish)(namespace["f"])


def shop(tmp_path: Path) -> Pipeline:
    """orders, customers -> totals -> big (published); totals -> scratch (lake only)."""
    return Pipeline("shop", sources=[files("orders", str(tmp_path / "o.csv")),
                                     files("customers", str(tmp_path / "c.csv"))],
                    models=[make("big", t="totals"), make("scratch", publish=False, t="models.totals"),
                            make("totals", o="raw.orders", c="raw.customers")])


EXPECTED = {("raw.orders", "models.totals"), ("raw.customers", "models.totals"),
            ("models.totals", "models.big"), ("models.totals", "models.scratch"),
            ("models.totals", "totals"), ("models.big", "big")}


def mermaid_edges(text: str) -> set[tuple[str, str]]:
    labels = dict(re.findall(r'^\s+(\w+)\W+"(.*?)"', text, re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s+(\w+) --> (\w+)$", text, re.M)}


def test_mermaid_draws_sources_models_and_warehouse_tables(tmp_path: Path) -> None:
    text = mermaid(shop(tmp_path))
    assert text.startswith("flowchart LR\n")
    assert mermaid_edges(text) == EXPECTED
    warehouse = text.split('subgraph warehouse["warehouse"]')[1].split("end")[0]
    assert '"totals"' in warehouse and '"big"' in warehouse and "scratch" not in warehouse


def test_dot_draws_the_same_graph(tmp_path: Path) -> None:
    text = dot(shop(tmp_path))
    assert text.startswith('digraph "shop" {') and text.rstrip().endswith("}")
    labels = dict(re.findall(r'^\s+(\w+) \[label="(.*?)"', text, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s+(\w+) -> (\w+);$", text, re.M)}
    assert edges == EXPECTED
    assert text.count("shape=cylinder") == 2 and text.count("shape=box3d") == 2


def test_labels_are_escaped(tmp_path: Path) -> None:
    # source and model names are identifiers (declared names are checked), a pipeline's is free text
    odd = Pipeline('a "quoted" pipeline', sources=[files("src", str(tmp_path / "x.csv"))],
                   models=[make("m1", x="raw.src")])
    assert dot(odd).startswith('digraph "a \\"quoted\\" pipeline" {')
    assert _mermaid_text('raw.src"x') == "raw.src#quot;x" and _dot_text('models.m"1') == '"models.m\\"1"'


def test_an_empty_pipeline_is_an_empty_graph() -> None:
    assert mermaid(Pipeline("empty")) == "flowchart LR\n"
    assert dot(Pipeline("empty")) == 'digraph "empty" {\n  rankdir=LR;\n}\n'
