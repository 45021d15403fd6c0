"""The house by stage, checked from the source: engine/'s imports run one way, down the stages
(ARCHITECTURE.md), with no cycles (imports inside functions and under TYPE_CHECKING count too),
and the engine imports neither Prefect nor the `flows` or `examples` folders."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Each stage may import its own modules and the stages of a lower rank, never a higher one.
RANKS = {
    "engine._version": 0, "engine.redact": 0, "engine.errors": 0, "engine.config": 0, "engine.graph": 0,
    "engine.lake": 1,
    "engine.load": 2,
    "engine.sources": 3,
    "engine.transform": 4,
    "engine.publish": 5,
    "engine.pipeline": 6,
    "engine.runs": 7,
    "engine.demo": 8,
    "engine.cli": 9,
    "engine": 10,  # engine/__init__.py: the public API, over everything
}
FORBIDDEN = ("flows", "examples", "prefect", "bench", "tests")


def modules() -> dict[str, Path]:
    """Every module of the engine package by dotted name (a package by its __init__.py)."""
    out = {}
    for path in ENGINE.rglob("*.py"):
        parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import statement anywhere in `path`; `from x import y`
    names x.y when that is a module, else x."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; write it in full"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in known else node.module or ""), node.lineno


def stage(module: str) -> str:
    """The longest RANKS entry `module` falls under."""
    return max((s for s in RANKS if module == s or module.startswith(s + ".")), key=len)


def graph() -> dict[str, dict[str, int]]:
    """Module -> {engine module it imports: line}."""
    known = modules()
    return {name: {target: line for target, line in imports(path, known)
                   if target == "engine" or target.startswith("engine.")}
            for name, path in known.items()}


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, {}):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_engine_modules_import_no_cycle() -> None:
    edges = graph()
    assert len(edges) > 40  # the walk found the engine
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_stages() -> None:
    wrong = [f"{modules()[a].relative_to(ENGINE.parent)}:{line} ({stage(a)}) imports {b} ({stage(b)})"
             for a, targets in graph().items() for b, line in targets.items()
             if RANKS[stage(b)] > RANKS[stage(a)]]
    assert not wrong, "imports that go up a stage:\n" + "\n".join(wrong)


def test_the_engine_never_imports_flows_examples_or_prefect() -> None:
    known = modules()
    wrong = [f"{path.relative_to(ENGINE.parent)}:{line} imports {name}"
             for path in known.values() for name, line in imports(path, known)
             if name.split(".")[0] in FORBIDDEN]
    assert not wrong, "\n".join(wrong)


def test_the_checks_can_fail() -> None:
    """The cycle finder and the stage ranks flag what they should (on made-up edges)."""
    assert cycles({"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 3}}) == [["a", "b"]]
    assert cycles({"a": {"a": 1}}) == [["a"]]
    assert RANKS[stage("engine.transform.backends.cudf")] > RANKS[stage("engine.lake.store")]
    assert stage("engine.lake") == "engine.lake" and stage("engine") == "engine"
