"""Which sources and models a run touches: dbt-style `--select` / `--exclude`.

A selector is a model name, `raw.<source>`, or `tag:<tag>`; a leading `+` adds everything it
reads (upstream), a trailing `+` everything that reads it (downstream). Several selectors,
separated by spaces or commas, select their union; `--exclude` removes its own union after.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.graph import Graph, TableRef


@dataclass(frozen=True)
class Selection:
    """The sources to load and the models to build, each in pipeline (DAG) order."""

    sources: list[str]
    models: list[str]


def select(graph: Graph, include: Iterable[str] | str | None = None,
           exclude: Iterable[str] | str | None = None) -> Selection:
    """The sources and models that `include` minus `exclude` name (everything when include is empty).

    A selected model's sources are loaded too, so its raw inputs are fresh, unless excluded
    (`--exclude raw.<source>` builds from what is already landed). Raises ConfigError naming a
    selector that matches nothing.
    """
    chosen = _resolve(graph, _split(include)) if _split(include) else set(graph.tables)
    excluded = _resolve(graph, _split(exclude))
    chosen -= excluded
    models = [m for m in graph.models if TableRef.model(m) in chosen]
    needed = {t for m in models for t in graph.inputs(TableRef.model(m))}
    sources = [s for s in graph.sources if TableRef.raw(s) in (chosen | needed) - excluded]
    return Selection(sources, models)


def _split(selectors: Iterable[str] | str | None) -> list[str]:
    if not selectors:
        return []
    if isinstance(selectors, str):
        selectors = [selectors]
    return [part for s in selectors for part in s.replace(",", " ").split()]


def _resolve(graph: Graph, selectors: list[str]) -> set[TableRef]:
    """The tables `selectors` name, with their upstream (`+name`) and downstream (`name+`)."""
    out: set[TableRef] = set()
    for selector in selectors:
        name = selector.strip("+")
        if name.startswith("tag:"):
            roots = graph.tagged(name.removeprefix("tag:"))
        else:
            roots = {TableRef.parse(name)} & set(graph.tables)
        if not roots:
            known = ", ".join(str(t) if t.zone == "raw" else t.name for t in graph.tables) or "none"
            raise ConfigError(f"selector {selector!r} matches no model, source or tag",
                              f"models and sources are: {known}; tags are written tag:<name>")
        out |= roots
        if selector.startswith("+"):
            out |= graph.upstream(roots)
        if selector.endswith("+"):
            out |= graph.downstream(roots)
    return out
