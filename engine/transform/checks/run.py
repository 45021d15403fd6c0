"""Running checks: each check is one DuckDB query over the output's Arrow table (in memory,
nothing copied), except custom checks, which run the user's function on a frame.

A check that cannot run (a column that is not there, SQL that does not bind) is a failed result
whose detail says why, never an exception: the run summary shows it beside the others.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.errors import CheckError, HeadwaterError
from engine.transform.checks.spec import Check, parse_all

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as ds

OUTPUT, REFERENCE = "hw_output", "hw_reference"  # the names the tables are registered under
EXAMPLES = 3  # offending keys or values quoted in a failure's detail


@dataclass
class CheckResult:
    """How one check went: `failing_rows` is exact (see docs/checks.md for what
    counts as a failing row per kind); `errored` is True when the check itself could not run."""

    name: str
    kind: str
    severity: str
    passed: bool
    failing_rows: int = 0
    detail: str = ""
    seconds: float = 0.0
    errored: bool = False

    @property
    def status(self) -> str:
        """`pass`, `fail` (an error-severity check that did not pass) or `warn` (a warn one)."""
        return "pass" if self.passed else "fail" if self.severity == "error" else "warn"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


class Unrunnable(Exception):
    """The check cannot run on this table; the message says why and what to do."""


class _Run:
    """What the checks of one table share: the DuckDB connection, the table, the callbacks."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: pa.Table,
                 resolve: Callable[[str], pa.Table | ds.Dataset] | None,
                 to_frame: Callable[[pa.Table], Any] | None) -> None:
        self.con, self.table, self.resolve, self.to_frame = con, table, resolve, to_frame
        self.columns = list(table.schema.names)
        self._frame: Any = None

    def one(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
        return self.all(sql, params)[0]  # fetchall: DuckDB 2 refuses new work while a result is open

    def all(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()

    def require(self, columns: Iterable[str], schema: pa.Schema | None = None, what: str = "the output") -> None:
        have = list((schema or self.table.schema).names)
        missing = [c for c in columns if c not in have]
        if missing:
            raise Unrunnable(f"column(s) {missing} not in {what}; its columns are {', '.join(have)}")

    def frame(self) -> Any:
        if self._frame is None:
            self._frame = (self.to_frame or pa.Table.to_pandas)(self.table)
        return self._frame


def run_checks(checks: Iterable[Check | str | Callable[[Any], Any]], table: pa.Table, *,
               resolve: Callable[[str], pa.Table | ds.Dataset] | None = None,
               to_frame: Callable[[pa.Table], Any] | None = None) -> list[CheckResult]:
    """Run every check on `table` (a model's output) and return a result per check, in order.

    `resolve(ref)` gives the table a `relationships` check reads (`ref` is `raw.<source>` or a
    model name, as in `engine.transform.models.input_table`) as an Arrow table or dataset; `to_frame`
    turns `table` into the frame a custom check gets (default: a pandas DataFrame). Raises
    HeadwaterError only for a spec that cannot be read."""
    import duckdb

    parsed = parse_all(checks)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the CLI draws its own progress
    try:
        try:
            con.register(OUTPUT, table)
        except duckdb.Error as exc:
            raise CheckError(f"cannot check a table with columns {table.schema.names}: {exc}",
                             "return a frame with at least one column and unique column names") from exc
        run = _Run(con, table, resolve, to_frame)
        return [_run_one(check, run) for check in parsed]
    finally:
        con.close()


def _run_one(check: Check, run: _Run) -> CheckResult:
    import duckdb

    started = time.perf_counter()
    errored = False
    try:
        passed, failing, detail = EVALUATORS[check.kind](check, run)
    except (Unrunnable, duckdb.Error, HeadwaterError) as exc:
        errored, passed, failing = True, False, 0
        detail = f"could not run: {_explain(exc, run)}"
    except Exception as exc:  # noqa: BLE001 - the user's custom check raised: a failed result, not a crash
        errored, passed, failing = True, False, 0
        detail = f"could not run: {type(exc).__name__}: {exc}"
    return CheckResult(check.name, check.kind, check.severity, passed, failing, detail,
                       round(time.perf_counter() - started, 4), errored)


def _explain(exc: Exception, run: _Run) -> str:
    if isinstance(exc, HeadwaterError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, Unrunnable):
        return text
    return f"{text} (the output's columns are {', '.join(run.columns)})"


# -- one evaluator per kind: (passed, failing rows, detail) -------------------------------
Outcome = tuple[bool, int, str]


def _unique(check: Check, run: _Run) -> Outcome:
    cols = check.args["columns"]
    run.require(cols)
    keys = ", ".join(map(quote, cols))
    groups = (f"SELECT {keys}, count(*) AS hw_n FROM {OUTPUT} WHERE {_all_present(cols)} "
              f"GROUP BY {keys} HAVING count(*) > 1")
    duplicated, rows, examples = run.one(  # one pass: the count and the most repeated keys
        f"SELECT count(*), coalesce(sum(hw_n), 0), max_by(row({keys}, hw_n), hw_n, {EXAMPLES}) FROM ({groups})")
    if not rows:
        return True, 0, ""
    shown = "; ".join(", ".join(f"{c}={_show(v)}" for c, v in zip(cols, ex[:-1])) + f" ({ex[-1]} rows)"
                      for ex in examples)
    return False, int(rows), f"{int(rows):,} rows share {duplicated:,} duplicated key(s), e.g. {shown}"


def _not_null(check: Check, run: _Run) -> Outcome:
    cols = check.args["columns"]
    run.require(cols)
    per_column = ", ".join(f"count(*) FILTER (WHERE {quote(c)} IS NULL)" for c in cols)
    counts = run.one(f"SELECT count(*) FILTER (WHERE NOT ({_all_present(cols)})), {per_column} FROM {OUTPUT}")
    if not counts[0]:
        return True, 0, ""
    nulls = ", ".join(f"{c}: {n:,}" for c, n in zip(cols, counts[1:]) if n)
    return False, int(counts[0]), f"{counts[0]:,} rows with a null ({nulls})"


def _accepted_values(check: Check, run: _Run) -> Outcome:
    column, values = check.args["column"], list(check.args["values"])
    run.require([column])
    value = f"CAST({quote(column)} AS VARCHAR)" if isinstance(values[0], str) else quote(column)
    where = f"{quote(column)} IS NOT NULL AND NOT ({value} IN ({', '.join('?' * len(values))}))"
    (failing,) = run.one(f"SELECT count(*) FROM {OUTPUT} WHERE {where}", values)
    if not failing:
        return True, 0, ""
    examples = run.all(f"SELECT {quote(column)}, count(*) AS n FROM {OUTPUT} WHERE {where} "
                       f"GROUP BY 1 ORDER BY n DESC LIMIT {EXAMPLES}", values)
    shown = ", ".join(f"{_show(v)} ({n:,})" for v, n in examples)
    return False, int(failing), f"{failing:,} rows with other values, e.g. {shown}"


def _relationships(check: Check, run: _Run) -> Outcome:
    column, to, target = check.args["column"], check.args["to"], check.args["field"]
    run.require([column])
    if run.resolve is None:
        raise Unrunnable(f"no way to read {to!r} was given (run_checks needs resolve=)")
    reference = run.resolve(to)
    run.require([target], reference.schema, what=repr(to))
    run.con.register(REFERENCE, reference)
    try:
        orphans = (f"FROM {OUTPUT} o ANTI JOIN {REFERENCE} r ON o.{quote(column)} = r.{quote(target)} "
                   f"WHERE o.{quote(column)} IS NOT NULL")
        (failing,) = run.one(f"SELECT count(*) {orphans}")
        if not failing:
            return True, 0, ""
        examples = run.all(f"SELECT DISTINCT o.{quote(column)} {orphans} LIMIT {EXAMPLES}")
    finally:
        run.con.unregister(REFERENCE)
    shown = ", ".join(_show(v) for (v,) in examples)
    return False, int(failing), f"{failing:,} rows whose {column} is not in {to}.{target}, e.g. {shown}"


def _row_count(check: Check, run: _Run) -> Outcome:
    low, high, rows = check.args["min"], check.args["max"], run.table.num_rows
    if low is not None and rows < low:
        return False, low - rows, f"{rows:,} rows, expected at least {low:,}"
    if high is not None and rows > high:
        return False, rows - high, f"{rows:,} rows, expected at most {high:,}"
    return True, 0, f"{rows:,} rows"


def _expression(check: Check, run: _Run) -> Outcome:
    sql = check.args["sql"]
    (_, kind, *_rest) = run.one(f"DESCRIBE SELECT ({sql}) AS hw_value FROM {OUTPUT}")
    if kind != "BOOLEAN":
        raise Unrunnable(f"the expression is {kind}, not true/false: write a condition that each "
                         "row must meet, e.g. likes_7d >= 0")
    (failing,) = run.one(f"SELECT count(*) FROM {OUTPUT} WHERE ({sql}) IS NOT TRUE")
    return not failing, int(failing), f"{failing:,} rows where it is false or null" if failing else ""


def _custom(check: Check, run: _Run) -> Outcome:
    result = check.args["fn"](run.frame())
    if hasattr(result, "compute"):  # a Dask collection: bring the answer home
        result = result.compute()
    import numpy as np

    if isinstance(result, (bool, np.bool_)):
        return bool(result), 0, "" if result else "returned False"
    if isinstance(result, (int, np.integer)):
        if result < 0:
            raise Unrunnable(f"returned {result}: a count of failing rows cannot be negative")
        return result == 0, int(result), f"{int(result):,} failing rows" if result else ""
    passing = _passing_rows(result, run.table.num_rows)
    failing = run.table.num_rows - passing
    return not failing, failing, f"{failing:,} rows where it is False or null" if failing else ""


def _passing_rows(mask: Any, rows: int) -> int:
    """How many entries of a boolean mask (pandas/cuDF Series, NumPy or Arrow array) are True."""
    if isinstance(mask, list):
        mask = pa.array(mask)
    if isinstance(mask, (pa.Array, pa.ChunkedArray)):
        dtype = mask.type
    elif hasattr(mask, "dtype") and hasattr(mask, "__len__"):
        dtype = mask.dtype
    else:
        raise Unrunnable(f"returned a {type(mask).__name__}: return a boolean Series or array "
                         "(True = the row passes), a count of failing rows, or a bool")
    if "bool" not in str(dtype):
        raise Unrunnable(f"returned values of type {dtype}, not booleans (True = the row passes)")
    if len(mask) != rows:
        raise Unrunnable(f"returned {len(mask):,} values for {rows:,} rows: return one per row")
    if isinstance(mask, (pa.Array, pa.ChunkedArray)):
        import pyarrow.compute as pc

        return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)
    if hasattr(mask, "fillna"):  # pandas, cuDF: a null counts as not passing
        return int(mask.fillna(False).astype(bool).sum())
    return int(mask.sum())


EVALUATORS: dict[str, Callable[[Check, _Run], Outcome]] = {
    "unique": _unique, "not_null": _not_null, "accepted_values": _accepted_values,
    "relationships": _relationships, "row_count": _row_count, "expression": _expression,
    "custom": _custom,
}


# -- results ------------------------------------------------------------------------------
def failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The error-severity checks that did not pass (these stop a model's build)."""
    return [r for r in results if r.status == "fail"]


def describe(results: Iterable[CheckResult]) -> str:
    """One line for the run summary: `5 checks: 4 passed, 1 failed (not_null(user_id): 2 rows)`."""
    results = list(results)
    if not results:
        return "no checks"
    parts = [f"{sum(r.passed for r in results)} passed"]
    for status, label in (("warn", "warned"), ("fail", "failed")):
        hit = [r for r in results if r.status == status]
        if hit:
            parts.append(f"{len(hit)} {label} ({'; '.join(f'{r.name}: {_outcome(r)}' for r in hit)})")
    return f"{len(results)} check{'s' if len(results) > 1 else ''}: " + ", ".join(parts)


def failure_error(model: str, results: Iterable[CheckResult]) -> CheckError | None:
    """The error for a model whose error-severity checks failed, or None when none did."""
    failed = failures(results)
    if not failed:
        return None
    listed = "; ".join(f"{r.name}: {r.detail or _outcome(r)}" for r in failed)
    return CheckError(f"model {model!r}: {len(failed)} check(s) failed: {listed}",
                      "the model's previous version stays in place; fix the model or its data, "
                      "or prefix the check with 'warn: ' to only report it")


def _outcome(result: CheckResult) -> str:
    if result.errored:
        return "could not run"
    return f"{result.failing_rows:,} rows" if result.failing_rows else "failed"


def quote(name: str) -> str:
    """`name` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _all_present(columns: Iterable[str]) -> str:
    return " AND ".join(f"{quote(c)} IS NOT NULL" for c in columns)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
