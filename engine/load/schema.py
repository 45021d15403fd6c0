"""Schema contracts and evolution: plan a run's table schema before its stream starts.

One run is one Delta commit, so the schema it writes is fixed before the first batch: the plan
unifies the raw table's current schema with every new file's sampled schema under the source's
contract, and readers then coerce each batch to it (`coerce`), handing rows that do not fit to
the quarantine instead of failing the run.

Contracts: `evolve` (default: new columns are added, safe widenings applied), `freeze` (a new
column or a type change is an error), `discard_columns` (new columns are dropped and counted).
A type that is not a safe widening never changes the table: values are coerced to the table's
type and rows whose values cannot be are quarantined.

Column names must be able to live together in one Delta table: none empty or repeated (Delta
compares them case-insensitively), none with the `_hw_` prefix of the load columns, no type
Delta cannot store. A file whose columns break that is refused as a whole (`SchemaPlan.refused`),
and the rest of the run goes on.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ConfigError, SchemaError
from engine.lake import cast, delta_type

CONTRACTS = ("evolve", "freeze", "discard_columns")
RESERVED_PREFIX = "_hw_"  # Headwater's load columns: _hw_source_file, _hw_loaded_at, _hw_run_id
DECIMAL = re.compile(r"(decimal|decimal128)\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
LOAD_ORIGIN = "load columns"  # the plan's origin for those columns, exempt from the prefix rule


def name_problem(name: str, known: Mapping[str, str] | None = None) -> str | None:
    """Why a column called `name` cannot land beside `known` (case-folded name -> name), or None."""
    if not name:
        return "a column has no name; give it one"
    if "\x00" in name:
        return f"column {name!r} has a NUL character in its name; rename it"
    if name.lower().startswith(RESERVED_PREFIX):
        return (f"column {name!r} uses the prefix {RESERVED_PREFIX}, which Headwater reserves for its load "
                "columns; rename it in the source")
    other = (known or {}).get(name.lower())
    if other == name:
        return f"repeats column {name!r}; give each column its own name"
    if other is not None:
        return (f"columns {other!r} and {name!r} differ only in case, and Delta column names are "
                "case-insensitive; rename one of them")
    return None


def names_problem(names: Iterable[str], known: Mapping[str, str] | None = None) -> str | None:
    """Why these column names cannot land together (beside `known`), or None."""
    seen = dict(known or {})
    for name in names:
        why = name_problem(name, seen)
        if why:
            return why
        seen[name.lower()] = name
    return None


def type_problem(name: str, t: pa.DataType) -> str | None:
    """Why column `name` of type `t` cannot be stored in Delta even after `delta_type`, or None."""
    if pa.types.is_union(t) or pa.types.is_interval(t):
        return f"column {name!r} is {t}, which Delta cannot store; cast it (to a string, say) before export"
    if pa.types.is_struct(t):
        children = [f.name for f in t]
        inner = names_problem(children) if len(set(map(str.lower, children))) < len(children) else None
        if inner:
            return f"column {name!r}: {inner.replace('repeats column', 'repeats field')}"
        return next((why for f in t if (why := type_problem(f"{name}.{f.name}", f.type))), None)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return type_problem(name, t.value_type)
    if pa.types.is_map(t):
        return type_problem(name, t.key_type) or type_problem(name, t.item_type)
    return None


def schema_problem(schema: pa.Schema, known: Mapping[str, str] | None = None) -> str | None:
    """Why `schema`'s columns cannot land beside `known` (case-folded name -> name), or None."""
    return names_problem(schema.names, known) or next(
        (why for f in schema if (why := type_problem(f.name, f.type))), None)


def parse_schema(spec: pa.Schema | Mapping[str, Any] | None) -> dict[str, pa.DataType]:
    """`schema=` as {column: Arrow type}: a pyarrow schema, or a dict of names to types or type
    strings such as "int64", "float64", "string", "bool", "date32", "timestamp[us, tz=UTC]",
    "decimal128(38, 2)"."""
    if spec is None:
        return {}
    if isinstance(spec, pa.Schema):
        return {f.name: delta_type(f.type) for f in spec}
    out: dict[str, pa.DataType] = {}
    for name, value in spec.items():
        out[name] = delta_type(value if isinstance(value, pa.DataType) else _type_from_string(name, str(value)))
    return out


def _type_from_string(column: str, text: str) -> pa.DataType:
    text = text.strip()
    decimal = DECIMAL.fullmatch(text)
    if decimal:
        precision, scale = int(decimal[2]), int(decimal[3] or 0)
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise ConfigError(f"schema=: column {column!r} has type {text!r}; Delta decimals take 1 to 38 "
                              "digits, and a scale from 0 to the precision", "use decimal128(38, 0) at most")
        return pa.decimal128(precision, scale)
    if text.startswith("timestamp[") and text.endswith("]"):
        unit, _, tz = text[10:-1].partition(",")
        return pa.timestamp(unit.strip(), tz=tz.split("=", 1)[1].strip() if "=" in tz else None)
    try:
        return pa.type_for_alias(text)
    except ValueError as exc:
        raise ConfigError(f"schema=: column {column!r} has unknown type {text!r}",
                          "use an Arrow type name such as int64, float64, string, bool, "
                          "date32, timestamp[us], decimal128(38, 2)") from exc


def _rank(t: pa.DataType) -> tuple[str, int] | None:
    if pa.types.is_signed_integer(t):
        return "int", t.bit_width
    if pa.types.is_unsigned_integer(t):
        return "uint", t.bit_width
    if pa.types.is_floating(t):
        return "float", t.bit_width
    return None


def widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether every value of `old` fits `new` with no loss that Headwater calls unsafe:
    int32→int64, int→float64, float32→float64, date→timestamp, timestamp unit, null→any."""
    if old == new or pa.types.is_null(old):
        return True
    a, b = _rank(old), _rank(new)
    if a and b:
        if a[0] == b[0]:
            return b[1] >= a[1]
        if b == ("float", 64):
            return True
        return a[0] == "uint" and b[0] == "int" and b[1] > a[1]
    if pa.types.is_date(old) and pa.types.is_timestamp(new):
        return True
    if pa.types.is_timestamp(old) and pa.types.is_timestamp(new):
        return old.tz == new.tz
    return False


@dataclass
class SchemaPlan:
    """The schema one run writes: `incoming` (origin, schema) pairs unified with the table's."""

    source: str
    incoming: list[tuple[str, pa.Schema]]
    contract: str = "evolve"
    declared: dict[str, pa.DataType] = field(default_factory=dict)
    target: pa.Schema | None = None  # set by resolve()
    dropped: list[str] = field(default_factory=list)  # new columns discarded by the contract
    changes: list[str] = field(default_factory=list)  # what evolved, in words
    rewrite: bool = False  # an existing column was widened: the table is rewritten in this commit
    refused: dict[str, str] = field(default_factory=dict)  # origin -> why its columns cannot land

    def __post_init__(self) -> None:
        if self.contract not in CONTRACTS:
            raise ConfigError(f"source {self.source!r}: unknown contract {self.contract!r}",
                              f"use one of {', '.join(CONTRACTS)}")

    def resolve(self, current: pa.Schema | None) -> pa.Schema:
        """The target schema given the table's `current` one (None: no table yet)."""
        fields: dict[str, pa.DataType] = {f.name: f.type for f in current} if current else {}
        existing = set(fields)
        self.refused.clear()
        for origin, schema in self.incoming:
            if origin != LOAD_ORIGIN:
                known = {n.lower(): n for n in fields if n not in schema.names}
                why = schema_problem(schema, known)
                if why:
                    self.refused[origin] = why
                    continue
            for f in schema:
                new = delta_type(f.type)
                if f.name in self.declared:
                    new = self.declared[f.name]
                if f.name not in fields:
                    self._add(fields, existing, f.name, new, origin)
                elif fields[f.name] != new and widens(fields[f.name], new):
                    self._widen(fields, existing, f.name, new, origin)
        for name, declared in self.declared.items():  # declared types win over inferred ones
            if name not in fields:
                continue
            if name not in existing:
                fields[name] = declared
            elif fields[name] != declared and widens(fields[name], declared):
                self._widen(fields, existing, name, declared, "schema=")
        self.target = pa.schema([(n, pa.string() if pa.types.is_null(t) else t) for n, t in fields.items()])
        return self.target

    def _add(self, fields: dict[str, pa.DataType], existing: set[str], name: str,
             new: pa.DataType, origin: str) -> None:
        if existing and self.contract == "freeze":
            raise SchemaError(f"source {self.source!r}: {origin} has new column {name!r} ({new}) "
                              "and the contract is freeze",
                              "add the column to the table on purpose, or use contract='evolve'")
        if existing and self.contract == "discard_columns":
            self.dropped.append(name)
            return
        if existing:
            self.changes.append(f"added {name} ({new})")
        fields[name] = new

    def _widen(self, fields: dict[str, pa.DataType], existing: set[str], name: str,
               new: pa.DataType, origin: str) -> None:
        old = fields[name]
        if name in existing and self.contract == "freeze":
            raise SchemaError(f"source {self.source!r}: {origin}: column {name!r} is {new}, "
                              f"the table has {old}, and the contract is freeze",
                              "make the types agree, or use contract='evolve'")
        fields[name] = new
        if name in existing:
            self.rewrite = True
            self.changes.append(f"widened {name} {old} -> {new}")

    def data_types(self) -> dict[str, pa.DataType]:
        """Target types by column (after resolve)."""
        assert self.target is not None, "resolve() the plan before reading"
        return {f.name: f.type for f in self.target}


def coerce(table: pa.Table, types: Mapping[str, pa.DataType], *, extras: str = "evolve",
           skip: frozenset[str] = frozenset(), dropped: set[str] | None = None,
           origin: str = "") -> tuple[pa.Table, dict[int, str]]:
    """`table` cast to `types` (column order kept as in `types`, missing ones null), and the
    rows that could not be, by index, with the reason. Columns not in `types` (nor in `skip`)
    are dropped and added to `dropped` (contract discard_columns), an error (freeze), or make
    their non-null rows bad (evolve: a field first seen after a file's schema sample)."""
    bad: dict[int, str] = {}
    for name in table.column_names:
        if name in types or name in skip:
            continue
        col = table.column(name)
        if extras == "freeze":
            raise SchemaError(f"{origin}: new column {name!r} ({col.type}) and the contract is freeze",
                              "add the column to the table on purpose, or use contract='evolve'")
        if extras == "discard_columns":
            if dropped is not None:
                dropped.add(name)
            continue
        twin = next((n for n in types if n.lower() == name.lower()), None)
        why = (f"field {name!r} differs only in case from column {twin!r} (Delta column names are "
               "case-insensitive)") if twin else \
            (f"field {name!r} is not in the planned schema (first seen after the part of the file "
             "sampled for it)")
        for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
            bad.setdefault(i, why)
    arrays = []
    for name, to in types.items():
        if name in skip:
            continue
        if name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, to))
            continue
        col = table.column(name)
        try:
            arrays.append(cast(col, to))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            arrays.append(_cast_each(col, to, name, bad))
    names = [n for n in types if n not in skip]
    out = pa.Table.from_arrays(arrays, names=names) if names else rows_only(table.num_rows)
    if bad:
        keep = pa.array([i not in bad for i in range(table.num_rows)])
        out = out.filter(keep)
    return out, bad


def _cast_each(col: pa.ChunkedArray, to: pa.DataType, name: str, bad: dict[int, str]) -> pa.Array:
    """`col` as `to`, value by value: a value that does not cast makes its row bad (in `bad`)
    and is null here. A cast Arrow has no kernel for makes every non-null value bad."""
    if not _castable(col.type, to):
        for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
            bad.setdefault(i, f"column {name!r}: {short(col[i].as_py())} is {col.type}, not {to}")
        return pa.nulls(len(col), to)
    values = col.to_pylist()
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            cast(pa.array([value], col.type), to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            bad.setdefault(i, f"column {name!r}: {short(value)} is not {to}")
    return cast(pa.array([None if i in bad else v for i, v in enumerate(values)], col.type), to)


def _castable(source: pa.DataType, to: pa.DataType) -> bool:
    """Whether Arrow can cast `source` to `to` at all (values aside)."""
    try:
        cast(pa.nulls(1, source), to)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid):
        return False
    return True


def rows_only(rows: int) -> pa.Table:
    """A table of `rows` rows and no columns (what is left of rows whose every column is dropped)."""
    return pa.table({"": pa.nulls(rows)}).drop_columns([""])


def short(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut at `limit` characters (for a reason quarantined with a row)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
