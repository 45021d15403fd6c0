"""Which sources and models a run touches: dbt-style `--select` / `--exclude`.

A selector is a model name, `raw.<source>`, or `tag:<tag>`; a leading `+` adds everything it
reads (upstream), a trailing `+` everything that reads it (downstream). Several selectors,
separated by spaces or commas, select their union; `--exclude` removes its own union after.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.errors import HeadwaterError
from engine.transform.models import Model, input_table


@dataclass(frozen=True)
class Selection:
    """The sources to load and the models to build, each in pipeline (DAG) order."""

    sources: list[str]
    models: list[str]


def select(sources: Sequence[str], models: Sequence[Model], include: Iterable[str] | str | None = None,
           exclude: Iterable[str] | str | None = None) -> Selection:
    """The sources and models that `include` minus `exclude` name (everything when include is empty).

    A selected model's sources are loaded too, so its raw inputs are fresh, unless excluded
    (`--exclude raw.<source>` builds from what is already landed). Raises
    HeadwaterError naming a selector that matches nothing.
    """
    graph = _Graph(sources, models)
    chosen = graph.resolve(_split(include)) if _split(include) else set(graph.nodes)
    excluded = graph.resolve(_split(exclude))
    chosen -= excluded
    picked_models = [m.name for m in models if m.name in chosen]
    needed = {t for m in models if m.name in picked_models for t in graph.up[m.name]}
    picked_sources = [s for s in sources if f"raw.{s}" in (chosen | needed) - excluded]
    return Selection(picked_sources, picked_models)


def _split(selectors: Iterable[str] | str | None) -> list[str]:
    if not selectors:
        return []
    if isinstance(selectors, str):
        selectors = [selectors]
    return [part for s in selectors for part in s.replace(",", " ").split()]


class _Graph:
    """Nodes are `raw.<source>` and model names; edges run from an input to the model reading it."""

    def __init__(self, sources: Sequence[str], models: Sequence[Model]) -> None:
        self.tags = {m.name: set(m.tags) for m in models}
        self.nodes = [f"raw.{s}" for s in sources] + [m.name for m in models]
        self.up: dict[str, set[str]] = {n: set() for n in self.nodes}
        self.down: dict[str, set[str]] = {n: set() for n in self.nodes}
        for m in models:
            for ref in m.inputs.values():
                table = input_table(ref)
                node = table if table.startswith("raw.") else table.removeprefix("models.")
                self.up[m.name].add(node)
                self.down[node].add(m.name)

    def resolve(self, selectors: list[str]) -> set[str]:
        out: set[str] = set()
        for selector in selectors:
            name = selector.strip("+")
            if name.startswith("tag:"):
                roots = {m for m, tags in self.tags.items() if name[4:] in tags}
            else:
                name = name.removeprefix("models.")
                roots = {name} if name in self.up else set()
            if not roots:
                known = ", ".join(self.nodes) or "none"
                raise HeadwaterError(f"selector {selector!r} matches no model, source or tag",
                                     f"models and sources are: {known}; tags are written tag:<name>")
            out |= roots
            if selector.startswith("+"):
                out |= self._walk(roots, self.up)
            if selector.endswith("+"):
                out |= self._walk(roots, self.down)
        return out

    @staticmethod
    def _walk(roots: set[str], edges: dict[str, set[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
