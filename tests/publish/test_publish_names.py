"""Warehouse names on DuckDB, PostgreSQL and SQLite: a publish never replaces (nor appends to,
nor merges into) a table Headwater did not create unless told to, and no table or column name
can inject SQL: a hostile table name is refused before any statement runs, a hostile column
name is quoted and lands as a column called exactly that."""
from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from engine.errors import ConfigError, WarehouseError
from engine.publish import BOOKKEEPING, Warehouse

HOSTILE_COLUMNS = ['x"; DROP TABLE victim; --', "y'); DELETE FROM victim; --", "z` OR 1=1 --", "Robert'); --"]
HOSTILE_TABLES = ['t"; DROP TABLE victim; --', "t; DROP TABLE victim", "victim--", "t' OR '1'='1", "a.b"]


def user_table(wh: Warehouse, name: str, rows: list[tuple[int, str]]) -> None:
    """A table made by someone else (no bookkeeping row)."""
    with wh.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER, note VARCHAR(40))")
        for row in rows:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (:id, :note)"), {"id": row[0], "note": row[1]})


def read(wh: Warehouse, name: str) -> list[tuple]:
    with wh.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {name}").fetchall())


@pytest.mark.parametrize("mode", ["replace", "append", "merge"])
def test_a_table_headwater_did_not_create_is_refused(wh: Warehouse, mode: str) -> None:
    user_table(wh, "sales", [(7, "kept")])
    new = pa.table({"id": [1, 2], "note": ["a", "b"]})
    with pytest.raises(WarehouseError, match="has a table 'sales' that Headwater did not create") as err:
        wh.publish("sales", new, lake_version=1, run_id="r1", mode=mode, primary_key="id")
    assert not err.value.retryable and "replace_existing=True" in str(err.value)
    assert read(wh, "sales") == [(7, "kept")]
    assert wh.published_version("sales") is None

    wh.publish("sales", new, lake_version=1, run_id="r1", mode=mode, primary_key="id", replace_existing=True)
    want = [(1, "a"), (2, "b")] if mode == "replace" else [(1, "a"), (2, "b"), (7, "kept")]
    assert read(wh, "sales") == want
    assert wh.published_version("sales") == 1
    # Headwater's own table from now on
    wh.publish("sales", pa.table({"id": [3], "note": ["c"]}), lake_version=2, run_id="r2", mode=mode,
               primary_key="id")
    assert wh.published_version("sales") == 2


def test_a_table_of_a_name_only_other_models_published_is_still_foreign(wh: Warehouse) -> None:
    wh.publish("mine", pa.table({"id": [1], "note": ["x"]}), lake_version=1, run_id="r1")
    user_table(wh, "theirs", [(9, "z")])
    with pytest.raises(WarehouseError, match="'theirs' that Headwater did not create"):
        wh.publish("theirs", pa.table({"id": [1], "note": ["x"]}), lake_version=1, run_id="r1")
    assert read(wh, "theirs") == [(9, "z")]


@pytest.mark.parametrize("name", HOSTILE_TABLES)
def test_hostile_table_names_are_refused_before_any_sql(wh: Warehouse, name: str) -> None:
    user_table(wh, "victim", [(1, "still here")])
    statements: list[str] = []
    sa.event.listen(wh.engine, "before_cursor_execute", lambda c, cur, stmt, *rest: statements.append(stmt))
    with pytest.raises(ConfigError, match="invalid warehouse table name"):
        wh.publish(name, pa.table({"id": [1]}), lake_version=1, run_id="r1")
    with pytest.raises(ConfigError, match="invalid warehouse table name"):
        wh.published_version(name)
    assert statements == []
    assert read(wh, "victim") == [(1, "still here")]


def test_hostile_column_names_are_quoted(wh: Warehouse) -> None:
    user_table(wh, "victim", [(1, "still here")])
    data = pa.table({c: [i, i + 10] for i, c in enumerate(HOSTILE_COLUMNS)} | {"id": [1, 2]})
    for mode in ("replace", "append", "merge"):
        wh.publish("t", data, lake_version=1, run_id="r1", mode=mode, primary_key="id")
    assert read(wh, "victim") == [(1, "still here")]
    with wh.engine.connect() as conn:
        columns = list(conn.exec_driver_sql("SELECT * FROM t WHERE 1 = 0").keys())
        assert sorted(columns) == sorted(HOSTILE_COLUMNS + ["id"])
        quote = wh.engine.dialect.identifier_preparer.quote
        got = conn.exec_driver_sql(f"SELECT {quote(HOSTILE_COLUMNS[0])}, id FROM t ORDER BY id").fetchall()
        assert [tuple(r) for r in got] == [(0, 1), (10, 2)]  # merged on id twice: still one row per key
        assert sa.inspect(conn).has_table(BOOKKEEPING)


@pytest.mark.parametrize("name", ["views", "tables", "columns", "schemata"])
def test_names_of_catalog_views_are_free_for_models(wh: Warehouse, name: str) -> None:
    """information_schema's and pg_catalog's views are no user tables (duckdb-engine's has_table
    finds them): a model called `views` publishes, in every mode."""
    for mode in ("replace", "append", "merge"):
        wh.publish(name, pa.table({"id": [1]}), lake_version=1, run_id="r1", mode=mode, primary_key="id")
    assert wh.published_version(name) == 1
    assert wh.query(f"SELECT count(*) AS n FROM {name}").to_pydict() == {"n": [1]}
