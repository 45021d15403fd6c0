"""Data lineage and reproduction from what the lake recorded.

Every model commit names the input versions it read (`inputs`) and its code hash; the run
manifest names the version each run wrote. `upstream` walks those records into a tree of
(table, version); `reproduce` rebuilds a model from the exact input versions a run read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from deltalake import write_deltalake

from engine.errors import ConfigError
from engine.graph import TableRef
from engine.lake import Lake, as_delta
from engine.runs import manifest
from engine.runs.compare import differences
from engine.transform.build import BuildPlan, call, read_input, run_on_engine
from engine.transform.models import Context

if TYPE_CHECKING:
    from engine.pipeline import Pipeline
    from engine.transform.backends import Backend, Engine


@dataclass
class Node:
    """A lake table at a version, the run that wrote it, and the inputs it was built from."""

    table: str
    version: int | None
    run_id: str | None = None
    inputs: list[Node] = field(default_factory=list)


def commit_meta(lake: Lake, name: str, version: int) -> dict[str, Any]:
    """Headwater's metadata as of version `version` of `name`: that commit's, or, when it is
    not Headwater's (an OPTIMIZE, a VACUUM), the newest Headwater commit before it."""
    commits = lake.history(name)
    if not any(c.get("version") == version for c in commits):
        commits = []
    for commit in commits:  # newest first
        if commit.get("version", -1) <= version and "run_id" in commit:
            return commit
    if commits:
        return {}
    raise ConfigError(f"table {name!r} has no version {version}", "see `headwater history " + name + "`")


def upstream(lake: Lake, name: str, version: int | None = None) -> Node:
    """The tree of tables and versions that `name` at `version` (latest: None) was built from."""
    name = lake.qualify(name)
    if not lake.exists(name):
        raise ConfigError(f"no lake table {name!r}", "check the name with `headwater show`")
    version = lake.version(name) if version is None else version
    meta = commit_meta(lake, name, version) if version is not None else {}
    node = Node(name, version, meta.get("run_id"))
    for ref, v in sorted((meta.get("inputs") or {}).items()):
        node.inputs.append(upstream(lake, str(TableRef.parse(ref)), int(v)))
    return node


def edges(node: Node) -> list[tuple[str, str]]:
    """(from, to) pairs of `table@version` labels, inputs first, each once."""
    out: list[tuple[str, str]] = []
    for child in node.inputs:
        for pair in edges(child) + [(label(child), label(node))]:
            if pair not in out:
                out.append(pair)
    return out


def label(node: Node) -> str:
    return f"{node.table}@v{node.version}"


@dataclass
class Reproduced:
    """A model rebuilt from the input versions a run read, and how it compares to the original."""

    table: str
    version: int
    path: str
    rows: int
    inputs: dict[str, int]
    differences: list[str]

    @property
    def equal(self) -> bool:
        return not self.differences


def reproduce(lake: Lake, pipeline: Pipeline, backend: Backend | Engine, run_id: str, table: str,
              out: str | Path, allow_code_change: bool = False) -> Reproduced:
    """Rebuild model `table` as run `run_id` built it, from the lake versions that run read,
    into a Delta table at `out`; compare it with the version the run wrote."""
    run = manifest.find(lake, run_id)
    name = TableRef.parse(table).name
    step = next((s for s in run["steps"] if s["kind"] == "model" and s["name"] == name
                 and s["status"] in ("built", "unchanged")), None)
    if step is None or step.get("version") is None:
        built = sorted({s["name"] for s in run["steps"] if s["kind"] == "model"})
        raise ConfigError(f"run {run['run_id']} did not build model {name!r}",
                          f"models in that run: {', '.join(built) or 'none'}; see `headwater runs`")
    version = int(step["version"])
    meta = commit_meta(lake, f"models.{name}", version)
    model = pipeline.model(name)
    if meta.get("code") != model.code_hash and not allow_code_change:
        raise ConfigError(
            f"model {name!r}: its code changed since run {run['run_id']} (code hash {meta.get('code')} "
            f"then, {model.code_hash} now)",
            f"check out the commit the run recorded ({run.get('git_commit') or 'not in git'}) and rerun, "
            "or pass --allow-code-change to rebuild with today's code")
    inputs = {str(TableRef.parse(ref)): int(v) for ref, v in (meta.get("inputs") or {}).items()}
    if model.kind == "pandas":
        frontend = cast("Backend", backend)
        frames: dict[str, Any] = {param: read_input(model, param, lake, frontend, inputs[str(ref)])
                                  for param, ref in model.inputs.items()}
        if model.wants_ctx:
            frames["ctx"] = Context(model.name, run["run_id"], frontend.name, frontend.xp)
        result = as_delta(call(model, frames, frontend))
    else:  # a SQL or polars model, on its engine
        result = as_delta(run_on_engine(model, lake, cast("Engine", backend), inputs, run["run_id"],
                                        BuildPlan(False, "reproduce")))
    path = str(Path(out) / name) if "://" not in str(out) else f"{str(out).rstrip('/')}/{name}"
    write_deltalake(path, result, mode="overwrite", schema_mode="overwrite",
                    storage_options=lake.storage_options)
    original = lake.read(f"models.{name}", version)
    return Reproduced(f"models.{name}", version, path, result.num_rows, inputs,
                      differences(original, _like(result, original)))


def _like(result: pa.Table, original: pa.Table) -> pa.Table:
    """`result` with `original`'s column order (types as Delta stored them)."""
    return result.select([n for n in original.column_names if n in result.column_names]) \
        if set(original.column_names) == set(result.column_names) else result
