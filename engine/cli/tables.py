"""Tables that fit the terminal they are printed on.

Every table the CLI prints is laid out here for a given width, so that no column is squeezed to
nothing (rich's own layout shrinks every column alike when a table is too wide):

* `fit` chooses each column's width: columns at their natural width when all fit; else the
  columns not marked `keep` capped (their values cut with "…"); else columns left out from the
  right (for data, a "…" column stands for them). Width left over goes back to the columns that
  were cut.
* `data_table` draws query results and lake rows as DuckDB's shell does: names and types on top,
  numbers right-aligned, NULL for null, values cut at `CAP` characters when the table is too
  wide, and a footer counting rows and the columns shown. Unlike DuckDB it leaves out the last
  columns rather than the middle ones: a lake table's bookkeeping columns (`_hw_*`) come last,
  and a quarantine table's `reason` stays in view.
* `listing` draws the CLI's own rows (runs, history) with plain values, naming the columns it
  had to leave out.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

CAP = 20  # the width a value is cut to when the table does not fit (DuckDB's shell: 20)
ELLIPSIS = "…"
NULL = "NULL"


@dataclass
class Col:
    """A column to lay out: its name, an optional second header line (a type), alignment,
    whether it must stay whole (`keep`: never cut, never left out) and whether its cells wrap."""

    name: str
    sub: str = ""
    right: bool = False
    keep: bool = False
    wrap: bool = False  # cells wrap onto more lines instead of being cut


@dataclass
class Layout:
    """Which columns are shown, in order (None: the "…" column standing for those left out),
    each one's width, and the indices of the columns left out."""

    shown: list[int | None]
    widths: list[int]
    hidden: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Frame:
    """A table's border style and what it costs: `total(widths)` is the printed width."""

    style: box.Box
    edge: bool

    def total(self, widths: Sequence[int]) -> int:
        """Printed width of columns this wide: 1 space of padding each side, 1 character per
        divider (and per edge when the frame has edges)."""
        n = len(widths)
        return sum(widths) + 3 * n + 1 if self.edge else sum(widths) + max(3 * (n - 1), 0)

    def table(self, title: str | None = None) -> Table:
        return Table(title=title or None, title_justify="left", box=self.style, show_edge=self.edge,
                     pad_edge=self.edge, expand=False, collapse_padding=False)


BOXED = Frame(box.HEAVY_HEAD, edge=True)  # data, boxed as DuckDB's shell draws it
PLAIN = Frame(box.SIMPLE_HEAD, edge=False)  # the CLI's own listings: a rule under the header


def natural(col: Col, cells: Sequence[str]) -> int:
    """The width column `col` needs to show its header and every cell whole."""
    return max([cell_len(col.name), cell_len(col.sub), *(cell_len(c) for c in cells)] or [1])


def fit(cols: Sequence[Col], natural_widths: Sequence[int], width: int, frame: Frame, *,
        cap: int | None = CAP, contiguous: bool = False) -> Layout:
    """Widths for `cols` so that the table is at most `width` characters wide; see the module.
    `contiguous`: columns are kept from the left up to the first that does not fit, and a "…"
    column stands for the rest (data); else every column that still fits is kept (listings)."""
    n = len(cols)
    full = list(natural_widths)
    if frame.total(full) <= width:
        return Layout(list(range(n)), full)
    capped = [w if c.keep or cap is None else min(w, max(cap, 1)) for c, w in zip(cols, full)]
    chosen = {i for i, c in enumerate(cols) if c.keep}
    for i in range(n):
        if i in chosen:
            continue
        trial = [capped[j] for j in sorted(chosen | {i})] + ([1] if contiguous and i < n - 1 else [])
        if frame.total(trial) <= width:
            chosen.add(i)
        elif contiguous:
            break
    shown: list[int | None] = [i for i in range(n) if i in chosen]
    if contiguous and len(chosen) < n:
        shown.append(None)  # "…": the columns left out
    widths = [1 if i is None else capped[i] for i in shown]
    spare = width - frame.total(widths)
    for k, at in enumerate(shown):  # give back what was cut, left to right
        if at is not None and spare > 0 and widths[k] < full[at]:
            extra = min(spare, full[at] - widths[k])
            widths[k] += extra
            spare -= extra
    return Layout(shown, widths, [i for i in range(n) if i not in chosen])


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells, its last one "…" when anything was cut."""
    if cell_len(text) <= width:
        return text
    cut = Text(text)
    cut.truncate(width, overflow="ellipsis")
    return cut.plain


def render(cols: Sequence[Col], rows: Sequence[Sequence[str]], layout: Layout, frame: Frame,
           title: str = "", styles: Sequence[Sequence[str]] | None = None) -> Table:
    """`rows` (cells as text) drawn in `layout`: each cell on one line, cut to its column."""
    table = frame.table(title)
    typed = any(c.sub for c in cols)
    for i, w in zip(layout.shown, layout.widths):
        if i is None:  # rich aligns headers to the bottom: "…" on the names' line, not the types'
            table.add_column(Text(ELLIPSIS + ("\n" + ELLIPSIS if typed else "")), width=1, no_wrap=True)
            continue
        col = cols[i]
        header = Text(clip(col.name, w), style="bold")
        if col.sub:
            header.append("\n" + clip(col.sub, w), style="dim")
        table.add_column(header, justify="right" if col.right else "left", width=w, no_wrap=not col.wrap,
                         overflow="fold" if col.wrap else "ellipsis")
    for r, row in enumerate(rows):
        cells = []
        for i, w in zip(layout.shown, layout.widths):
            style = (styles[r][i] if styles is not None and i is not None else "") or ""
            if i is None:
                cells.append(Text(ELLIPSIS))
            else:
                cells.append(Text(row[i] if cols[i].wrap else clip(row[i], w), style=style))
        table.add_row(*cells)
    return table


# -- data: query results and lake rows -----------------------------------------------------------
NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)


def value_text(value: Any) -> str:
    """One value as one line of text: NULL for null, control characters escaped, dates ISO."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "\\x" + value.hex() if len(value) <= 64 else "\\x" + value[:64].hex() + ELLIPSIS
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    text = str(value)
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def data_table(data: pa.Table, width: int, total_rows: int | None = None) -> tuple[Table, str]:
    """`data` as DuckDB's shell shows it in `width` characters, and the footer line under it:
    rows (of `total_rows` when `data` is the first part of a larger result), and the columns
    shown when some were left out."""
    cols = [Col(f.name, str(f.type), right=any(t(f.type) for t in NUMERIC)) for f in data.schema]
    values = [list(row.values()) for row in data.to_pylist()] if data.num_columns else []
    rows = [[value_text(v) for v in row] for row in values]
    styles = [["dim" if v is None else "" for v in row] for row in values]
    widths = [natural(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    layout = fit(cols, widths, width, BOXED, contiguous=True)
    total = data.num_rows if total_rows is None else total_rows
    footer = f"{total:,} row{'s' if total != 1 else ''}"
    if total > data.num_rows:
        footer += f" ({data.num_rows:,} shown, --limit shows more)"
    if layout.hidden:
        footer += f", {data.num_columns} columns ({data.num_columns - len(layout.hidden)} shown)"
    return render(cols, rows, layout, BOXED, "", styles), footer


# -- listings: the CLI's own rows ----------------------------------------------------------------
def listing(rows: Sequence[dict[str, str]], width: int, title: str = "", keep: Sequence[str] = (),
            right: Sequence[str] = ()) -> tuple[Table, str]:
    """Rows of plain strings (same keys) in `width` characters: `keep` columns whole, the others
    cut or, when even cut they do not fit, left out from the end (named in the footer). Columns
    empty in every row are left out."""
    names = [n for n in (rows[0] if rows else []) if n in keep or any(r[n] for r in rows)]
    cols = [Col(n, right=n in right, keep=n in keep) for n in names]
    cells = [[r[n] for n in names] for r in rows]
    widths = [natural(c, [r[i] for r in cells]) for i, c in enumerate(cols)]
    layout = fit(cols, widths, width, PLAIN)
    footer = ""
    if layout.hidden:
        left_out = ", ".join(names[i] for i in layout.hidden)
        footer = f"not shown at {width} columns: {left_out}"
    return render(cols, cells, layout, PLAIN, title), footer
