"""Check specs: what a data check on a model's output asserts, built in Python or read from a string.

A spec is a `Check`; the constructors (`unique`, `not_null`, …) validate their arguments, and
`parse` turns a string such as `"warn: unique(user_id, day)"` (or a function, for a custom
check) into the same `Check`. `Check.name` is the canonical string: `parse(c.name)` gives back `c`.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError, HeadwaterError
from engine.graph import ZONES, TableRef

SEVERITIES = ("error", "warn")
EXAMPLES = {
    "unique": "unique(photo_id)  or  unique(user_id, day)",
    "not_null": "not_null(photo_id, user_id)",
    "accepted_values": "accepted_values(kind, ['view', 'like', 'login'])",
    "relationships": "relationships(user_id, to=raw.users.user_id)  or  relationships(user_id, to=user_activity)",
    "row_count": "row_count(min=1)  or  row_count(1, 1000000)",
    "expression": "expression(likes_7d >= 0 and likes_7d <= views_7d)",
    "custom": "custom(fn) in Python, or the function itself, in checks=[...]",
}
KINDS = tuple(EXAMPLES)


@dataclass(frozen=True)
class Check:
    """One data check: its `kind`, its arguments, its `severity` (`error` stops the model's
    build, `warn` only reports) and a readable `name` such as `unique(photo_id)`."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown check kind {self.kind!r}", _kinds_hint())
        if self.severity not in SEVERITIES:
            raise ConfigError(f"check {self.name or self.kind!r}: unknown severity {self.severity!r}",
                              "use severity='error' (stops the build) or 'warn' (only reports)")
        if not self.name:
            object.__setattr__(self, "name", _canonical(self.kind, self.args))

    @property
    def reference(self) -> str | None:
        """The table a `relationships` check reads (`raw.<source>` or a model name), else None."""
        return self.args.get("to") if self.kind == "relationships" else None


# -- constructors -------------------------------------------------------------------------
def unique(*columns: str, severity: str = "error") -> Check:
    """No two rows share a value of `columns` (together). Rows with a null in any of them are
    not compared (as in a SQL UNIQUE constraint); add `not_null` to forbid nulls."""
    return Check("unique", {"columns": _columns("unique", columns)}, severity)


def not_null(*columns: str, severity: str = "error") -> Check:
    """No row has a null in any of `columns` (a float NaN is a value, not a null)."""
    return Check("not_null", {"columns": _columns("not_null", columns)}, severity)


def accepted_values(column: str, values: Iterable[Any], severity: str = "error") -> Check:
    """Every non-null value of `column` is one of `values` (all strings, or all non-strings).
    String values are compared with the column's text form, so they also work on dates."""
    column = _columns("accepted_values", (column,))[0]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _spec_error("accepted_values", f"values must be a list, not {values!r}")
    vals = tuple(values)
    if not vals or any(v is None for v in vals):
        raise _spec_error("accepted_values", "values must be a non-empty list without None "
                          "(nulls always pass accepted_values: add not_null to forbid them)")
    if len({isinstance(v, str) for v in vals}) > 1:
        raise _spec_error("accepted_values", f"values {list(vals)!r} mix strings and non-strings: "
                          "use one kind, matching the column's type")
    return Check("accepted_values", {"column": column, "values": vals}, severity)


def relationships(column: str, to: str, field: str | None = None, severity: str = "error") -> Check:
    """Every non-null value of `column` occurs in column `field` of the table `to` (a model name
    or `raw.<source>`). `field` defaults to `column`; `to` may also end in it: `raw.users.user_id`."""
    column = _columns("relationships", (column,))[0]
    if not isinstance(to, str) or not to.strip():
        raise _spec_error("relationships", f"to= must name a model or raw.<source>, not {to!r}")
    table, named_field = split_reference(to.strip())
    if named_field and field and named_field != field:
        raise _spec_error("relationships", f"to={to!r} names field {named_field!r} but field={field!r}")
    target = _columns("relationships", (field or named_field or column,))[0]
    return Check("relationships", {"column": column, "to": table, "field": target}, severity)


def row_count(min: int | None = None, max: int | None = None, severity: str = "error") -> Check:  # noqa: A002
    """The output has at least `min` and at most `max` rows (either may be left out)."""
    for label, value in (("min", min), ("max", max)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise _spec_error("row_count", f"{label}={value!r} is not a whole number >= 0")
    if min is None and max is None:
        raise _spec_error("row_count", "give min=, max= or both")
    if min is not None and max is not None and min > max:
        raise _spec_error("row_count", f"min={min} is above max={max}")
    return Check("row_count", {"min": min, "max": max}, severity)


def expression(sql: str, severity: str = "error") -> Check:
    """A SQL boolean expression over the output's columns (DuckDB dialect): each row where it is
    false or null fails."""
    if not isinstance(sql, str) or not sql.strip():
        raise _spec_error("expression", f"expected a SQL boolean expression, not {sql!r}")
    return Check("expression", {"sql": sql.strip()}, severity)


def custom(fn: Callable[[Any], Any], name: str | None = None, severity: str = "error") -> Check:
    """`fn(frame)` on the output as a frame of the run's backend; it returns a boolean Series or
    array (True = the row passes), a count of failing rows, or a bool for the whole table."""
    if not callable(fn):
        raise _spec_error("custom", f"expected a function, not {fn!r}")
    label = name or f"custom({getattr(fn, '__name__', type(fn).__name__)})"
    return Check("custom", {"fn": fn}, severity, label)


CONSTRUCTORS: dict[str, Callable[..., Check]] = {
    "unique": unique, "not_null": not_null, "accepted_values": accepted_values,
    "relationships": relationships, "row_count": row_count, "expression": expression,
}


# -- parsing ------------------------------------------------------------------------------
def parse(spec: Check | str | Callable[[Any], Any]) -> Check:
    """The `Check` for a spec: a Check, a function (a custom check) or a string such as
    `"unique(user_id, day)"`; a `warn:` (or `error:`) prefix sets the severity.

    Raises HeadwaterError, with the kinds and an example, for a spec that cannot be read."""
    if isinstance(spec, Check):
        return spec
    if callable(spec):
        return custom(spec)
    if not isinstance(spec, str):
        raise ConfigError(f"a check spec must be a string, a Check or a function, not {spec!r}",
                          _kinds_hint())
    head, sep, rest = spec.partition(":")
    severity, body = (head.strip(), rest) if sep and head.strip() in SEVERITIES else ("error", spec)
    if sep and head.strip().isidentifier() and head.strip() not in SEVERITIES:
        raise ConfigError(f"check spec {spec!r}: unknown severity {head.strip()!r}",
                          "prefix a check with 'warn: ' to only report it, or 'error: ' (the default)")
    kind, paren, inner = body.strip().partition("(")
    kind = kind.strip()
    if not paren or not inner.rstrip().endswith(")"):
        raise ConfigError(f"cannot read check spec {spec!r}: expected kind(arguments)", _kinds_hint())
    inner = inner.rstrip()[:-1]
    if kind == "custom" or kind not in CONSTRUCTORS:
        what = "a custom check needs a function" if kind == "custom" else f"unknown check kind {kind!r}"
        raise ConfigError(f"cannot read check spec {spec!r}: {what}", _kinds_hint())
    args: list[Any]
    kwargs: dict[str, Any]
    if kind == "expression":
        args, kwargs = [_sql_text(inner)], {}
    else:
        args, kwargs = _arguments(spec, inner)
        if "severity" in kwargs:
            raise ConfigError(f"check spec {spec!r}: severity goes in front in a string spec",
                              f"write 'warn: {kind}(...)' to only report it")
    try:
        return CONSTRUCTORS[kind](*args, **kwargs, severity=severity)
    except TypeError as exc:
        raise ConfigError(f"cannot read check spec {spec!r}: wrong arguments for {kind} ({exc})",
                          f"write it like {EXAMPLES[kind]}; for a warning, prefix it with 'warn: '") from exc
    except HeadwaterError as exc:
        raise ConfigError(f"check spec {spec!r}: {exc.message}", exc.hint) from exc


def parse_all(specs: Iterable[Any], model: str | None = None) -> tuple[Check, ...]:
    """Every spec parsed (for `@model(checks=...)`); an error names the model."""
    if isinstance(specs, (str, Check)) or callable(specs):
        specs = [specs]
    out = []
    for spec in specs:
        try:
            out.append(parse(spec))
        except HeadwaterError as exc:
            if model is None:
                raise
            raise ConfigError(f"model {model!r}: {exc.message}", exc.hint) from exc
    return tuple(out)


def split_reference(ref: str) -> tuple[str, str | None]:
    """(`table`, `field` or None) for `raw.users.user_id`, `raw.users`, `model.col` or `model`;
    `table` is `raw.<source>` or a model's bare name."""
    parts = ref.split(".")
    size = 2 if parts[0] in ZONES else 1
    if len(parts) < size or len(parts) > size + 1 or not all(parts):
        raise _spec_error("relationships", f"to={ref!r} is not a model name or raw.<source> "
                          "(optionally followed by .<column>)")
    table = TableRef.parse(".".join(parts[:size]))
    if table.zone not in ("raw", "models"):
        raise _spec_error("relationships", f"to={ref!r} is not a model name or raw.<source>")
    return (table.name if table.zone == "models" else str(table)), parts[size] if len(parts) > size else None


def _arguments(spec: str, inner: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        call = ast.parse(f"_({inner})", mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(f"cannot read the arguments of check spec {spec!r}: {exc.msg}",
                          "quote a column name that is not a plain identifier: "
                          "unique('order id')") from exc
    try:
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
            raise ValueError("expected one kind(arguments), nothing around it")
        if any(k.arg is None for k in call.keywords):
            raise ValueError("** is not allowed")
        return ([_value(a, top=True) for a in call.args],
                {str(k.arg): _value(k.value, top=True) for k in call.keywords})
    except ValueError as exc:
        raise ConfigError(f"cannot read the arguments of check spec {spec!r}: {exc}",
                          "use column names, dotted table references, numbers, quoted strings "
                          "and [lists] of them") from exc


def _value(node: ast.expr, top: bool = False) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        number: Any = node.operand.value  # an int or a float, checked above
        return -number
    if top and isinstance(node, (ast.Name, ast.Attribute)):
        dotted = ast.unparse(node)
        if all(part.isidentifier() for part in dotted.split(".")):
            return dotted  # a column name or a table reference
    if top and isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_value(e) for e in node.elts]
    raise ValueError(f"{ast.unparse(node)!r} is not a column name or a literal"
                     + ("" if top else " (quote values in a list: ['a', 'b'])"))


def _sql_text(inner: str) -> str:
    """The SQL of `expression(...)`: the text as written, or the string if it is one quoted literal."""
    try:
        value = ast.literal_eval(inner.strip())
    except (ValueError, SyntaxError):
        return inner
    return value if isinstance(value, str) else inner


def _columns(kind: str, columns: Iterable[Any]) -> tuple[str, ...]:
    cols = tuple(columns)
    if not cols:
        raise _spec_error(kind, "name at least one column")
    bad = [c for c in cols if not isinstance(c, str) or not c]
    if bad:
        raise _spec_error(kind, f"column names must be non-empty strings, not {bad[0]!r}")
    return cols


def _canonical(kind: str, args: dict[str, Any]) -> str:
    """The check as a spec string that `parse` reads back."""
    def col(name: str) -> str:
        return name if name.isidentifier() else repr(name)

    if kind in ("unique", "not_null"):
        body = ", ".join(col(c) for c in args["columns"])
    elif kind == "accepted_values":
        body = f"{col(args['column'])}, {list(args['values'])!r}"
    elif kind == "relationships":
        target = f"{args['to']}.{args['field']}"
        ok = all(p.isidentifier() for p in target.split("."))
        body = f"{col(args['column'])}, to={target if ok else repr(target)}"
    elif kind == "row_count":
        body = ", ".join(f"{k}={args[k]}" for k in ("min", "max") if args.get(k) is not None)
    elif kind == "expression":
        body = args["sql"]
    else:
        body = getattr(args.get("fn"), "__name__", "fn")
    return f"{kind}({body})"


def _spec_error(kind: str, problem: str) -> HeadwaterError:
    return ConfigError(f"{kind}: {problem}", f"write it like {EXAMPLES[kind]}")


def _kinds_hint() -> str:
    return ("checks are " + ", ".join(KINDS) + "; e.g. 'unique(photo_id)', "
            "'warn: accepted_values(kind, [\"view\", \"like\"])', 'row_count(min=1)'")
