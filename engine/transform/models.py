"""Models: user functions over frames, and the tables they read (the order they run in is the
pipeline graph's, engine/graph.py)."""
from __future__ import annotations

import hashlib
import inspect
import marshal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from engine.errors import ConfigError
from engine.graph import TableRef, check_name
from engine.transform.checks import Check, parse_all
from engine.transform.partitions import Partitioning, partitioning

Materialized = Literal["table", "incremental", "merge"]
MATERIALIZATIONS: tuple[Materialized, ...] = get_args(Materialized)
Kind = Literal["pandas", "polars", "sql"]  # what the model is written in, which picks where it runs
FRAMES = ("pandas", "polars")  # what `@model(frame=...)` may be


@dataclass(frozen=True)
class Model:
    """A function (or a SQL query) whose named inputs are raw tables (`raw.<source>`) or other
    models. `kind` says what it is written in: `pandas` (a function over pandas-API frames:
    pandas, cuDF or Dask), `polars` (a function over polars LazyFrames) or `sql` (one SELECT,
    `sql` holds it; its inputs are keyed by the table names it uses)."""

    name: str
    fn: Callable[..., Any] | None
    inputs: Mapping[str, TableRef]  # parameter (for SQL: the table as `raw.x` / `models.x`) -> the table it reads
    materialized: Materialized = "table"
    publish: bool = True
    description: str = ""
    primary_key: tuple[str, ...] = ()  # the output's unique key: `merge` upserts on it
    tags: tuple[str, ...] = ()  # for `--select tag:<tag>`
    checks: tuple[Check, ...] = ()  # parsed at declaration; run on every build
    full_inputs: tuple[str, ...] = ()  # incremental models: these inputs are always read whole
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # input -> the only columns read
    replace_existing: bool = False  # publish may replace a warehouse table Headwater did not create
    kind: Kind = "pandas"
    sql: str = ""  # a SQL model's query
    path: str | None = None  # a SQL model's file, when it came from one
    partitioning: Partitioning | None = None  # partition_by=: its table is replaced partition by partition
    current: tuple[str, ...] = ()  # as_of="current": inputs (SCD2 tables) read as their current rows only
    column_descriptions: dict[str, str] = field(default_factory=dict)  # output column -> what it holds

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fn is None:
            raise TypeError(f"model {self.name!r} is a SQL model: it has no function to call")
        return self.fn(*args, **kwargs)

    @property
    def wants_ctx(self) -> bool:
        """True when the function takes a `ctx` argument."""
        return self.fn is not None and "ctx" in inspect.signature(self.fn).parameters

    @property
    def code_hash(self) -> str:
        """A fingerprint of the function's source and of its declaration (inputs, columns,
        materialization, key, checks): a change to either forces a rebuild."""
        if self.fn is None:
            code = self.sql.encode()
        else:
            try:
                code = inspect.getsource(self.fn).encode()
            except (OSError, TypeError):  # defined without a source file (exec, REPL)
                code = marshal.dumps(self.fn.__code__)
        inputs = sorted((p, str(ref)) for p, ref in self.inputs.items())
        declared = repr((inputs, sorted(self.columns.items()), self.materialized,
                         self.primary_key, self.full_inputs, [c.name for c in self.checks])
                        + ((self.kind,) if self.kind != "pandas" else ())
                        + ((self.partitioning,) if self.partitioning else ())
                        + ((self.current,) if self.current else ()))
        return hashlib.sha256(code + declared.encode()).hexdigest()[:16]


@dataclass
class Context:
    """What a model function may use besides its inputs (passed as `ctx`)."""

    model: str
    run_id: str
    backend: str
    xp: Any  # pandas, cudf or dask.dataframe (polars for a polars model): the DataFrame module of this run
    is_incremental: bool = False  # True when the inputs hold only rows landed since the last build
    vars: dict[str, Any] = field(default_factory=dict)
    previous: Callable[[], Any] | None = None  # the model's current output as a frame (None: none yet)


def model(fn: Callable[..., Any] | None = None, *, inputs: Mapping[str, str] | None = None,
          name: str | None = None, materialized: Materialized = "table", publish: bool = True,
          primary_key: str | Iterable[str] = (), tags: Iterable[str] = (), checks: Iterable[Any] = (),
          full_inputs: Iterable[str] = (), columns: Mapping[str, Iterable[str]] | None = None,
          replace_existing: bool = False, frame: str = "pandas", description: str | None = None,
          partition_by: str | None = None, grain: str = "day", lookback: int = 0,
          event_time: Mapping[str, str] | None = None, as_of: Mapping[str, str] | None = None,
          column_descriptions: Mapping[str, str] | None = None) -> Any:
    """Declare a model: `@model(inputs={"photos": "raw.photos", "stats": "other_model"})`.

    Each key of `inputs` is a parameter of the function; each value names a raw table
    (`raw.<source>`) or a model (`<name>` or `models.<name>`). The function may also take `ctx`
    (a `Context`). `materialized` is `table` (rebuilt from all input rows), `incremental` (sees
    only input rows landed since its last build; appends) or `merge` (like incremental, but
    upserts on `primary_key`); `full_inputs` names inputs an incremental model always
    reads whole (a dimension table it joins to). `checks` are run on
    every build (see `engine.transform.checks`); `tags` serve `--select tag:<tag>`; `columns` maps an
    input to the only columns read from it (the rest, load columns included, never leave the
    lake's files). The model's name (`name`, else the function's) is an identifier: letters,
    digits and `_`. Publishing refuses to replace a warehouse table that Headwater did not
    create unless `replace_existing` is True. `frame="polars"` makes it a polars model: its
    inputs are `polars.LazyFrame`s (columns pruned and filters pushed into the lake scan) and
    it returns a LazyFrame or DataFrame. `description` (default: the docstring) and
    `column_descriptions` ({output column: text}) are shown by `headwater ls` and stored with the
    model's lake table and warehouse table. `partition_by` (a date or timestamp column of the
    output) partitions the model's table by day (`grain="month"`: by month): a build recomputes
    only the partitions whose inputs changed, each with its inputs filtered to the partition's
    window on the same column (`event_time={"input": "its column"}` where an input names it
    otherwise), plus `lookback` earlier partitions. An SCD2 input (a `write="scd2"` source, every
    version of each row) is read whole, history included; `as_of={"photos": "current"}` reads
    only its current rows. Returns a `Model`.
    """
    def wrap(f: Callable[..., Any]) -> Model:
        label = name or f.__name__
        check_name("model", name if name is not None else f.__name__)
        if frame not in FRAMES:
            raise ConfigError(f"model {label!r}: unknown frame {frame!r}",
                              f"use one of {', '.join(FRAMES)} (a SQL model is declared with sql_model)")
        options = declared(label, materialized, primary_key, inputs or {})
        ins = options.inputs
        params = inspect.signature(f).parameters
        missing = [p for p in ins if p not in params and not any(
            v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())]
        if missing:
            raise ConfigError(f"model {name or f.__name__!r}: inputs {missing} are not parameters of "
                              f"{f.__name__}()", "name each input after a function parameter")
        keys = options.primary_key
        whole = tuple(full_inputs)
        unknown = [p for p in whole if p not in ins]
        if unknown:
            raise ConfigError(f"model {name or f.__name__!r}: full_inputs {unknown} are not inputs",
                              f"inputs are {sorted(ins)}")
        cols = {p: tuple(c) for p, c in (columns or {}).items()}
        stray = [p for p in cols if p not in ins]
        if stray:
            raise ConfigError(f"model {name or f.__name__!r}: columns= names {stray}, which are not inputs",
                              f"inputs are {sorted(ins)}")

        parsed = parse_all(checks, label)  # bad check specs fail here, at declaration
        about = (f.__doc__ or "").strip() if description is None else description
        parts = partitioning(label, partition_by, grain, lookback, event_time, ins, materialized)
        return Model(label, f, ins, materialized, publish, about, keys, tuple(tags), parsed, whole, cols,
                     bool(replace_existing), kind="polars" if frame == "polars" else "pandas", partitioning=parts,
                     current=current_inputs(label, as_of, ins),
                     column_descriptions=dict(column_descriptions or {}))

    return wrap(fn) if fn is not None else wrap


def current_inputs(label: str, as_of: Mapping[str, str] | None, inputs: Mapping[str, TableRef]) -> tuple[str, ...]:
    """The inputs `as_of` asks to read as their current rows (an `{input: "current"}` mapping)."""
    out = []
    for param, when in (as_of or {}).items():
        if param not in inputs:
            raise ConfigError(f"model {label!r}: as_of names {param!r}, which is not an input",
                              f"inputs are {sorted(inputs)}")
        if when != "current":
            raise ConfigError(f"model {label!r}: as_of={{{param!r}: {when!r}}} is not known",
                              "write as_of={'<input>': 'current'} (the default reads every version)")
        out.append(param)
    return tuple(out)


@dataclass(frozen=True)
class Declared:
    """The options every kind of model checks the same way."""

    inputs: dict[str, TableRef]
    primary_key: tuple[str, ...]


def declared(label: str, materialized: str, primary_key: str | Iterable[str],
             inputs: Mapping[str, str | TableRef]) -> Declared:
    """`inputs` parsed and `primary_key` as a tuple, or a ConfigError naming model `label` and
    what is wrong: an unknown materialization, a merge without a key, an invalid table name."""
    if materialized not in MATERIALIZATIONS:
        raise ConfigError(f"model {label!r}: unknown materialization {materialized!r}",
                          f"use one of {', '.join(MATERIALIZATIONS)}")
    ins = {param: ref if isinstance(ref, TableRef) else TableRef.parse(ref) for param, ref in inputs.items()}
    for param, ref in ins.items():
        try:
            check_name("table", ref.name)
        except ConfigError as exc:
            raise ConfigError(f"model {label!r}: input {param}={str(ref)!r} is not a valid table name",
                              exc.hint) from None
    keys = (primary_key,) if isinstance(primary_key, str) else tuple(primary_key)
    if materialized == "merge" and not keys:
        raise ConfigError(f"model {label!r}: materialized='merge' needs a primary key",
                          "pass primary_key='id_column' (or a list of columns)")
    return Declared(ins, keys)
