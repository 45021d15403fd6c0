"""Models: user functions over frames, their inputs, and the order a DAG of them runs in."""
from __future__ import annotations

import hashlib
import inspect
import marshal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import HeadwaterError

MATERIALIZATIONS = ("table", "incremental", "merge")


@dataclass(frozen=True)
class Model:
    """A function whose named inputs are raw tables (`raw.<source>`) or other models."""

    name: str
    fn: Callable[..., Any]
    inputs: dict[str, str]
    materialized: str = "table"  # table | incremental | merge
    publish: bool = True
    description: str = ""
    key: tuple[str, ...] = ()  # the output's unique key: `merge` upserts on it
    tags: tuple[str, ...] = ()  # for `--select tag:<tag>`
    checks: tuple[Any, ...] = ()  # engine.transform.checks.Check, parsed at declaration; run on every build
    full_inputs: tuple[str, ...] = ()  # incremental models: these inputs are always read whole
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # input -> the only columns read

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def wants_ctx(self) -> bool:
        """True when the function takes a `ctx` argument."""
        return "ctx" in inspect.signature(self.fn).parameters

    @property
    def code_hash(self) -> str:
        """A fingerprint of the function's source and of its declaration (inputs, columns,
        materialization, key, checks): a change to either forces a rebuild."""
        try:
            code = inspect.getsource(self.fn).encode()
        except (OSError, TypeError):  # defined without a source file (exec, REPL)
            code = marshal.dumps(self.fn.__code__)
        declared = repr((sorted(self.inputs.items()), sorted(self.columns.items()), self.materialized,
                         self.key, self.full_inputs, [getattr(c, "name", repr(c)) for c in self.checks]))
        return hashlib.sha256(code + declared.encode()).hexdigest()[:16]


@dataclass
class Context:
    """What a model function may use besides its inputs (passed as `ctx`)."""

    model: str
    run_id: str
    backend: str
    xp: Any  # pandas or cudf: the DataFrame module for this run
    is_incremental: bool = False  # True when the inputs hold only rows landed since the last build
    vars: dict[str, Any] = field(default_factory=dict)
    previous: Callable[[], Any] | None = None  # the model's current output as a frame (None: none yet)


def model(fn: Callable[..., Any] | None = None, *, inputs: dict[str, str] | None = None,
          name: str | None = None, materialized: str = "table", publish: bool = True,
          key: str | Iterable[str] = (), tags: Iterable[str] = (), checks: Iterable[Any] = (),
          full_inputs: Iterable[str] = (), columns: dict[str, Iterable[str]] | None = None) -> Any:
    """Declare a model: `@model(inputs={"photos": "raw.photos", "stats": "other_model"})`.

    Each key of `inputs` is a parameter of the function; each value names a raw table or a
    model. The function may also take `ctx` (a `Context`). `materialized` is `table` (rebuilt
    from all input rows), `incremental` (sees only input rows landed since its last build;
    appends) or `merge` (like incremental, but upserts on `key`); `full_inputs` names inputs an
    incremental model always reads whole (a dimension table it joins to). `checks` are run on
    every build (see `engine.transform.checks`); `tags` serve `--select tag:<tag>`; `columns` maps an
    input to the only columns read from it (the rest, load columns included, never leave the
    lake's files). Returns a `Model`.
    """
    def wrap(f: Callable[..., Any]) -> Model:
        if materialized not in MATERIALIZATIONS:
            raise HeadwaterError(f"model {name or f.__name__!r}: unknown materialization {materialized!r}",
                                 f"use one of {', '.join(MATERIALIZATIONS)}")
        ins = dict(inputs or {})
        params = inspect.signature(f).parameters
        missing = [p for p in ins if p not in params and not any(
            v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())]
        if missing:
            raise HeadwaterError(f"model {name or f.__name__!r}: inputs {missing} are not parameters of "
                                 f"{f.__name__}()", "name each input after a function parameter")
        keys = (key,) if isinstance(key, str) else tuple(key)
        if materialized == "merge" and not keys:
            raise HeadwaterError(f"model {name or f.__name__!r}: materialized='merge' needs a key",
                                 "pass key='id_column' (or a list of columns) to @model")
        whole = tuple(full_inputs)
        unknown = [p for p in whole if p not in ins]
        if unknown:
            raise HeadwaterError(f"model {name or f.__name__!r}: full_inputs {unknown} are not inputs",
                                 f"inputs are {sorted(ins)}")
        from engine.transform.checks import parse_all  # bad check specs fail here, at declaration

        cols = {p: tuple(c) for p, c in (columns or {}).items()}
        stray = [p for p in cols if p not in ins]
        if stray:
            raise HeadwaterError(f"model {name or f.__name__!r}: columns= names {stray}, which are not inputs",
                                 f"inputs are {sorted(ins)}")

        parsed = parse_all(checks, name or f.__name__)
        return Model(name or f.__name__, f, ins, materialized, publish, (f.__doc__ or "").strip(),
                     keys, tuple(tags), parsed, whole, cols)

    return wrap(fn) if fn is not None else wrap


def input_table(ref: str) -> str:
    """The lake table an input reference names: `raw.x` stays, `x` or `models.x` is a model."""
    return ref if ref.startswith("raw.") else f"models.{ref.removeprefix('models.')}"


def dag_order(models: Iterable[Model], sources: Iterable[str]) -> list[Model]:
    """Models in an order where each comes after the models it reads.

    Raises HeadwaterError naming the cycle, or the input that is neither a source nor a model.
    """
    by_name = {m.name: m for m in models}
    raw = {f"raw.{s}" for s in sources}
    for m in by_name.values():
        for param, ref in m.inputs.items():
            table = input_table(ref)
            if table.startswith("raw.") and table not in raw:
                raise HeadwaterError(f"model {m.name!r}: input {param}={ref!r} names no source",
                                     f"sources are {sorted(s[4:] for s in raw) or 'none'}")
            if table.startswith("models.") and table[7:] not in by_name:
                raise HeadwaterError(f"model {m.name!r}: input {param}={ref!r} is neither a model "
                                     "nor a raw table", f"use 'raw.<source>' or one of {sorted(by_name)}")
    order: list[Model] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = path[path.index(name):] + [name]
            raise HeadwaterError(f"models form a cycle: {' -> '.join(cycle)}",
                                 "break the cycle: a model cannot depend on itself")
        state[name] = "active"
        for ref in by_name[name].inputs.values():
            table = input_table(ref)
            if table.startswith("models."):
                visit(table[7:], path + [name])
        state[name] = "done"
        order.append(by_name[name])

    for name in by_name:
        visit(name, [])
    return order

