"""Building one model: decide full or incremental, read its inputs, run it, check, commit.

A build commits `models.<name>` with metadata naming the input versions it read and the
model's code hash; the next build compares against them. `table` models rebuild from all
input rows; `incremental` and `merge` models see only the input rows landed since their last
build (see `engine.lake.changes`) and append or upsert their output. A failed `error` check
commits nothing, so the previous version stays the model's latest.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.dataset as ds

from engine.errors import (
    CheckError,
    ConfigError,
    HeadwaterError,
    ModelError,
    SchemaError,
    where,
)
from engine.graph import TableRef
from engine.lake import Based, Lake, as_delta
from engine.lake.changes import changes
from engine.lake.describe import Description
from engine.lake.history import VALID_TO
from engine.lake.merge import last_per_key
from engine.lake.partitions import partitioned, replace_partitions
from engine.transform import checks
from engine.transform.models import Context, Model
from engine.transform.partitions import input_column, stale, window_filter, with_partition_column
from engine.transform.reads import SharedReads

if TYPE_CHECKING:  # the backends load pandas (and cuDF); the runner resolves one on first use
    from engine.transform.backends import Backend, Engine

log = logging.getLogger("headwater.transform")


@dataclass
class BuildPlan:
    """How a model will be built: `incremental` or not, and why."""

    incremental: bool
    reason: str
    since: dict[str, int] = field(default_factory=dict)  # input ref -> version read last time
    partitions: list[str] | None = None  # a partitioned model: only these (None: the whole table)
    keep_inputs: dict[str, int] | None = None  # partitions asked for: record the inputs read before
    meta: dict[str, Any] = field(default_factory=dict)  # more for the commit's metadata (a backfill's id)


def plan_partitions(model: Model, last: dict[str, Any], versions: dict[str, int], lake: Lake,
                    full_refresh: bool = False, asked: list[str] | None = None) -> BuildPlan:
    """Which partitions of partitioned `model` to rebuild: those `asked` for (a backfill,
    `--partition`), else those whose inputs changed since the last build, else all of them."""
    assert model.partitioning is not None
    before = last.get("inputs")
    if asked is not None:
        shown = ", ".join(asked[:3]) + (f" … ({len(asked)})" if len(asked) > 3 else "")
        return BuildPlan(False, f"partition(s) {shown} asked for", partitions=list(asked),
                         keep_inputs=dict(before or {}))
    whole = _whole(model, last, versions, full_refresh)
    if whole is not None:
        return BuildPlan(False, whole)
    if not partitioned(lake, str(TableRef.model(model.name))):
        return BuildPlan(False, "not partitioned yet: full rebuild")
    since = {t: int(v) for t, v in last["inputs"].items()}
    stale_partitions, why = stale(model.partitioning, model.inputs, lake, since, versions)
    return BuildPlan(False, why, since, partitions=stale_partitions)


def _whole(model: Model, last: dict[str, Any], versions: dict[str, int], full_refresh: bool) -> str | None:
    """Why `model` must be built from all its input rows whatever changed (None: it need not)."""
    before = last.get("inputs")
    if full_refresh:
        return "full refresh"
    if not before:
        return "first build"
    if last.get("code") != model.code_hash:
        return "code changed: full rebuild"
    if set(before) != set(versions):
        return "inputs changed: full rebuild"
    return None


def plan_build(model: Model, last: dict[str, Any], versions: dict[str, int], lake: Lake,
               full_refresh: bool = False) -> BuildPlan:
    """Whether `model` can build incrementally from the inputs it read last time (`last` is
    its newest commit's metadata) to `versions`."""
    if model.partitioning is not None:
        return plan_partitions(model, last, versions, lake, full_refresh)
    if model.materialized == "table":
        return BuildPlan(False, "table")
    whole = _whole(model, last, versions, full_refresh)
    if whole is not None:
        return BuildPlan(False, whole)
    before = last["inputs"]
    # A rewritten input (merge load, overwrite, compaction) hands back rows seen before, mixed
    # with the new ones: appending them would duplicate them, and a merge model that adds to
    # its previous output (ctx.previous) would count them twice. Rebuild from everything.
    for param, ref in model.inputs.items():
        key = str(ref)
        if param not in model.full_inputs and changes(lake, key, before[key], versions[key]).rewritten:
            return BuildPlan(False, f"input {ref} was rewritten since the last build: full rebuild")
    return BuildPlan(True, "incremental", {table: int(v) for table, v in before.items()})


def read_columns(model: Model, param: str, names: list[str]) -> list[str] | None:
    """The columns of input `param` that `model` reads (None: all), checked against `names`."""
    wanted = model.columns.get(param)
    if wanted is None:
        return None
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ConfigError(f"model {model.name!r}: columns {missing} of input {param!r} "
                          f"({model.inputs[param]}) do not exist",
                          f"its columns are {', '.join(names)}")
    return list(wanted)


def read_input(model: Model, param: str, lake: Lake, backend: Backend, version: int,
               shared: SharedReads | None = None) -> Any:
    """Input `param` of `model`, whole, at `version`, as the backend's frame (read once for
    all the run's models that read it, when `shared` is given)."""
    name = str(model.inputs[param])
    table = lake.table(name, version)
    names = [f.name for f in table.schema().fields]
    columns = read_columns(model, param, names)
    if shared is None:
        return backend.read(table, columns=columns)
    return shared.read(backend, name, version, names, columns, lambda wanted: backend.read(table, columns=wanted))


@dataclass
class Built:
    """What a build wrote (or why it wrote nothing)."""

    rows: int
    version: int | None
    detail: str
    checks: list[dict[str, Any]]
    failed: CheckError | None = None  # the failing error checks: nothing was committed


def build(model: Model, lake: Lake, backend: Backend | Engine, versions: dict[str, int], run_id: str,
          how: BuildPlan, shared: SharedReads | None = None, based_on: Based | None = None) -> Built:
    """Run `model` on its inputs at `versions` (or the rows added since `how.since`), check the
    output, and commit it to `models.<name>`; whole inputs come through `shared` when given.

    The commit is based on the model table's version `based_on` (default: now): if another run
    commits to it meanwhile, this build commits nothing and raises ConcurrentRunError (committing
    too would apply the same input rows twice)."""
    table = str(TableRef.model(model.name))
    based_on = based_on or lake.based(table)
    if model.partitioning is not None:
        return build_partitions(model, lake, backend, versions, run_id, how, shared)
    result = output(model, lake, backend, versions, run_id, how, shared, current_filters(model))
    results, checked, refused = _checked(model, result, lake, backend, how)
    if refused is not None:
        return refused
    meta = {"inputs": versions, "code": model.code_hash, "backend": backend.name,
            "materialized": model.materialized, "incremental": how.incremental}
    about = Description(model.description, model.column_descriptions)  # goes onto the lake table
    lake.check_unchanged(table, based_on)  # early: the commit below is guarded as well
    if model.materialized == "merge":
        _check_key(model, result)
        if not how.incremental:  # one row per key, the last, as a merge keeps
            result = result.filter(last_per_key(result.select(list(model.primary_key)), list(model.primary_key)))
    if not how.incremental:
        commit = lake.write(table, result, run_id=run_id, meta={**meta, "rows": result.num_rows}, based_on=based_on,
                            describe=about)
        return Built(commit.rows, commit.version, _with(_detail(backend, how), results), checked)
    if result.num_rows == 0:  # nothing new: record the input versions read, commit no rows
        commit = lake.write_append(table, as_delta(result.slice(0, 0)).cast(_schema(lake, table, result)),
                                   run_id=run_id, meta={**meta, "rows": _count(lake, table)}, based_on=based_on,
                                   describe=about)
        return Built(0, commit.version, _with(_detail(backend, how) + ", no new rows", results), checked)
    if model.materialized == "merge":
        result = as_delta(result).cast(_schema(lake, table, result))
        commit = lake.land(table, result.to_batches(), run_id=run_id, state={}, mode="merge",
                           primary_key=list(model.primary_key), meta=meta, origin=f"model {model.name!r}",
                           based_on=based_on, describe=about)
        detail = f"{_detail(backend, how)}, merged: {commit.inserted:,} new, {commit.updated:,} updated"
    else:
        commit = lake.write_append(table, as_delta(result).cast(_schema(lake, table, result)), run_id=run_id,
                                   meta=meta, based_on=based_on, describe=about)
        detail = _detail(backend, how) + f", appended {commit.rows:,}"
    return Built(commit.rows, commit.version, _with(detail, results), checked)


def output(model: Model, lake: Lake, backend: Backend | Engine, versions: dict[str, int], run_id: str,
           how: BuildPlan, shared: SharedReads | None = None,
           filters: dict[str, ds.Expression] | None = None) -> pa.Table:
    """What `model` returns on its inputs (each filtered by `filters[param]` when given), as Arrow."""
    if model.kind == "pandas":
        frontend = cast("Backend", backend)
        return call(model, _frames(model, lake, frontend, versions, run_id, how, shared, filters or {}), frontend)
    return run_on_engine(model, lake, cast("Engine", backend), versions, run_id, how, filters or {})


def build_partitions(model: Model, lake: Lake, backend: Backend | Engine, versions: dict[str, int], run_id: str,
                     how: BuildPlan, shared: SharedReads | None = None) -> Built:
    """Build partitioned `model`: the whole table (`how.partitions` None) or each of
    `how.partitions` on its inputs filtered to the partition's window; check the rows, and
    replace those partitions in one commit."""
    assert model.partitioning is not None
    parts, table = model.partitioning, str(TableRef.model(model.name))
    if how.partitions is None:
        result = with_partition_column(output(model, lake, backend, versions, run_id, how, shared), parts, model.name)
    elif not how.partitions:
        return Built(0, lake.version(table), f"{_detail(backend, how)}; nothing to rebuild", [])
    else:
        pieces = [with_partition_column(output(model, lake, backend, versions, run_id, how, None,
                                               _windows(model, lake, versions, p)), parts, model.name, only=[p])
                  for p in how.partitions]
        result = _concat([as_delta(p) for p in pieces], lake, table)
    results, checked, refused = _checked(model, result, lake, backend, how)
    if refused is not None:
        return refused
    if how.keep_inputs is None:
        meta: dict[str, Any] = {"inputs": versions, "code": model.code_hash}
    else:  # partitions asked for: the next regular build plans from the last regular one's inputs and code
        before = lake.read_metadata(table)[1] if lake.exists(table) else {}
        meta = {"inputs": how.keep_inputs, "code": before.get("code")}
    meta.update(backend=backend.name, materialized=model.materialized, incremental=False, **how.meta)
    commit = replace_partitions(lake, table, result, how.partitions, run_id=run_id, meta=meta,
                                describe=Description(model.description, model.column_descriptions))
    where = "" if how.partitions is None else f", {len(how.partitions)} partition(s) replaced"
    return Built(commit.rows, commit.version, _with(_detail(backend, how) + where, results), checked)


def _concat(pieces: list[pa.Table], lake: Lake, table: str) -> pa.Table:
    """The partitions' rows as one table. A column's type is the table's, else that of the first
    piece where it holds a value: a partition whose column is all null (the `__null__` one) may
    have come back with another type, which the cast of its nulls ignores."""
    current = pa.schema(lake.table(table).schema().to_arrow()) if lake.exists(table) else pa.schema([])
    types: dict[str, pa.DataType] = {f.name: f.type for f in current}
    for piece in pieces:
        for spec, column in zip(piece.schema, piece.columns):
            if spec.name not in types and column.null_count < len(column):
                types[spec.name] = spec.type
    unified = [p.cast(pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in p.schema])) for p in pieces]
    return pa.concat_tables(unified, promote_options="permissive")


def _windows(model: Model, lake: Lake, versions: dict[str, int], partition: str) -> dict[str, ds.Expression]:
    """Each input's filter to `partition`'s window on its event-time column (inputs without one:
    none), and to its current rows where the model asks for them."""
    assert model.partitioning is not None
    out = current_filters(model)
    for param, ref in model.inputs.items():
        schema = pa.schema(lake.table(str(ref), versions[str(ref)]).schema().to_arrow())
        column = input_column(model.partitioning, param, ref, schema)
        if column is not None:
            window = window_filter(column, schema.field(column).type, partition, model.partitioning.grain)
            out[param] = window if param not in out else out[param] & window
    return out


def current_filters(model: Model) -> dict[str, ds.Expression]:
    """The filter to the current rows (`_hw_valid_to` null) of each SCD2 input read `as_of="current"`."""
    return {param: ds.field(VALID_TO).is_null() for param in model.current}


def _frames(model: Model, lake: Lake, backend: Backend, versions: dict[str, int], run_id: str, how: BuildPlan,
            shared: SharedReads | None, filters: dict[str, ds.Expression]) -> dict[str, Any]:
    """The arguments of a pandas-API model: its inputs as the backend's frames, and `ctx`."""
    table = str(TableRef.model(model.name))
    frames: dict[str, Any] = {}
    for param, ref in model.inputs.items():
        name = str(ref)
        if param in filters:  # a partition's window
            rows = lake.dataset(name, versions[name])
            frames[param] = backend.from_arrow(rows.to_table(columns=read_columns(model, param, rows.schema.names),
                                                             filter=filters[param]))
        elif how.incremental and param not in model.full_inputs:
            rows = changes(lake, name, how.since[name], versions[name]).dataset
            frames[param] = backend.from_arrow(rows.to_table(columns=read_columns(model, param, rows.schema.names)))
        else:
            frames[param] = read_input(model, param, lake, backend, versions[name], shared)
    if model.wants_ctx:
        previous = (lambda: backend.read(lake.table(table))) if lake.exists(table) else None
        frames["ctx"] = Context(model.name, run_id, backend.name, backend.xp,
                                is_incremental=how.incremental, previous=previous)
    return frames


def run_on_engine(model: Model, lake: Lake, engine: Engine, versions: dict[str, int], run_id: str,
                  how: BuildPlan, filters: dict[str, ds.Expression] | None = None) -> pa.Table:
    """The output of a SQL or polars model: each input handed to `engine` as an Arrow dataset
    (whole at its version, or the files added since the last build), scanned lazily there."""
    table = str(TableRef.model(model.name))
    inputs: dict[str, ds.Dataset] = {}
    for param, ref in model.inputs.items():
        name = str(ref)
        if filters and param in filters:  # a partition's window, read here: engines scan files whole
            inputs[param] = ds.dataset(lake.dataset(name, versions[name]).to_table(filter=filters[param]))
        elif how.incremental and param not in model.full_inputs:
            inputs[param] = changes(lake, name, how.since[name], versions[name]).dataset
        else:
            inputs[param] = lake.dataset(name, versions[name])
    ctx = None
    if model.wants_ctx:
        scan = getattr(engine, "scan", None)
        previous = (lambda: scan(lake.dataset(table))) if scan is not None and lake.exists(table) else None
        ctx = Context(model.name, run_id, engine.name, getattr(engine, "xp", None),
                      is_incremental=how.incremental, previous=previous)
    try:
        return engine.run(model, inputs, ctx)
    except Exception as exc:
        if isinstance(exc, HeadwaterError) and where(exc) is None:
            raise  # the engine's own complaint about the output: already clear
        raise ModelError(model.name, exc) from exc


def call(model: Model, frames: dict[str, Any], backend: Backend) -> pa.Table:
    """`model`'s output on `frames`, as Arrow. What the user's code raises (on Dask also while
    the graph it built is computed here) becomes a ModelError naming the user's file and line,
    with the user's exception as its cause."""
    try:
        return backend.to_arrow(model(**frames))
    except Exception as exc:
        if isinstance(exc, HeadwaterError) and where(exc) is None:
            raise  # the engine's own complaint about the output (not a frame, …): already clear
        raise ModelError(model.name, exc) from exc


def _detail(backend: Backend | Engine, how: BuildPlan) -> str:
    return f"on {backend.name}" + ("" if how.reason == "table" else f", {how.reason}")


def _with(detail: str, results: list[checks.CheckResult]) -> str:
    return f"{detail}; {checks.describe(results)}" if results else detail


def _count(lake: Lake, table: str) -> int:
    return lake.dataset(table).count_rows()


def _schema(lake: Lake, table: str, result: pa.Table) -> pa.Schema:
    """The table's schema when `result` fits it (an incremental append must not change types)."""
    current = pa.schema(lake.table(table).schema().to_arrow())
    if sorted(current.names) != sorted(result.column_names):
        raise SchemaError(f"{table}: an incremental build returned columns {result.column_names}, "
                          f"the table has {current.names}",
                          "return the same columns every build, or rebuild with --full-refresh")
    return pa.schema([current.field(n) for n in result.column_names])


def _check_key(model: Model, result: pa.Table) -> None:
    missing = [k for k in model.primary_key if k not in result.column_names]
    if missing:
        raise SchemaError(f"model {model.name!r}: merge key {missing} is not in its output",
                          f"output columns are {', '.join(result.column_names)}")


def _checked(model: Model, result: pa.Table, lake: Lake, backend: Backend | Engine,
             how: BuildPlan) -> tuple[list[checks.CheckResult], list[dict[str, Any]], Built | None]:
    """`model`'s checks on `result`, as results and as dicts, and the Built to return instead of
    committing when an error check failed (None: commit)."""
    results = _check(model, result, lake, backend)
    checked = [r.to_dict() for r in results]
    failed = checks.failure_error(model.name, results)
    if failed is None:
        return results, checked, None
    log.warning("%s", failed)
    return results, checked, Built(0, None, how.reason, checked, failed=failed)


def _check(model: Model, result: pa.Table, lake: Lake, backend: Backend | Engine) -> list[checks.CheckResult]:
    """Every check of `model` on the rows this build writes."""
    if not model.checks:
        return []
    resolve: Callable[[str], Any] = lambda ref: lake.dataset(str(TableRef.parse(ref)))  # noqa: E731
    return checks.run_checks(model.checks, result, resolve=resolve, to_frame=getattr(backend, "from_arrow", None))
