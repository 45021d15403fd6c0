"""The pipeline's DAG, typed: every table is a `TableRef(zone, name)`, and `Graph` is the one
place that knows which table is read by which model.

Sources land in `raw.<source>`; models read raw tables and other models and write
`models.<model>`. Everything that needs the DAG (build order, `--select`, lineage, shared
reads, the run plan, the Prefect flow) asks a `Graph`, built once per `Pipeline`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from engine.errors import ConfigError

Zone = Literal["raw", "models", "quarantine", "_headwater"]
ZONES: tuple[Zone, ...] = ("raw", "models", "quarantine", "_headwater")

# A source's or a model's name is a table name in the lake (a folder under its zone), in
# `headwater query` (a DuckDB view `zone.name`) and, for a model, in the warehouse: an ASCII
# identifier is the one thing all of them take as it is. `-` breaks the views and unquoted SQL,
# `.` separates zone and name, `/` and `\` are path separators, anything else needs quoting.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_MAX = 128  # characters; a published model's name is held to the warehouse's shorter limit


def check_name(kind: str, name: object) -> str:
    """`name` when it can name a source or a model (`kind` says which, for the error): an ASCII
    identifier of at most NAME_MAX characters; else ConfigError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"invalid {kind} name {name!r}: a {kind} name is a table name in the lake and "
                          "the warehouse", "use letters, digits and underscores, starting with a letter or "
                          "an underscore (e.g. 'photo_likes')")
    if len(name) > NAME_MAX:
        raise ConfigError(f"{kind} name {name[:20]!r}… is {len(name)} characters long",
                          f"use at most {NAME_MAX}")
    return name


@dataclass(frozen=True, order=True)
class TableRef:
    """A lake table: `raw.<source>`, `models.<model>`, `quarantine.<source>` or `_headwater.<x>`."""

    zone: Zone
    name: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """`raw.x`, `models.x`, `quarantine.x`, `_headwater.x`, or a bare `x` (a model)."""
        zone, dot, name = text.partition(".")
        if dot and zone in ZONES:
            if not name:
                raise ConfigError(f"table name {text!r} names no table", f"write it as {zone}.<name>")
            return cls(zone, name)
        return cls("models", text)

    @classmethod
    def raw(cls, source: str) -> TableRef:
        """The table source `source` lands in."""
        return cls("raw", source)

    @classmethod
    def model(cls, name: str) -> TableRef:
        """The table model `name` writes."""
        return cls("models", name)

    def __str__(self) -> str:
        return f"{self.zone}.{self.name}"


class Node(Protocol):
    """What the graph needs of a model: its name, its inputs and its tags."""

    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, TableRef]: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Graph:
    """Sources, models and the edges from each table to the models that read it.

    `tables` lists every node: the raw tables in source order, then the model tables in a
    topological order (each model after every model it reads)."""

    sources: tuple[str, ...]
    models: tuple[str, ...]  # topological order
    edges: tuple[tuple[TableRef, TableRef], ...]  # (input table, model table reading it)
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)  # model -> tags

    @classmethod
    def build(cls, sources: Sequence[str], models: Sequence[Node]) -> Graph:
        """The graph of `sources` and `models`; raises ConfigError naming an input that is no
        table of the pipeline, or a cycle."""
        by_name = {m.name: m for m in models}
        raw = set(sources)
        tables = ", ".join([f"raw.{r}" for r in sorted(raw)] + sorted(by_name)) or "none"
        for m in models:
            for param, ref in m.inputs.items():
                what = f"table {str(ref)!r}" if param == str(ref) else f"input {param}={str(ref)!r}"  # SQL: by table
                if ref.zone == "raw" and ref.name not in raw:
                    raise ConfigError(f"model {m.name!r}: {what} names no source",
                                      f"tables of this pipeline are {tables}")
                if ref.zone == "models" and ref.name not in by_name:
                    raise ConfigError(f"model {m.name!r}: {what} is neither a model nor a raw table",
                                      f"tables of this pipeline are {tables} (raw tables as raw.<source>)")
                if ref.zone not in ("raw", "models"):
                    raise ConfigError(f"model {m.name!r}: {what} is not a raw or model table",
                                      "models read raw.<source> tables and other models")
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                cycle = path[path.index(name):] + [name]
                raise ConfigError(f"models form a cycle: {' -> '.join(cycle)}",
                                  "break the cycle: a model cannot depend on itself")
            state[name] = "active"
            for ref in by_name[name].inputs.values():
                if ref.zone == "models":
                    visit(ref.name, path + [name])
            state[name] = "done"
            order.append(name)

        for name in by_name:
            visit(name, [])
        edges = tuple((ref, TableRef.model(name)) for name in order
                      for ref in sorted(set(by_name[name].inputs.values())))
        return cls(tuple(sources), tuple(order), edges,
                   {m.name: frozenset(m.tags) for m in models})

    @property
    def tables(self) -> list[TableRef]:
        """Every table: raw tables in source order, then model tables in topological order."""
        return [TableRef.raw(s) for s in self.sources] + [TableRef.model(m) for m in self.models]

    def inputs(self, table: TableRef) -> list[TableRef]:
        """The tables `table` (a model's) reads directly, sorted."""
        return [a for a, b in self.edges if b == table]

    def readers(self, table: TableRef) -> list[TableRef]:
        """The model tables that read `table` directly, in topological order."""
        return [b for a, b in self.edges if a == table]

    def upstream(self, tables: Iterable[TableRef]) -> set[TableRef]:
        """Every table that `tables` are built from, directly or not (themselves excluded unless
        one is upstream of another)."""
        return self._walk(tables, self.inputs)

    def downstream(self, tables: Iterable[TableRef]) -> set[TableRef]:
        """Every model table built from `tables`, directly or not."""
        return self._walk(tables, self.readers)

    def tagged(self, tag: str) -> set[TableRef]:
        """The model tables of the models tagged `tag`."""
        return {TableRef.model(m) for m, tags in self.tags.items() if tag in tags}

    def __contains__(self, table: object) -> bool:
        return isinstance(table, TableRef) and table in set(self.tables)

    @staticmethod
    def _walk(roots: Iterable[TableRef], step: Callable[[TableRef], list[TableRef]]) -> set[TableRef]:
        seen: set[TableRef] = set()
        todo = list(roots)
        while todo:
            for nxt in step(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
