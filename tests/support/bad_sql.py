"""Bad rows and columns in SQL sources (SQLite, whose columns take any value): what each case
creates, and what must come of it. Good rows carry ids 1, 2, …; `after` adds 1001 and 1002."""
from __future__ import annotations

from tests.support.bad_inputs import SqlCase

T = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP)"
AFTER = ("INSERT INTO t (id, name, updated_at) VALUES (1001, 'zed', '2027-01-01 00:00:00'), "
         "(1002, 'yan', '2027-01-01 00:00:01')",)
CURSOR = {"table": "t", "cursor": "updated_at"}
KEYED = {"table": "t", "cursor": "updated_at", "primary_key": "id"}


def rows(*values: str) -> str:
    return "INSERT INTO t VALUES " + ", ".join(values)


SQL_CASES: list[SqlCase] = [
    SqlCase("sql_null_cursor", (T, rows("(1, 'a', '2026-01-01 00:00:00')", "(2, 'b', NULL)")), CURSOR, (1,), 1,
            "cursor column 'updated_at' is NULL", after=AFTER, rows_in=2),
    SqlCase("sql_null_cursor_keyed", (T, rows("(1, 'a', '2026-01-01 00:00:00')", "(2, 'b', NULL)", "(3, 'c', NULL)")),
            KEYED, (1,), 2, "is NULL", after=AFTER, rows_in=3),
    SqlCase("sql_null_cursor_only", (T, rows("(1, 'a', NULL)")), CURSOR, (), 1, "is NULL", after=AFTER, rows_in=1),
    SqlCase("sql_text_in_integer", ("CREATE TABLE t (id INTEGER, n INTEGER, updated_at TIMESTAMP)",
                                    "INSERT INTO t VALUES (1, 5, '2026-01-01'), (2, 'abc', '2026-01-02')"),
            {"table": "t"}, (1,), 1, "column 'n'", rows_in=2,
            after=("INSERT INTO t VALUES (1001, 1, '2027-01-01'), (1002, 2, '2027-01-01')",)),
    SqlCase("sql_float_in_integer", ("CREATE TABLE t (id INTEGER, n INTEGER)", "INSERT INTO t VALUES (1, 5), (2, 2.5)"),
            {"table": "t"}, (1,), 1, "column 'n'", rows_in=2,
            after=("INSERT INTO t VALUES (1001, 1), (1002, 2)",)),
    SqlCase("sql_blob_in_text", ("CREATE TABLE t (id INTEGER, s TEXT)", "INSERT INTO t VALUES (1, 'x'), (2, X'FF00')"),
            {"table": "t"}, (1,), 1, "column 's'", rows_in=2,
            after=("INSERT INTO t VALUES (1001, 'a'), (1002, 'b')",)),
    SqlCase("sql_date_year_zero", ("CREATE TABLE t (id INTEGER, d DATE)",
                                   "INSERT INTO t VALUES (1, '2026-01-01'), (2, '0000-01-01')"),
            {"table": "t"}, (1,), 1, "column 'd'", rows_in=2,
            after=("INSERT INTO t VALUES (1001, '2027-01-01'), (1002, '2027-01-02')",)),
    SqlCase("sql_datetime_garbage", ("CREATE TABLE t (id INTEGER, at DATETIME)",
                                     "INSERT INTO t VALUES (1, '2026-01-01 10:00:00'), (2, 'yesterday')"),
            {"table": "t"}, (1,), 1, "column 'at'", rows_in=2,
            after=("INSERT INTO t VALUES (1001, '2027-01-01 00:00:00'), (1002, '2027-01-01 00:00:00')",)),
    SqlCase("sql_mixed_query_column", ("CREATE TABLE t (id INTEGER, v)",
                                       "INSERT INTO t VALUES (1, 5), (2, 'x'), (3, 7)"),
            {"query": "SELECT id, v FROM t"}, (1, 3), 1, "column 'v'", rows_in=3,
            after=("INSERT INTO t VALUES (1001, 1), (1002, 2)",)),
    SqlCase("sql_numeric_wider_than_38", ("CREATE TABLE t (id INTEGER, amount NUMERIC(50, 2))",
                                          "INSERT INTO t VALUES (1, 12.5)"),
            {"table": "t"}, (1,), rows_in=1, values={"amount": ("12.50",)},
            after=("INSERT INTO t VALUES (1001, 1), (1002, 2)",)),
    SqlCase("sql_time_column", ("CREATE TABLE t (id INTEGER, at TIME)", "INSERT INTO t VALUES (1, '08:30:00')"),
            {"table": "t"}, (1,), rows_in=1, values={"at": ("08:30:00.000000",)},
            after=("INSERT INTO t VALUES (1001, '09:00:00'), (1002, '10:00:00')",)),
    SqlCase("sql_hw_column", ("CREATE TABLE t (id INTEGER, _hw_run_id TEXT)", "INSERT INTO t VALUES (1, 'x')"),
            {"table": "t"}, (), error="_hw_run_id"),
    # SQLite names a repeated column of a subquery itself (name:1), so these land; PostgreSQL
    # does not, and refuses them (tests/sources/test_sql_bad_rows.py)
    SqlCase("sql_case_duplicate_columns", ("CREATE TABLE t (id INTEGER, name TEXT)", "INSERT INTO t VALUES (1, 'x')"),
            {"query": 'SELECT id, name, name AS "NAME" FROM t'}, (1,), rows_in=1, values={"NAME:1": ("x",)},
            after=("INSERT INTO t VALUES (1001, 'a'), (1002, 'b')",)),
    SqlCase("sql_duplicate_columns", ("CREATE TABLE t (id INTEGER, name TEXT)", "INSERT INTO t VALUES (1, 'x')"),
            {"query": "SELECT id, name, name FROM t"}, (1,), rows_in=1, values={"name:1": ("x",)},
            after=("INSERT INTO t VALUES (1001, 'a'), (1002, 'b')",)),
]
