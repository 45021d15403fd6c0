"""Every SQL model of the test suite (tests/support/sql_models.py) on every engine SQL runs on:
DuckDB and polars on this CPU, cudf-polars on a GPU (skipped without one). Each engine's rows
are checked against rows computed in plain Python from the same inputs, so equal engines are
equal to an independent answer, not only to each other."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from engine import Config, Runner
from engine.transform.backends.kinds import cudf_polars_problem
from tests.support import sql_models

ENGINES = ["duckdb", "polars"]


def rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def run_all(root: Path, sql_engine: str, backend: str = "pandas", days: int = 2,
            runner: Runner | None = None) -> Runner:
    sql_models.write_inputs(root, days)
    runner = runner or Runner(sql_models.pipeline(root),
                              Config.load(root, lake=str(root / "lake"), backend=backend, sql_engine=sql_engine))
    summary = runner.run()
    assert summary.ok, [(s.name, s.error) for s in summary.steps if s.status == "failed"]
    return runner


@pytest.mark.parametrize("engine", ENGINES)
def test_every_sql_model_gives_the_independently_computed_rows(tmp_path: Path, engine: str) -> None:
    runner = run_all(tmp_path, engine)
    again = {s.name: s.status for s in runner.run().steps if s.kind == "model"}
    assert again["likes_per_user"] == again["top_users"] == "unchanged"  # events unchanged: nothing to build
    for name in sql_models.SQL_MODELS:
        assert rows(runner.lake.read(f"models.{name}")) == sql_models.expected(name), name
        assert runner.lake.history(f"models.{name}")[0]["backend"] == engine


def test_duckdb_and_polars_agree_after_new_rows_land(tmp_path: Path) -> None:
    """Day 1 built, day 2 lands, rebuilt: both engines end where the expectation does."""
    outs = {}
    for engine in ENGINES:
        root = tmp_path / engine
        root.mkdir()
        runner = run_all(root, engine, days=1)
        assert rows(runner.lake.read("models.likes_per_user")) == sql_models.expected("likes_per_user", days=1)
        run_all(root, engine, days=2, runner=runner)
        outs[engine] = {n: rows(runner.lake.read(f"models.{n}")) for n in sql_models.SQL_MODELS}
    assert outs["duckdb"] == outs["polars"]
    assert outs["duckdb"] == {n: sql_models.expected(n) for n in sql_models.SQL_MODELS}


NO_GPU = cudf_polars_problem()


@pytest.mark.gpu
@pytest.mark.skipif(bool(NO_GPU), reason=f"{NO_GPU} (pip install 'headwater[gpu]' on a GPU machine)")
def test_every_sql_model_on_cudf_polars_equals_the_cpu_answer(tmp_path: Path) -> None:
    """On the GPU, with raise_on_fail: a query cudf-polars cannot run fails instead of quietly
    running on the CPU."""
    from engine.transform.backends.polars import PolarsEngine

    runner = Runner(sql_models.pipeline(tmp_path),
                    Config.load(tmp_path, lake=str(tmp_path / "lake"), backend="cudf", sql_engine="polars"))
    runner._engines["sql"] = (PolarsEngine(gpu=True, raise_on_fail=True), "test: GPU, raise_on_fail")
    run_all(tmp_path, "polars", runner=runner)
    for name in sql_models.SQL_MODELS:
        assert rows(runner.lake.read(f"models.{name}")) == sql_models.expected(name), name
        assert runner.lake.history(f"models.{name}")[0]["backend"] == "polars-gpu"
