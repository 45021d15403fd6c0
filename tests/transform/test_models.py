from pathlib import Path

import pytest

from engine.errors import HeadwaterError
from engine.graph import Graph, TableRef
from engine.pipeline import Pipeline, load_pipeline
from engine.sources import files
from engine.transform.models import model


def make(name: str, **inputs: str):  # type: ignore[no-untyped-def]
    params = ", ".join([*inputs, "ctx"])
    namespace: dict = {}
    exec(f"def {name}({params}):\n    return None", namespace)
    return model(inputs=inputs)(namespace[name])


def test_graph_puts_every_model_after_what_it_reads() -> None:
    a = make("a", e="raw.events")
    b = make("b", x="a", y="raw.photos")
    c = make("c", p="b", q="models.a")
    graph = Graph.build(["events", "photos"], [c, b, a])
    order = list(graph.models)
    assert order.index("a") < order.index("b") < order.index("c")
    assert graph.inputs(TableRef.model("c")) == [TableRef.model("a"), TableRef.model("b")]
    assert graph.readers(TableRef.raw("events")) == [TableRef.model("a")]
    assert graph.upstream([TableRef.model("c")]) == {TableRef.model("a"), TableRef.model("b"),
                                                      TableRef.raw("events"), TableRef.raw("photos")}
    assert graph.downstream([TableRef.raw("photos")]) == {TableRef.model("b"), TableRef.model("c")}
    assert [str(t) for t in graph.tables] == ["raw.events", "raw.photos", *(f"models.{m}" for m in order)]


def test_table_refs_parse_every_way_a_table_is_named() -> None:
    assert TableRef.parse("a") == TableRef.parse("models.a") == TableRef("models", "a")
    assert TableRef.parse("raw.e") == TableRef.raw("e") and str(TableRef.raw("e")) == "raw.e"
    assert TableRef.parse("quarantine.e").zone == "quarantine"
    assert TableRef.parse("other.thing") == TableRef("models", "other.thing")  # not a zone: a model's name
    with pytest.raises(HeadwaterError, match="names no table"):
        TableRef.parse("raw.")


def test_cycle_is_named() -> None:
    with pytest.raises(HeadwaterError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        Graph.build([], [make("a", x="b"), make("b", y="a")])


def test_unknown_inputs_are_named_with_the_choices() -> None:
    with pytest.raises(HeadwaterError,
                       match=r"input e='raw.evnts' names no source.*tables of this pipeline are raw.events, a"):
        Graph.build(["events"], [make("a", e="raw.evnts")])
    with pytest.raises(HeadwaterError, match=r"input x='models.nope' is neither a model nor a raw table"):
        Graph.build([], [make("a", x="nope")])
    with pytest.raises(HeadwaterError, match=r"input x='quarantine.e' is not a raw or model table"):
        Graph.build(["e"], [make("a", x="quarantine.e")])


def test_model_decorator_checks_inputs_against_parameters() -> None:
    with pytest.raises(HeadwaterError, match=r"inputs \['photos'\] are not parameters"):
        model(inputs={"photos": "raw.photos"}, name="m")(lambda events: events)
    m = model(inputs={"df": "raw.x"}, name="renamed")(lambda df: df)
    assert m.name == "renamed" and not m.wants_ctx and m(df=3) == 3
    with pytest.raises(HeadwaterError, match="unknown materialization"):
        model(inputs={}, materialized="view", name="m")(lambda: None)


def test_code_hash_changes_with_the_source() -> None:
    assert make("a", e="raw.e").code_hash == make("a", e="raw.e").code_hash
    assert make("a", e="raw.e").code_hash != make("a", f="raw.e").code_hash


def test_pipeline_rejects_duplicates_and_loads_from_a_file(tmp_path: Path) -> None:
    with pytest.raises(HeadwaterError, match=r"duplicate source name\(s\) \['s'\]"):
        Pipeline("p", sources=[files("s", "a.csv"), files("s", "b.csv")])
    (tmp_path / "pipe.py").write_text(
        "from engine import Pipeline, sources\n"
        "pipeline = Pipeline('mine', sources=[sources.files('s', 'x.csv')])\n")
    loaded = load_pipeline(tmp_path / "pipe.py")
    assert loaded.name == "mine" and loaded.base_dir == tmp_path.resolve()
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(HeadwaterError, match="defines no `pipeline`"):
        load_pipeline(tmp_path / "empty.py")
    with pytest.raises(HeadwaterError, match="cannot import pipeline module"):
        load_pipeline("no_such_module_here")
