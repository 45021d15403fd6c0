"""`headwater` commands for working on a project: init, ls, plan, test, reset, drop.

`init` writes a starter pipeline that runs as is; `ls` lists a pipeline's sources and models;
`plan` says what a run would land, build and publish, writing nothing (engine/runs/plan.py
`dry_run`); `test` runs every model's checks on its current lake table; `reset` makes a source
land its files again (engine/lake/admin.py says why it empties the raw table); `drop` removes a
lake table and its warehouse table.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table
from rich.text import Text

from engine.cli.app import (
    PIPELINE_HELP,
    ExcludeOpt,
    Failed,
    FullRefreshOpt,
    LakeOpt,
    SelectOpt,
    WarehouseOpt,
    app,
    console,
    friendly,
    guarded,
)
from engine.config import Config
from engine.errors import CheckError, ConfigError, HeadwaterError, one_line
from engine.graph import TableRef
from engine.lake import Lake
from engine.lake import admin as lake_admin
from engine.pipeline import Pipeline, load_pipeline
from engine.runs import selection
from engine.runs.plan import RunPlan, dry_run
from engine.runs.steps import new_run_id
from engine.transform.checks import failure_error, run_checks

PipelineArg = Annotated[str, typer.Argument(help=PIPELINE_HELP)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
STYLE = {"land": "green", "build": "green", "publish": "green", "unchanged": "dim", "skip": "yellow",
         "fail": "bold red", "pass": "green", "warn": "yellow"}


# -- init -------------------------------------------------------------------------------------
@app.command()
@friendly
def init(directory: Annotated[Path, typer.Argument(help="the folder to write it in (made if missing)")] = Path(".")
         ) -> None:
    """Write a starter pipeline that runs as is; never overwrites a file.

    A CSV and a SQLite source, a pandas and a SQL model with checks and descriptions,
    headwater.toml and a .gitignore."""
    directory = directory.resolve()
    name = re.sub(r"\W+", "_", directory.name).strip("_").lower() or "starter"
    targets = [*FILES, "data/shop.sqlite"]
    existing = [t for t in targets if (directory / t).exists()]
    if existing:
        raise ConfigError(f"{directory} already has {', '.join(existing)}; nothing was written",
                          "init writes only new files: pick another folder (headwater init DIR) or move them")
    for relative, text in FILES.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{name}", name), encoding="utf-8")
    with sqlite3.connect(directory / "data" / "shop.sqlite") as con:
        con.execute("create table customers (customer_id integer primary key, name text not null, "
                    "country text not null, updated_at text not null)")
        con.executemany("insert into customers values (?, ?, ?, ?)", CUSTOMERS)
    con.close()
    console.print(f"wrote a starter pipeline to {directory}:\n  " + "\n  ".join(sorted(targets)), highlight=False)
    where = "" if directory == Path.cwd() else f"cd {directory} && "
    console.print(f"next: {where}headwater run pipeline.py   (then: headwater ls pipeline.py, headwater plan "
                  "pipeline.py)", highlight=False)


# -- ls ---------------------------------------------------------------------------------------
@app.command("ls")
@friendly
def ls_cmd(pipeline: PipelineArg, select: SelectOpt = None, exclude: ExcludeOpt = None) -> None:
    """List a pipeline's sources and models: kind, materialization, inputs (the DAG) and descriptions."""
    p = load_pipeline(pipeline)
    chosen = selection.select(p.graph, select, exclude)
    sources = Table(title=f"sources of {p.name}", title_justify="left")
    for col in ("source", "kind", "write", "reads"):
        sources.add_column(col, overflow="fold", no_wrap=col != "reads")
    for name in chosen.sources:
        source = p.source(name)
        sources.add_row(Text(f"raw.{name}"), _kind(source), str(getattr(source, "write", "") or ""),
                        Text(_reads(source)))
    models = Table(title=f"models of {p.name}", title_justify="left")
    models.add_column("model", overflow="fold", min_width=_widest(chosen.models))
    models.add_column("kind", no_wrap=True)
    models.add_column("materialized", overflow="fold")
    models.add_column("inputs", overflow="fold")
    described: list[Text] = []  # descriptions go below the table: they need its whole width
    for name in chosen.models:
        m = p.model(name)
        inputs = ", ".join(str(r) if r.zone == "raw" else r.name for r in p.graph.inputs(TableRef.model(name)))
        how = m.materialized + (f" on {', '.join(m.primary_key)}" if m.materialized == "merge" else "")
        if m.partitioning is not None:
            how += f", by {m.partitioning.grain} of {m.partitioning.column}"
        how += "" if m.publish else ", not published"
        label = Text(name) + (Text(f" [{', '.join(m.tags)}]", style="dim") if m.tags else Text())
        models.add_row(label, m.kind, how, Text(inputs))
        if m.description or m.column_descriptions:
            about = Text(name, style="bold").append(f": {m.description}" if m.description else "", style="")
            for column, text in m.column_descriptions.items():
                about.append(f"\n    {column}: ", style="dim").append(text)
            described.append(about)
    if chosen.sources:
        console.print(sources)
    if chosen.models:
        console.print(models)
    for about in described:
        console.print(about, highlight=False)
    console.print(f"[dim]{len(chosen.sources)} source(s), {len(chosen.models)} model(s)[/]")


def _kind(source: Any) -> str:
    """`files`, `sql`, or the class name of another kind of source."""
    kind = type(source).__name__
    return {"FileSource": "files", "SqlSource": "sql"}.get(kind, kind)


def _reads(source: Any) -> str:
    """What a source reads, in a few words (a database URL without its password)."""
    path = getattr(source, "path", None)
    if path is not None:
        return ", ".join(path) if isinstance(path, list) else str(path)
    url = getattr(source, "url", None)
    if url is None:
        return ""
    try:
        where = sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        where = url.partition("://")[0] + "://…"
    what = f"table {source.table}" if getattr(source, "table", None) else "a query"
    cursor = f", cursor {source.cursor}" if getattr(source, "cursor", None) else ""
    return f"{what} at {where}{cursor}"


# -- plan -------------------------------------------------------------------------------------
@app.command()
@friendly
def plan(pipeline: PipelineArg, select: SelectOpt = None, exclude: ExcludeOpt = None,
         full_refresh: FullRefreshOpt = False,
         lake: LakeOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Say what `headwater run` would land, build and publish, and why, writing nothing."""
    p = load_pipeline(pipeline)
    config = guarded(Config.load(p.base_dir, lake=lake, warehouse=warehouse))
    show_plan(p, config, select=select, exclude=exclude, full_refresh=full_refresh)


def show_plan(pipeline: Pipeline, config: Config, *, select: list[str] | None = None,
              exclude: list[str] | None = None, full_refresh: bool = False) -> None:
    """Print the dry run of `pipeline` under `config` (what `run --dry-run` would print too);
    raises Failed when a step would fail."""
    from engine.publish import published_versions

    steps = RunPlan.make(pipeline, select, exclude)
    previews = dry_run(steps, pipeline, Lake(config.lake, config.storage_options),
                       lambda: published_versions(config.warehouse), full_refresh)
    table = Table(title=f"plan for {pipeline.name} (nothing is written)", title_justify="left")
    widths = {"table": _widest(v.step.table for v in previews)}
    for col in ("step", "table", "would", "why"):
        table.add_column(col, overflow="fold", no_wrap=col in ("step", "would"), min_width=widths.get(col))
    for preview in previews:
        why = Text(one_line(preview.why))
        if preview.reads and preview.step.kind == "load" and _kind(pipeline.source(preview.step.name)) == "files":
            names = [r.rstrip("/").rsplit("/", 1)[-1] for r in preview.reads]
            why.append(": " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
                       style="dim")
        action = preview.action
        table.add_row(preview.step.kind, Text(preview.step.table), f"[{STYLE[action]}]{action}[/]", why)
    console.print(table)
    counts = {a: sum(1 for v in previews if v.action == a) for a in ("land", "build", "publish")}
    console.print(f"[dim]would land {counts['land']} source(s), build {counts['build']} model(s), "
                  f"publish {counts['publish']}[/]")
    failing = [v for v in previews if v.action == "fail"]
    if failing:
        first = failing[0]
        raise Failed(f"the run would fail at {first.step.describe()}: {one_line(first.why)}"
                     + (f" (and {len(failing) - 1} more step(s))" if len(failing) > 1 else ""), [])


# -- test -------------------------------------------------------------------------------------
@app.command("test")
@friendly
def test_cmd(pipeline: PipelineArg, select: SelectOpt = None, exclude: ExcludeOpt = None,
             lake: LakeOpt = None) -> None:
    """Run every model's checks on its current lake table, building nothing.

    The exit status is 1 if an error check fails, or a model with checks has not been built."""
    p = load_pipeline(pipeline)
    config = guarded(Config.load(p.base_dir, lake=lake))
    the_lake = Lake(config.lake, config.storage_options)
    chosen = [p.model(m) for m in selection.select(p.graph, select, exclude).models]
    table = Table(title=f"checks of {p.name} on the lake's current tables", title_justify="left")
    table.add_column("model", overflow="fold", min_width=_widest(f"{m.name} v00" for m in chosen if m.checks))
    table.add_column("check", overflow="fold", min_width=_widest(c.name for m in chosen for c in m.checks))
    table.add_column("result", no_wrap=True)
    notes: list[Text] = []  # the detail of each check that did not pass, below the table
    problems: list[str] = []
    for model in (m for m in chosen if m.checks):
        name = str(TableRef.model(model.name))
        version = the_lake.version(name)
        if version is None:
            table.add_row(Text(model.name), "", "[bold red]not built[/]")
            problems.append(f"model {model.name!r} has not been built")
            continue
        results = run_checks(model.checks, the_lake.read(name, version),
                             resolve=lambda ref: the_lake.dataset(str(TableRef.parse(ref))))
        for r in results:
            rows = f" {r.failing_rows:,} rows" if r.failing_rows else ""
            table.add_row(Text(model.name).append(f" v{version}", style="dim"), Text(r.name),
                          f"[{STYLE.get(r.status, '')}]{r.status}[/]{rows}")
            if r.status != "pass":
                notes.append(Text(f"{r.status} ", style=STYLE.get(r.status, "")).append(
                    f"{model.name} {r.name}: {one_line(r.detail)}", style=""))
        failed = failure_error(model.name, results)
        if failed is not None:
            problems.append(failed.message)
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    checked = sum(len(m.checks) for m in chosen)
    console.print(f"[dim]{checked} check(s) of {sum(1 for m in chosen if m.checks)} model(s); "
                  f"{sum(1 for m in chosen if not m.checks)} model(s) have none[/]")
    if problems:
        raise CheckError("; ".join(problems), "build what is not built with `headwater run`; fix a failing model "
                         "or its data, or prefix the check with 'warn: ' to only report it")


def _widest(texts: Iterable[str], most: int = 28) -> int:
    """The width of the longest of `texts`, at most `most` (a column that should not fold)."""
    return min(max((len(t) for t in texts), default=0), most)


# -- reset, drop -------------------------------------------------------------------------------
@app.command()
@friendly
def reset(table: Annotated[str, typer.Argument(help="raw.<source> (or the source's name)")],
          yes: YesOpt = False, lake: LakeOpt = None) -> None:
    """Forget what a source landed, so its files (or rows) land again on the next run.

    One Delta commit empties raw.<source> and its state together (its quarantine is emptied
    too), so nothing lands twice; the models that read it rebuild in full."""
    config = guarded(Config.load(Path.cwd(), lake=lake))
    the_lake = Lake(config.lake, config.storage_options)
    pending = lake_admin.pending_reset(the_lake, table)
    state = pending.state
    remembered = f"{len(state['files'])} landed file(s)" if "files" in state else \
        f"cursor {state['cursor']}" if "cursor" in state else "no state"
    quarantined = f" and {pending.quarantined:,} quarantined entries" if pending.quarantined else ""
    _confirm(yes, f"reset {pending.table}: remove its {pending.rows:,} row(s){quarantined} and forget "
                  f"{remembered}, so the next run lands everything again?")
    done = lake_admin.reset(the_lake, table, new_run_id())
    console.print(f"reset {done.table} (version {done.version}): the next `headwater run` lands it again; "
                  "the models that read it rebuild in full", highlight=False)


@app.command()
@friendly
def drop(table: Annotated[str, typer.Argument(help="a lake table: raw.<source>, models.<model> or a bare name")],
         yes: YesOpt = False, lake: LakeOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Remove a lake table with its history, and a model's warehouse table.

    raw.<source> takes quarantine.<source> with it, so a source landed again is not
    quarantined twice. A warehouse table Headwater did not publish is left alone."""
    from engine.publish import connect, published_versions

    config = guarded(Config.load(Path.cwd(), lake=lake, warehouse=warehouse))
    the_lake = Lake(config.lake, config.storage_options)
    name = the_lake.qualify(table)
    if not the_lake.exists(name):
        raise ConfigError(f"no lake table {name!r} at {the_lake.root}", "check the name with `headwater ls`")
    ref = TableRef.parse(name)
    tables = [name] + ([q] if ref.zone == "raw" and the_lake.exists(q := lake_admin.quarantine_of(name)) else [])
    in_warehouse = ref.zone == "models" and ref.name in published_versions(config.warehouse)
    also = f" and warehouse table {ref.name}" if in_warehouse else ""
    versions = (the_lake.version(name) or 0) + 1
    _confirm(yes, f"drop {', '.join(tables)} ({versions} version(s), {the_lake.dataset(name).count_rows():,} "
                  f"rows){also}? This cannot be undone")
    if in_warehouse:
        wh = connect(config.warehouse)
        try:
            wh.drop(ref.name)
        finally:
            wh.dispose()
    for each in tables:
        lake_admin.drop(the_lake, each)
    console.print(f"dropped {', '.join(tables)}{also}", highlight=False)


def _confirm(yes: bool, question: str) -> None:
    """Go on when `yes` or the user agrees; else a HeadwaterError saying nothing was changed."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False)
    except typer.Abort:  # no answer (end of input, ctrl-c)
        agreed = False
    if not agreed:
        raise HeadwaterError("nothing was changed", "answer y, or pass --yes")


# -- what init writes -----------------------------------------------------------------------------
CUSTOMERS = [(1, "Ada", "fr", "2026-01-01 09:00:00"), (2, "Grace", "us", "2026-01-01 09:05:00"),
             (3, "Linus", "fi", "2026-01-02 14:30:00"), (4, "Margaret", "us", "2026-01-03 08:15:00"),
             (5, "Alan", "gb", "2026-01-03 11:45:00")]
PIPELINE = '''"""{name}: a starter Headwater pipeline. `headwater run pipeline.py` loads, builds and
publishes it; `headwater ls pipeline.py` lists it; `headwater plan pipeline.py` says what a run
would do; `headwater test pipeline.py` runs its checks on what is built."""
from pathlib import Path

from engine import Pipeline, model, sources

DATA = Path(__file__).resolve().parent / "data"

# Files: each CSV the glob matches lands once, into raw.orders. Add orders_2.csv and run again.
orders = sources.files("orders", str(DATA / "orders*.csv"))

# A SQL table: each run lands the rows whose updated_at moved, merged on customer_id.
customers = sources.sql("customers", f"sqlite:///{DATA / 'shop.sqlite'}", table="customers",
                        cursor="updated_at", primary_key="customer_id", write="merge")


@model(inputs={"orders": "raw.orders", "customers": "raw.customers"},
       checks=["unique(customer_id)", "not_null(customer_id)", "row_count(min=1)"],
       column_descriptions={"revenue": "sum of the customer's order amounts",
                            "orders": "orders the customer placed"})
def customer_revenue(orders, customers):
    """Revenue and orders per customer who ordered, with the customer's name and country."""
    # pandas frames on a CPU, cuDF on a GPU, Dask on a cluster: the same code runs on each
    totals = orders.groupby("customer_id").agg({"amount": "sum", "order_id": "count"}).reset_index()
    totals = totals.rename(columns={"amount": "revenue", "order_id": "orders"})
    return customers[["customer_id", "name", "country"]].merge(totals, on="customer_id", how="inner")


# models/country_revenue.sql is a SQL model: every *.sql file in models/ is one, named after it.
pipeline = Pipeline("{name}", sources=[orders, customers], models=[customer_revenue])
'''
SQL_MODEL = """-- description: Revenue, orders and ordering customers per country.
-- column country: the customers' country (ISO 3166 code)
-- column customers: customers who ordered at least once
-- checks: unique(country), not_null(country), expression(revenue > 0)
select country,
       count(*) as customers,
       sum(orders) as orders,
       round(sum(revenue), 2) as revenue
from customer_revenue
group by country
order by country
"""
SETTINGS = """# Headwater's settings for this folder (HEADWATER_* variables and --lake/--warehouse override them)
lake = "lake"                             # the Delta lake: a folder here, or s3://bucket/path
warehouse = "duckdb:///warehouse.duckdb"  # any SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db
backend = "auto"                          # auto (cuDF on a GPU, else pandas) | pandas | cudf | dask
"""
FILES = {
    "pipeline.py": PIPELINE,
    "models/country_revenue.sql": SQL_MODEL,
    "data/orders.csv": "order_id,customer_id,amount,ordered_at\n1,1,25.50,2026-01-05\n2,2,12.00,2026-01-05\n"
                       "3,1,7.25,2026-01-06\n4,3,40.00,2026-01-07\n5,2,3.75,2026-01-08\n6,4,18.90,2026-01-09\n",
    "headwater.toml": SETTINGS,
    ".gitignore": "# what Headwater writes here: the lake and the DuckDB warehouse\nlake/\nwarehouse.duckdb\n"
                  "warehouse.duckdb.wal\n__pycache__/\n",
}
