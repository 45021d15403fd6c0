"""SQL models: one SELECT whose inputs are the tables it names, declared in Python with
`sql_model(name, sql, ...)` or as a file `models/<name>.sql` beside the pipeline file.

The SQL is parsed once, at declaration, by DuckDB's own parser (DuckDB is the reference
dialect): a query that does not parse fails there, naming the model, line and column. The
tables it reads are found in the parse tree: `raw.<source>`, `models.<name>` or a bare model
name; names its own CTEs define are not inputs. Nothing is templated: no Jinja, no `inputs=`.

A `.sql` file may start with a header of `-- key: value` comment lines (the same options as
`sql_model`); a list is comma-separated or one `--   - item` per line:

    -- materialized: merge
    -- primary_key: user_id
    -- checks:
    --   - unique(user_id)
    --   - not_null(user_id)
    -- column user_id: the uploader
    select user_id, count(*) as likes from raw.events group by user_id

`-- column <name>: text` lines describe output columns (`column_descriptions`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.graph import TableRef, check_name
from engine.transform.checks import parse_all
from engine.transform.models import Materialized, Model, current_inputs, declared
from engine.transform.partitions import partitioning

LIST_OPTIONS = ("primary_key", "tags", "checks", "full_inputs", "event_time", "as_of")
FLAG_OPTIONS = ("publish", "replace_existing")
OPTIONS = ("materialized", "description", "partition_by", "grain", "lookback", *LIST_OPTIONS, *FLAG_OPTIONS)
_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_REFERENCE = re.compile(rf"{_IDENT}(?:\s*\.\s*{_IDENT})*")


@dataclass(frozen=True)
class Reference:
    """One table the SQL reads, where it is written: `text[start:end]` names `table`."""

    table: TableRef
    start: int
    end: int


def sql_model(name: str, sql: str, *, materialized: Materialized = "table", primary_key: str | Iterable[str] = (),
              checks: Iterable[Any] = (), tags: Iterable[str] = (), publish: bool = True, description: str = "",
              replace_existing: bool = False, full_inputs: Iterable[str] = (), partition_by: str | None = None,
              grain: str = "day", lookback: int | str = 0, event_time: Mapping[str, str] | Iterable[str] | None = None,
              as_of: Mapping[str, str] | Iterable[str] | None = None, path: str | None = None,
              column_descriptions: dict[str, str] | None = None) -> Model:
    """Declare a SQL model: `sql` is one SELECT (a WITH … SELECT included) over the tables it
    names (`raw.<source>`, `models.<name>` or a model's bare name). Options are those of
    `@model`: `materialized` (`table`, `incremental`: the inputs hold only rows landed since
    the last build, `merge`: upserted on `primary_key`), `checks`, `tags`, `publish`,
    `description`, `column_descriptions` ({output column: text}), `replace_existing`, and
    `full_inputs`: tables an incremental model always reads whole (a dimension it joins the new
    rows to); `partition_by`, `grain`, `lookback` and `event_time` (`{"raw.events": "ts"}`; in a
    header `raw.events=ts`) partition it as they do a `@model`; `as_of={"raw.photos": "current"}`
    (in a header `raw.photos=current`) reads an SCD2 table's current rows only. On a CPU it runs
    in DuckDB over the lake's files; on a GPU in polars SQL on cudf-polars. Returns a `Model`."""
    check_name("model", name)
    where = f"SQL model {name!r}" + (f" ({path})" if path else "")
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError(f"{where} has no SQL", "give it one SELECT statement")
    refs = references(sql, where)
    inputs = {str(r.table): r.table for r in refs}
    options = declared(name, materialized, primary_key, inputs)
    whole = tuple(str(TableRef.parse(t)) for t in full_inputs)
    stray = [t for t in whole if t not in inputs]
    if stray:
        raise ConfigError(f"{where}: full_inputs {stray} are not tables it reads", f"it reads {sorted(inputs)}")
    mapped = _by_table(event_time)
    parts = partitioning(name, partition_by, grain, int(lookback), mapped, inputs, materialized)
    current = current_inputs(name, _by_table(as_of), inputs)
    return Model(name, None, options.inputs, materialized, publish, description.strip(), options.primary_key,
                 tuple(tags), parse_all(checks, name), whole, {}, bool(replace_existing), kind="sql",
                 sql=sql, path=path, partitioning=parts, current=current,
                 column_descriptions=dict(column_descriptions or {}))


def _by_table(pairs: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """`{"raw.x": value}` from a mapping or a header's `raw.x=value` items, tables qualified."""
    if pairs is not None and not isinstance(pairs, Mapping):
        pairs = dict(item.split("=", 1) for item in pairs)
    return {str(TableRef.parse(k.strip())): v.strip() for k, v in (pairs or {}).items()}


def references(sql: str, where: str = "SQL") -> list[Reference]:
    """Every table `sql` reads, in order of appearance; a ConfigError naming `where` and the
    line and column when DuckDB's parser refuses the query, or it is not one SELECT."""
    tree = _parse(sql, where)
    ctes = set(_cte_names(tree))
    found: list[Reference] = []
    for node in _walk(tree):
        if node.get("type") != "BASE_TABLE":
            continue
        schema, table = node.get("schema_name") or "", node.get("table_name") or ""
        if node.get("catalog_name"):
            raise ConfigError(f"{where}: table {node['catalog_name']}.{schema}.{table} names a catalog",
                              "name lake tables as raw.<source>, models.<name> or a model's name")
        if not schema and table in ctes:
            continue
        if schema and schema not in ("raw", "models"):
            raise ConfigError(f"{where}: table {schema}.{table} is not a lake table",
                              "name lake tables as raw.<source>, models.<name> or a model's name")
        ref = TableRef.raw(table) if schema == "raw" else TableRef.model(table)
        start = int(node.get("query_location", -1))
        match = _REFERENCE.match(sql, start) if 0 <= start < len(sql) else None
        if match is None:
            raise ConfigError(f"{where}: cannot locate table {ref} in the query", "report this as a bug")
        found.append(Reference(ref, start, match.end()))
    return found


def flattened(sql: str, refs: list[Reference], name: dict[TableRef, str]) -> str:
    """`sql` with each reference replaced by `name[table]` (for engines without schemas)."""
    out, at = [], 0
    for ref in sorted(refs, key=lambda r: r.start):
        out += [sql[at:ref.start], name[ref.table]]
        at = ref.end
    return "".join(out + [sql[at:]])


def _parse(sql: str, where: str) -> dict[str, Any]:
    import duckdb

    with duckdb.connect() as con:
        row = con.execute("select json_serialize_sql(?)", [sql]).fetchone()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True, "error_message": "no result"}
    if tree.get("error"):
        message = str(tree.get("error_message", "does not parse"))
        if "Only SELECT" in message:
            raise ConfigError(f"{where} is not one SELECT statement",
                              "a SQL model is one SELECT (or WITH … SELECT); Headwater writes its output")
        position = tree.get("position")
        at = f" at {_line_col(sql, int(position))}" if position not in (None, "") else ""
        raise ConfigError(f"{where} does not parse{at}: {message}",
                          "fix the SQL (DuckDB's dialect is the reference: see docs/models.md, SQL models)")
    statements: list[Any] = tree.get("statements", [])
    if len(statements) != 1:
        raise ConfigError(f"{where} holds {len(statements)} statements", "a SQL model is one SELECT statement")
    return dict(statements[0])


def _line_col(sql: str, position: int) -> str:
    before = sql[:position]
    return f"line {before.count(chr(10)) + 1}, column {position - (before.rfind(chr(10)) + 1) + 1}"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: dict[str, Any]) -> Iterator[str]:
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                yield entry["key"]


# -- models/<name>.sql files ---------------------------------------------------------------
def sql_file(path: str | Path) -> Model:
    """The SQL model in file `path`, named after the file (`models/top_photos.sql` is
    `top_photos`), with the options of its `-- key: value` header."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    options = header(text, str(path))
    return sql_model(path.stem, text, path=str(path), **options)


def sql_files(folder: str | Path) -> list[Model]:
    """The SQL models of every `*.sql` file in `folder`, by name."""
    return [sql_file(p) for p in sorted(Path(folder).glob("*.sql"))]


def header(text: str, where: str) -> dict[str, Any]:
    """The options in the leading `-- key: value` comment lines of a `.sql` file."""
    options: dict[str, Any] = {}
    listing: str | None = None  # the list option that `--   - item` lines add to
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        body = stripped[2:].strip()
        if body.startswith("- ") and listing is not None:
            options[listing].append(body[2:].strip())
            continue
        column = re.fullmatch(r"column\s+(\w+)\s*:\s*(.*)", body)
        if column is not None:  # `-- column user_id: the uploader`
            options.setdefault("column_descriptions", {})[column.group(1)] = column.group(2).strip()
            listing = None
            continue
        match = re.fullmatch(r"([a-z_]+)\s*:\s*(.*)", body)
        if match is None:
            listing = None
            continue  # a comment
        key, value = match.group(1), match.group(2).strip()
        if key not in OPTIONS:
            raise ConfigError(f"{where}:{number}: unknown option {key!r} in the header",
                              f"options are {', '.join(OPTIONS)}; write other comments without 'word:'")
        listing = key if key in LIST_OPTIONS else None
        if key in LIST_OPTIONS:
            options[key] = _split(value)
        elif key in FLAG_OPTIONS:
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"{where}:{number}: {key} is {value!r}", "write true or false")
            options[key] = value.lower() == "true"
        else:
            options[key] = value
    return options


def _split(value: str) -> list[str]:
    """`value` split on commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [p for p in [*parts, current.strip()] if p]
