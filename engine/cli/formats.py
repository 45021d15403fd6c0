"""Rows for scripts: `show` and `query` with `--format csv|json|markdown` print every value whole,
with no title, colour or wrapping (`table`, the default, is the terminal's view: tables.py)."""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
from collections.abc import Callable
from typing import Any, Literal, get_args

import pyarrow as pa

Format = Literal["table", "csv", "json", "markdown"]
FORMATS: tuple[str, ...] = get_args(Format)


def plain(value: Any) -> Any:
    """A value as JSON knows it: dates and times ISO, decimals as numbers (as text when a float
    would change them), bytes as hex, NaN and infinities null; lists and structs element by element."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):  # a number when a float holds it exactly, else its text
        return float(value) if value.is_finite() and decimal.Decimal(repr(float(value))) == value else str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    """A value as one CSV or Markdown field: empty for null, decimals exact, nested values as JSON."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(data: pa.Table) -> str:
    """A header line, then one line per row (RFC 4180 quoting; null is an empty field)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(data.column_names)
    for row in data.to_pylist():
        writer.writerow([_text(v) for v in row.values()])
    return out.getvalue()


def to_json(data: pa.Table) -> str:
    """A JSON array of one object per row, one row per line (as DuckDB's `.mode json`)."""
    rows = [json.dumps({k: plain(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=False)
            for row in data.to_pylist()]
    return "[" + ",\n".join(rows) + "]\n"


def to_markdown(data: pa.Table) -> str:
    """A GitHub Markdown table: numbers right-aligned, `|` escaped, line breaks as <br>."""
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in data.schema.types]

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")

    lines = ["| " + " | ".join(cell(n) for n in data.column_names) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    for row in data.to_pylist():
        lines.append("| " + " | ".join(cell(_text(v)) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


WRITERS: dict[str, Callable[[pa.Table], str]] = {"csv": to_csv, "json": to_json, "markdown": to_markdown}
