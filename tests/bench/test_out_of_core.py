"""The out-of-core ELT-H entry end to end at a tiny scale: real tpchgen-cli data landed by
Headwater in its own process, the models built and published on the dask backend against a real
2-worker LocalCluster, and the warehouse checked against DuckDB SQL on the same files."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.elt_h import data, out_of_core
from bench.elt_h.compare import read_outputs
from engine.errors import HeadwaterError

SCALE = 0.01


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, dict[str, pa.Table]]:
    work = tmp_path_factory.mktemp("ooc")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADWATER_BENCH_CACHE", str(tmp_path_factory.mktemp("tpch")))
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        tables = {t: pq.read_table(p) for t, p in data.paths(SCALE, "parquet").items()}
        out = out_of_core.run(SCALE, work, workers=2, memory_limit="1GB")
    return out, work, tables


def test_dask_outputs_equal_duckdb_and_the_source_rows(result: tuple) -> None:
    out, work, tables = result
    li, orders, customer = tables["lineitem"], tables["orders"], tables["customer"]
    assert out["land"]["rows"] == {t: tables[t].num_rows for t in data.TABLES}
    ship = li.column("l_shipdate")
    picked = li.filter(pc.and_(pc.and_(pc.greater_equal(ship, date(1995, 1, 1)), pc.less(ship, date(1996, 1, 1))),
                               pc.is_in(li.column("l_shipmode"), pa.array(["MAIL", "SHIP"]))))
    wide_rows = picked.join(orders, "l_orderkey", "o_orderkey").join(customer, "o_custkey", "c_custkey").num_rows
    assert wide_rows > 0
    assert out["dask"]["rows"]["wide"] == out["equal_rows"]["wide"] == wide_rows
    assert out["dask"]["rows"]["q3"] == 10
    dask_q1 = read_outputs(work / "warehouse.duckdb")["q1"]
    shipped = li.filter(pc.less_equal(ship, date(1998, 9, 2)))
    assert pc.sum(dask_q1.column("count_order")).as_py() == shipped.num_rows
    assert pc.sum(dask_q1.column("sum_qty")).as_py() == pytest.approx(pc.sum(shipped.column("l_quantity")).as_py())


def test_every_worker_and_landing_peak_memory_is_measured(result: tuple) -> None:
    out = result[0]
    workers = out["dask"]["workers"]
    assert len(workers) == 2
    for w in workers.values():
        assert w["peak_rss_mb"] > 0 and w["sampled_peak_mb"] > 0 and w["spilled_mb"] >= 0
        assert w["sampled_peak_mb"] <= w["peak_rss_mb"] + 1  # a sample never exceeds the high-water mark
        assert not w["restarted"]
    assert out["dask"]["client_peak_rss_mb"] > 0 and out["land"]["peak_rss_mb"] > 0
    assert set(out["dask"]["seconds"]) == {f"{k} {m}" for m in ("q1", "q3", "wide") for k in ("model", "publish")}


@pytest.mark.parametrize("workers, limit, wrong", [(0, "4GB", "--workers"), (2, "lots", "--memory-limit")])
def test_bad_settings_are_refused_with_a_hint(tmp_path: Path, workers: int, limit: str, wrong: str) -> None:
    with pytest.raises(HeadwaterError) as info:
        out_of_core.run(SCALE, tmp_path, workers=workers, memory_limit=limit)
    assert wrong in str(info.value) and info.value.hint


def test_record_keeps_one_section_per_scale_between_the_markers(result: tuple, tmp_path: Path) -> None:
    out = result[0]
    md, kept = tmp_path / "RESULTS.md", tmp_path / "results.json"
    md.write_text("# Benchmark results\n\n<!-- elt-h:start -->\nELT-H\n<!-- elt-h:end -->\n")
    for _ in range(2):  # a second record of the same scale replaces the first
        out_of_core.record(out, "python -m bench.elt_h.out_of_core --scale 0.01", md, kept)
    text = md.read_text()
    assert text.startswith("# Benchmark results\n\n<!-- elt-h:start -->\nELT-H\n<!-- elt-h:end -->")
    assert text.count(out_of_core.START) == 1 and text.count("### SF 0.01") == 1
    section = text.split(out_of_core.START, 1)[1]
    worker_rows = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(worker_rows) == 2 and all("| under (" in line for line in worker_rows)
    assert f"wide {out['equal_rows']['wide']:,} rows" in section
