"""Schema contracts and evolution: plan a run's table schema before its stream starts.

One run is one Delta commit, so the schema it writes is fixed before the first batch: the plan
unifies the raw table's current schema with every new file's sampled schema under the source's
contract, and readers then coerce each batch to it (`coerce`), handing rows that do not fit to
the quarantine instead of failing the run.

Contracts: `evolve` (default: new columns are added, safe widenings applied), `freeze` (a new
column or a type change is an error), `discard_columns` (new columns are dropped and counted).
A type that is not a safe widening never changes the table: values are coerced to the table's
type and rows whose values cannot be are quarantined.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ConfigError, SchemaError
from engine.lake import cast, delta_type

CONTRACTS = ("evolve", "freeze", "discard_columns")


def parse_schema(spec: pa.Schema | Mapping[str, Any] | None) -> dict[str, pa.DataType]:
    """`schema=` as {column: Arrow type}: a pyarrow schema, or a dict of names to types or type
    strings such as "int64", "float64", "string", "bool", "date32", "timestamp[us, tz=UTC]"."""
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
    if text.startswith("timestamp[") and text.endswith("]"):
        unit, _, tz = text[10:-1].partition(",")
        return pa.timestamp(unit.strip(), tz=tz.split("=", 1)[1].strip() if "=" in tz else None)
    try:
        return pa.type_for_alias(text)
    except ValueError as exc:
        raise ConfigError(f"schema=: column {column!r} has unknown type {text!r}",
                          "use an Arrow type name such as int64, float64, string, bool, "
                          "date32, timestamp[us]") from exc


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

    def __post_init__(self) -> None:
        if self.contract not in CONTRACTS:
            raise ConfigError(f"source {self.source!r}: unknown contract {self.contract!r}",
                              f"use one of {', '.join(CONTRACTS)}")

    def resolve(self, current: pa.Schema | None) -> pa.Schema:
        """The target schema given the table's `current` one (None: no table yet)."""
        fields: dict[str, pa.DataType] = {f.name: f.type for f in current} if current else {}
        existing = set(fields)
        for origin, schema in self.incoming:
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
        for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist():
            bad.setdefault(i, f"field {name!r} is not in the planned schema (first seen after "
                              "the part of the file sampled for it)")
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
            values = col.to_pylist()
            for i, value in enumerate(values):
                try:
                    cast(pa.array([value], col.type), to)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    bad.setdefault(i, f"column {name!r}: {_short(value)} is not {to}")
            arrays.append(cast(pa.array([None if i in bad else v for i, v in enumerate(values)], col.type), to))
    out = pa.Table.from_arrays(arrays, names=[n for n in types if n not in skip])
    if bad:
        keep = pa.array([i not in bad for i in range(table.num_rows)])
        out = out.filter(keep)
    return out, bad


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
