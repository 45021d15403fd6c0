"""`headwater` commands that look into the lake: show, history, query, runs, lineage, reproduce."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.dataset as ds
import typer
from rich.tree import Tree

from engine.cli.app import BackendOpt, LakeOpt, WarehouseOpt, app, console, friendly, guarded
from engine.cli.report import arrow_table, rows_table
from engine.config import Config
from engine.errors import ConfigError
from engine.graph import TableRef
from engine.lake import Lake
from engine.lake.storage import arrow_dataset
from engine.pipeline import load_pipeline
from engine.runs import manifest
from engine.runs.reproduce import Node, edges, label, reproduce, upstream
from engine.runs.runner import Runner


@app.command()
@friendly
def show(table: Annotated[str, typer.Argument(help="raw.<source>, models.<model>, quarantine.<source> or a bare name")],
         version: Annotated[int | None, typer.Option(help="Delta version (default: latest)")] = None,
         limit: Annotated[int, typer.Option(help="rows to show")] = 20, lake: LakeOpt = None) -> None:
    """Show rows of a lake table, at its latest or a given version."""
    the_lake = _lake(lake)
    dt = the_lake.table(table, version)
    data = first_rows(arrow_dataset(dt, the_lake.storage_options), limit)
    console.print(arrow_table(data, f"{the_lake.qualify(table)} @ version {dt.version()} "
                                    f"(first {data.num_rows} rows)", width=console.width))


@app.command()
@friendly
def history(table: Annotated[str, typer.Argument(help="a lake table")], lake: LakeOpt = None) -> None:
    """Show the versions of a lake table: when, what, rows, run."""
    the_lake = _lake(lake)
    rows = [{"version": c.get("version"), "timestamp": _ms(c.get("timestamp")),
             "operation": c.get("operation"),
             "rows added": _rows_added(c),
             "run": c.get("run_id", ""), "state": _short(c.get("state"))}
            for c in the_lake.history(table)]
    console.print(rows_table(rows, f"history of {the_lake.qualify(table)}"))


@app.command()
@friendly
def query(sql: Annotated[str, typer.Argument(
              help="SQL; lake tables are raw.<x>, models.<x>, quarantine.<x> and _headwater.runs on DuckDB")],
          limit: Annotated[int, typer.Option(help="rows to show")] = 50,
          lake: LakeOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Run SQL over the warehouse (and, on DuckDB, over the lake's tables)."""
    from engine.publish import connect

    config = guarded(Config.load(Path.cwd(), lake=lake, warehouse=warehouse))
    the_lake = Lake(config.lake, config.storage_options)
    wh = connect(config.warehouse)
    try:
        datasets = {name: the_lake.dataset(name) for name in the_lake.tables(internal=True)}
        result = wh.query(sql, lake=datasets)
    finally:
        wh.dispose()
    console.print(arrow_table(result.slice(0, limit), width=console.width))
    if result.num_rows > limit:
        console.print(f"[dim]{result.num_rows - limit} more rows (--limit)[/]")


def first_rows(dataset: ds.Dataset, limit: int) -> pa.Table:
    """The first `limit` rows of `dataset`, read a whole row group at a time: a scan stopped
    early (`Dataset.head`) leaves reads in flight that can outlive the command."""
    parts: list[pa.Table] = []
    got = 0
    for fragment in dataset.get_fragments():
        if got >= limit:
            break
        for group in fragment.split_by_row_group():
            if got >= limit:
                break
            one = ds.FileSystemDataset([group], dataset.schema, dataset.format, dataset.filesystem)
            rows = one.to_table().slice(0, limit - got)
            parts.append(rows)
            got += rows.num_rows
    return pa.concat_tables(parts) if parts else dataset.schema.empty_table()


def _lake(uri: str | None) -> Lake:
    config = guarded(Config.load(Path.cwd(), lake=uri))
    return Lake(config.lake, config.storage_options)


def _rows_added(commit: dict[str, Any]) -> str:
    """Rows a commit added: appended or written rows, or a merge's new and updated rows."""
    metrics = commit.get("operationMetrics") or {}
    if "num_target_rows_inserted" in metrics:
        return f"{metrics['num_target_rows_inserted']} new, {metrics.get('num_target_rows_updated', 0)} updated"
    return str(metrics.get("num_added_rows", commit.get("rows_added", "")))


def _ms(value: Any) -> str:

    return datetime.fromtimestamp(value / 1000, timezone.utc).isoformat(timespec="seconds") if value else ""


def _short(state: Any) -> str:
    if not state:
        return ""
    if "files" in state:
        return f"{len(state['files'])} files"
    return str(state)


@app.command()
@friendly
def runs(limit: Annotated[int, typer.Option(help="runs to show")] = 20, lake: LakeOpt = None) -> None:
    """List recorded runs, newest first: status, code, backend, rows and time."""
    rows = [{"run": r["run_id"], "pipeline": r["pipeline"], "status": r["status"],
             "started": r["started_at"].isoformat(timespec="seconds") if r["started_at"] else "",
             "seconds": r["seconds"], "backend": r["backend"] or "",
             "git": (r["git_commit"] or "")[:10] + ("+dirty" if r["git_dirty"] else ""),
             "landed": sum(s.get("rows", 0) for s in r["steps"] if s["kind"] == "load"),
             "built": sum(1 for s in r["steps"] if s["kind"] == "model" and s["status"] == "built"),
             "selection": _selection(r["selection"])}
            for r in manifest.runs(_lake(lake), limit)]
    if not rows:
        console.print("no runs recorded in this lake yet")
        return
    console.print(rows_table(rows, "runs (newest first)", no_wrap=("run",)))


@app.command()
@friendly
def lineage(table: Annotated[str, typer.Argument(help="a lake table, e.g. models.training_set")],
            version: Annotated[int | None, typer.Option(help="its version (default: latest)")] = None,
            format: Annotated[str, typer.Option("--format", help="text | mermaid | dot")] = "text",
            lake: LakeOpt = None) -> None:
    """Show the tables and versions a lake table was built from (upstream tree)."""
    root = upstream(_lake(lake), table, version)
    if format == "text":
        console.print(_tree(root, Tree(_node_text(root))))
    elif format == "mermaid":
        ids = _ids(root)
        lines = ["graph LR"] + [f'    {ids[a]}["{a}"] --> {ids[b]}["{b}"]' for a, b in edges(root)]
        console.print("\n".join(lines) if len(lines) > 1 else f'graph LR\n    n0["{label(root)}"]', highlight=False)
    elif format == "dot":
        lines = ["digraph lineage {", "    rankdir=LR;"] + [f'    "{a}" -> "{b}";' for a, b in edges(root)]
        console.print("\n".join(lines + [f'    "{label(root)}";', "}"]), highlight=False)
    else:
        raise ConfigError(f"unknown lineage format {format!r}", "use text, mermaid or dot")


@app.command("reproduce")
@friendly
def reproduce_cmd(run_id: Annotated[str, typer.Argument(help="a run id (or a unique prefix) from `headwater runs`")],
                  table: Annotated[str, typer.Option("--table", help="the model to rebuild")],
                  out: Annotated[Path, typer.Option("--out", help="folder for the rebuilt Delta table")],
                  pipeline: Annotated[str | None, typer.Option(
                      help="pipeline file (default: the one the run recorded)")] = None,
                  allow_code_change: Annotated[bool, typer.Option(
                      help="rebuild even if the model's code changed")] = False,
                  lake: LakeOpt = None, backend: BackendOpt = None) -> None:
    """Rebuild a model from the exact lake versions a run read, and compare it with what the run wrote."""
    the_lake = _lake(lake)
    run = manifest.find(the_lake, run_id)
    target = pipeline or run.get("pipeline_file")
    if not target:
        raise ConfigError(f"run {run['run_id']} recorded no pipeline file", "pass --pipeline")
    p = load_pipeline(target)
    if pipeline is None and run.get("pipeline_hash") and manifest.file_hash(Path(target)) != run["pipeline_hash"]:
        console.print(f"[yellow]note:[/] {target} changed since the run (its model code is checked next)")
    config = guarded(Config.load(p.base_dir, lake=lake, backend=backend))
    with Runner(p, config) as runner:  # what runs the model: its kind's engine under this config
        chosen = runner.engine_for(p.model(TableRef.parse(table).name))
        done = reproduce(the_lake, p, chosen, run["run_id"], table, out, allow_code_change)
    console.print(f"rebuilt {done.table} (version {done.version} of run {run['run_id']}) from "
                  + ", ".join(f"{k}@v{v}" for k, v in sorted(done.inputs.items()))
                  + f" on {chosen.name}: {done.rows:,} rows -> {done.path}", highlight=False)
    if not done.equal:
        console.print("[red]differs from the original:[/]\n  " + "\n  ".join(done.differences), highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]equal[/] to {done.table} version {done.version}, value for value")


def _tree(node: Node, tree: Tree) -> Tree:
    for child in node.inputs:
        _tree(child, tree.add(_node_text(child)))
    return tree


def _node_text(node: Node) -> str:
    return f"{node.table} [dim]v{node.version}" + (f" · run {node.run_id}" if node.run_id else "") + "[/]"


def _ids(root: Node) -> dict[str, str]:
    names: dict[str, str] = {}
    for a, b in edges(root) or [(label(root), label(root))]:
        for n in (a, b):
            names.setdefault(n, f"n{len(names)}")
    return names


def _selection(selection: dict[str, Any]) -> str:
    parts = [f"--select {selection['select']}" if selection.get("select") else "",
             f"--exclude {selection['exclude']}" if selection.get("exclude") else "",
             "--full-refresh" if selection.get("full_refresh") else ""]
    return " ".join(p for p in parts if p)
