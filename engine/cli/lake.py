"""`headwater` commands that look into the lake: show, history, query, runs, lineage, reproduce."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.dataset as ds
import typer
from rich.tree import Tree
from sqlalchemy.engine import make_url

from engine.cli.app import (
    BackendOpt,
    FormatOpt,
    LakeOpt,
    WarehouseOpt,
    app,
    console,
    err_console,
    friendly,
    guarded,
)
from engine.cli.formats import WRITERS
from engine.cli.tables import data_table, listing
from engine.config import Config
from engine.errors import ConfigError, HeadwaterError
from engine.graph import TableRef
from engine.lake import Lake
from engine.lake.history import VALID_FROM, VALID_TO, valid_at
from engine.lake.storage import arrow_dataset
from engine.pipeline import load_pipeline
from engine.runs import manifest
from engine.runs.reproduce import Node, edges, label, reproduce, upstream
from engine.runs.runner import Runner


@app.command()
@friendly
def show(table: Annotated[str, typer.Argument(
             metavar="TABLE", help="raw.<source>, models.<model>, quarantine.<source> or a bare name")],
         version: Annotated[int | None, typer.Option(help="Delta version (default: latest)")] = None,
         limit: Annotated[int, typer.Option(help="rows to show")] = 20, lake: LakeOpt = None,
         format: FormatOpt = "table",
         as_of: Annotated[str | None, typer.Option(
             "--as-of", metavar="TIME",
             help="an SCD2 table's rows valid then: 2026-03-01 or 2026-03-01T12:00 (UTC unless it has a zone)")] = None,
         ) -> None:
    """Show rows of a lake table, at its latest or a given version (of an SCD2 table: as of a time)."""
    the_lake = _lake(lake)
    dt = the_lake.table(table, version)
    dataset = arrow_dataset(dt, the_lake.storage_options)
    when, where = None, ""
    if as_of is not None:
        when = _when(as_of)
        if VALID_FROM not in dataset.schema.names or VALID_TO not in dataset.schema.names:
            raise ConfigError(f"{the_lake.qualify(table)} keeps no history (it has no {VALID_FROM} and {VALID_TO})",
                              "--as-of reads tables of sources declared with write='scd2'; use --version "
                              "for an earlier version of any table")
        where = f" as of {when.isoformat()}"
    data = first_rows(dataset, limit, None if when is None else valid_at(when))
    print_rows(data, format, f"{the_lake.qualify(table)} @ version {dt.version()}{where} (first {data.num_rows} rows)")


def _when(text: str) -> datetime:
    """`--as-of`: an ISO date or time, in UTC unless it names a zone."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"--as-of {text!r} is not a date or time",
                          "write it as 2026-03-01 or 2026-03-01T12:00 (UTC unless it ends with a zone, e.g. +02:00)"
                          ) from exc
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


@app.command()
@friendly
def history(table: Annotated[str, typer.Argument(metavar="TABLE", help="a lake table")],
            lake: LakeOpt = None) -> None:
    """Show the versions of a lake table: when, what, rows, run, and the source state or model
    inputs it committed."""
    the_lake = _lake(lake)
    name = the_lake.qualify(table)
    last = "inputs" if name.startswith("models.") else "state"
    rows = [{"version": str(c.get("version", "")), "time (UTC)": _ms(c.get("timestamp")),
             "operation": str(c.get("operation", "")), "rows added": _rows_added(c),
             last: _inputs(c.get("inputs")) if last == "inputs" else _state(c.get("state")),
             "run": str(c.get("run_id", ""))}
            for c in the_lake.history(table)]
    _print_listing(rows, f"history of {name}", keep=("version", "rows added"), right=("version", "rows added"))


@app.command()
@friendly
def query(sql: Annotated[str, typer.Argument(
              metavar="SQL",
              help="SQL; lake tables are raw.<x>, models.<x>, quarantine.<x> and _headwater.runs on DuckDB")],
          limit: Annotated[int, typer.Option(help="rows to show")] = 50,
          lake: LakeOpt = None, warehouse: WarehouseOpt = None, format: FormatOpt = "table") -> None:
    """Run SQL over the warehouse (and, on DuckDB, over the lake's tables)."""
    from engine.publish import connect

    config = guarded(Config.load(Path.cwd(), lake=lake, warehouse=warehouse))
    the_lake = Lake(config.lake, config.storage_options)
    wh = connect(config.warehouse)
    try:
        tables = the_lake.tables(internal=True)
        datasets = {name: the_lake.dataset(name) for name in tables}
        try:
            result = wh.query(sql, lake=datasets)
        except HeadwaterError as exc:
            if MISSING_TABLE.search(str(exc)) and not _published(wh, config.warehouse):
                raise nothing_published(config, tables) from exc
            raise
    finally:
        wh.dispose()
    print_rows(result.slice(0, limit), format, total_rows=result.num_rows)


MISSING_TABLE = re.compile(r"does not exist|no such table|Catalog Error", re.IGNORECASE)


def nothing_published(config: Config, lake_tables: list[str]) -> ConfigError:
    """The error for a query that names a warehouse table before any run published one."""
    found = [t for t in lake_tables if not t.startswith("_")]
    lake_note = (f"; the lake's tables are queryable already: {', '.join(found[:6])}"
                 + (", …" if len(found) > 6 else "")) if found else ""
    return ConfigError(f"nothing is published to the warehouse ({config.warehouse}) yet",
                       "run a pipeline first: headwater run PIPELINE (or headwater demo for the example)"
                       + lake_note)


def _published(wh: Any, url: str) -> list[str]:
    """The warehouse's tables; none when it is a DuckDB or SQLite file that does not exist yet
    (not connecting to it, which would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() in ("duckdb", "sqlite") and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            return []
    try:
        return list(wh.tables())
    except HeadwaterError:
        return ["?"]  # it cannot even list: keep the original error


def print_rows(data: pa.Table, format: str, title: str = "", total_rows: int | None = None) -> None:
    """`data` in `format`: a table cut to the terminal's width, or csv/json/markdown whole on
    stdout (a note that more rows exist goes to stderr)."""
    if format != "table":
        typer.echo(WRITERS[format](data), nl=False)
        if total_rows is not None and total_rows > data.num_rows:
            err_console.print(f"[dim]{total_rows - data.num_rows:,} more rows (--limit)[/]")
        return
    if title:  # its own line: as a table's title it would wrap to the table's width
        console.print(title, highlight=False, markup=False)
    table, footer = data_table(data, console.width, total_rows)
    console.print(table)
    console.print(footer, style="dim", highlight=False)


def first_rows(dataset: ds.Dataset, limit: int, where: ds.Expression | None = None) -> pa.Table:
    """The first `limit` rows of `dataset` (that match `where`), read a whole row group at a time:
    a scan stopped early (`Dataset.head`) leaves reads in flight that can outlive the command."""
    parts: list[pa.Table] = []
    got = 0
    for fragment in dataset.get_fragments():
        if got >= limit:
            break
        for group in fragment.split_by_row_group():
            if got >= limit:
                break
            one = ds.FileSystemDataset([group], dataset.schema, dataset.format, dataset.filesystem)
            rows = one.to_table(filter=where).slice(0, limit - got)
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
        return f"{metrics['num_target_rows_inserted']:,} new, {metrics.get('num_target_rows_updated', 0):,} updated"
    added = metrics.get("num_added_rows", commit.get("rows_added", ""))
    return f"{added:,}" if isinstance(added, int) else str(added)


def _ms(value: Any) -> str:
    """A Delta commit's timestamp (milliseconds since the epoch) as `YYYY-MM-DD HH:MM:SS`, UTC."""
    return datetime.fromtimestamp(value / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _state(state: Any) -> str:
    """A source's committed state in words: `14 files`, `cursor 2026-03-14T23:59:59`, …"""
    if not isinstance(state, dict):
        return "" if state is None else str(state)
    parts = []
    for key, value in state.items():
        if key == "files" and isinstance(value, list | dict):
            parts.append(f"{len(value)} files")
        elif isinstance(value, dict) and "value" in value:
            parts.append(f"{key} {value['value']}")
        elif isinstance(value, list | dict):
            parts.append(f"{key.replace('_', ' ')} {len(value)}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def _inputs(inputs: Any) -> str:
    """A model commit's inputs: `raw.users v0, models.user_activity_daily v3`."""
    if not isinstance(inputs, dict):
        return ""
    return ", ".join(f"{name} v{version}" for name, version in inputs.items())


def _print_listing(rows: list[dict[str, str]], title: str, keep: tuple[str, ...] = (),
                   right: tuple[str, ...] = ()) -> None:
    table, footer = listing(rows, console.width, title, keep=keep, right=right)
    console.print(table)
    if footer:
        console.print(footer, style="dim", highlight=False)


@app.command()
@friendly
def runs(limit: Annotated[int, typer.Option(help="runs to show")] = 20, lake: LakeOpt = None) -> None:
    """List recorded runs, newest first: status, rows landed, models built, time, backend, code."""
    rows = [{"run": r["run_id"], "status": r["status"],
             "landed": f"{sum(s.get('rows', 0) for s in r['steps'] if s['kind'] == 'load'):,}",
             "built": str(sum(1 for s in r["steps"] if s["kind"] == "model" and s["status"] == "built")),
             "seconds": "" if r["seconds"] is None else f"{r['seconds']:.1f}",
             "started (UTC)": r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "",
             "backend": r["backend"] or "", "pipeline": r["pipeline"],
             "git": (r["git_commit"] or "")[:10] + ("+dirty" if r["git_dirty"] else ""),
             "selection": _selection(r["selection"])}
            for r in manifest.runs(_lake(lake), limit)]
    if not rows:
        console.print("no runs recorded in this lake yet")
        return
    _print_listing(rows, "runs (newest first)", keep=("run", "status"), right=("landed", "built", "seconds"))


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
    """A run's selection as the options that ask for it: `-s a -s b --exclude c --full-refresh`."""
    def each(option: str, value: Any) -> list[str]:
        values = [value] if isinstance(value, str) else list(value or [])
        return [f"{option} {v}" for v in values]

    parts = each("-s", selection.get("select")) + each("--exclude", selection.get("exclude"))
    if selection.get("full_refresh"):
        parts.append("--full-refresh")
    return " ".join(parts)
