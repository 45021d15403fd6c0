"""Every example model on every backend present gives the pandas backend's result.

The raw tables are landed once; each backend then runs the whole model DAG in memory (its own
outputs feeding its downstream models), and every model's output is compared with pandas'
value for value, ignoring row order, floats within `engine.runs.compare.FLOAT_RTOL` (1e-9
relative: a GPU or a partitioned sum may add in another order). On a machine without a GPU
the cuDF case skips with the reason; the GPU session runs it (bench/RESULTS.md).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from engine import Config, HeadwaterError, Runner
from engine.demo.generate import generate
from engine.demo.pipeline import make_pipeline
from engine.lake import Lake
from engine.pipeline import Pipeline
from engine.runs.compare import FLOAT_RTOL, differences
from engine.transform.backends import Backend, resolve
from engine.transform.models import Context

OTHER_BACKENDS = [pytest.param("cudf", marks=pytest.mark.gpu), "dask"]


def run_models(pipeline: Pipeline, lake: Lake, backend: Backend) -> dict[str, pa.Table]:
    """Every pandas-API model of `pipeline` on `backend`, in DAG order, over the lake's raw
    tables (its SQL and polars models run on their own engines: tests/transform/test_sql_engines.py)."""
    out: dict[str, pa.Table] = {}
    for model in pipeline.ordered_models:
        if model.kind != "pandas":
            continue
        frames: dict[str, Any] = {}
        for param, ref in model.inputs.items():
            frames[param] = (backend.read(lake.table(str(ref))) if ref.zone == "raw"
                             else backend.from_arrow(out[ref.name]))
        if model.wants_ctx:
            frames["ctx"] = Context(model.name, "equality", backend.name, backend.xp)
        out[model.name] = backend.to_arrow(model(**frames))
    return out


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Lake, dict[str, pa.Table]]:
    root = tmp_path_factory.mktemp("equality")
    generate(root / "data", seed=11, users=60, photos=150, days=10)
    pipeline = make_pipeline(root / "data")
    runner = Runner(pipeline, Config.load(root, lake=str(root / "lake"), backend="pandas"))
    for source in pipeline.sources:
        step = runner.load(source.name, "equality-load")
        assert step.status == "landed", step.detail
    pandas_out = run_models(pipeline, runner.lake, resolve("pandas")[0])
    assert all(t.num_rows for t in pandas_out.values()), {k: t.num_rows for k, t in pandas_out.items()}
    return pipeline, runner.lake, pandas_out


def backend_or_skip(name: str) -> Backend:
    if name == "cudf":
        pytest.importorskip("cudf", reason="cuDF is not installed (no NVIDIA GPU here); "
                                           "the GPU session runs this test")
    try:
        return resolve(name)[0]
    except HeadwaterError as exc:
        pytest.skip(f"backend {name!r} cannot run here: {exc}")


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_every_example_model_equals_pandas(name: str, landed: tuple[Pipeline, Lake, dict[str, pa.Table]]) -> None:
    pipeline, lake, expected = landed
    backend = backend_or_skip(name)
    try:
        got = run_models(pipeline, lake, backend)
    finally:
        close = getattr(backend, "close", None)
        if close:
            close()
    assert set(got) == set(expected)
    for model, table in expected.items():
        assert got[model].num_rows == table.num_rows, model
        diff = differences(table, got[model], rtol=FLOAT_RTOL)
        assert not diff, f"{model} on {name} differs from pandas: {diff}"


def test_the_comparison_catches_a_difference(landed: tuple[Pipeline, Lake, dict[str, pa.Table]]) -> None:
    """The equality above is not vacuous: a changed value, a float off by more than the
    tolerance, or a dropped row is reported."""
    _, _, expected = landed
    table = next(t for t in expected.values() if any(pa.types.is_floating(f.type) for f in t.schema))
    col = next(f.name for f in table.schema if pa.types.is_floating(f.type))
    values = table.column(col).to_pylist()
    i = next(j for j, v in enumerate(values) if v)
    values[i] = values[i] * (1 + 1e-6)
    nudged = table.set_column(table.column_names.index(col), col, pa.array(values, table.schema.field(col).type))
    assert differences(table, nudged)
    values[i] = table.column(col)[i].as_py() * (1 + 1e-12)
    within = table.set_column(table.column_names.index(col), col, pa.array(values, table.schema.field(col).type))
    assert not differences(table, within)
    assert differences(table, table.slice(1))
