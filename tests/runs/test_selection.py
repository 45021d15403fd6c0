"""dbt-style selection over a small DAG: a -> b -> c, a -> d, sources s1 (read by a) and s2 (by d)."""
from __future__ import annotations

import pytest

from engine import HeadwaterError, model
from engine.graph import Graph
from engine.runs.selection import select


def _m(name: str, inputs: dict[str, str], tags: tuple[str, ...] = ()):  # noqa: ANN202
    def fn(**kw):  # noqa: ANN003, ANN202
        return None
    return model(inputs=inputs, name=name, tags=tags)(fn)


GRAPH = Graph.build(["s1", "s2"], [
    _m("c", {"b": "b"}, ("daily", "ml")),  # declared out of order: the graph orders them
    _m("a", {"x": "raw.s1"}, ("daily",)),
    _m("b", {"a": "a"}),
    _m("d", {"a": "models.a", "y": "raw.s2"}),
])


@pytest.mark.parametrize("include, exclude, models, sources", [
    (None, None, ["a", "b", "c", "d"], ["s1", "s2"]),
    (["b"], None, ["b"], []),  # b reads only a model: no source to load
    (["b+"], None, ["b", "c"], []),
    (["+b"], None, ["a", "b"], ["s1"]),
    (["+c"], None, ["a", "b", "c"], ["s1"]),
    (["a+"], ["c"], ["a", "b", "d"], ["s1", "s2"]),
    (["tag:daily"], None, ["a", "c"], ["s1"]),
    (["tag:ml+", "d"], None, ["c", "d"], ["s2"]),
    (["raw.s2+"], None, ["d"], ["s2"]),
    (["b,c"], None, ["b", "c"], []),
    (None, ["raw.s1", "a+"], [], ["s2"]),
    (["d"], ["raw.s2"], ["d"], []),  # an excluded source is not loaded, even for a selected model
    (None, ["tag:daily"], ["b", "d"], ["s1", "s2"]),  # excluding models leaves every source in
])
def test_selectors(include, exclude, models, sources) -> None:  # noqa: ANN001
    chosen = select(GRAPH, include, exclude)
    assert chosen.models == models
    assert chosen.sources == sources


def test_a_selector_that_matches_nothing_names_what_exists() -> None:
    with pytest.raises(HeadwaterError, match="matches no model") as info:
        select(GRAPH, ["nope+"])
    assert "a, b" in info.value.hint or "raw.s1" in str(info.value.hint)
    with pytest.raises(HeadwaterError, match="tag:nope"):
        select(GRAPH, ["tag:nope"])
