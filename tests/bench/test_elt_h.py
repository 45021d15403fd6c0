"""The ELT-H benchmark harness end to end at a tiny scale: real tpchgen-cli data, every engine
(Headwater's pandas, SQL and polars models among them) in its own process on both formats,
outputs checked equal, and a perturbed output caught."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.elt_h import data, queries, report
from bench.elt_h.compare import check_equal, differences, read_outputs
from bench.elt_h.measure import measure
from engine.errors import HeadwaterError

SCALE = 0.01
ENGINES = ["headwater", "headwater-sql", "headwater-polars", "pandas", "duckdb", "polars"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tpch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADWATER_BENCH_CACHE", str(root))
        data.ensure(SCALE)
        yield root


@pytest.fixture(scope="module")
def bench_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADWATER_BENCH_CACHE", str(cache))
        records = measure([SCALE], ["parquet", "csv"], ENGINES, 1, work, keep=True)
    return records, work


def test_data_is_normalised_and_hashed(cache: Path) -> None:
    folder = cache / f"sf{SCALE:g}"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert data.sha256(folder / name) == entry["sha256"]
    for table in data.TABLES:
        schema = pq.read_schema(folder / "parquet" / f"{table}.parquet")
        assert not any(pa.types.is_decimal(t) or pa.types.is_string_view(t) for t in schema.types)
        assert pq.read_metadata(folder / "parquet" / f"{table}.parquet").num_rows == \
            manifest["files"][f"csv/{table}.csv"]["rows"]
    assert pa.types.is_float64(pq.read_schema(folder / "parquet" / "lineitem.parquet").field("l_discount").type)


def test_every_engine_lands_and_publishes_the_same_rows(cache: Path, bench_run: tuple[list[dict], Path]) -> None:
    records, _ = bench_run
    assert sorted((r["engine"], r["format"]) for r in records) == sorted(
        (e, f) for e in ENGINES for f in ("parquet", "csv"))
    folder = cache / f"sf{SCALE:g}" / "parquet"
    tables = {t: pq.read_table(folder / f"{t}.parquet") for t in data.TABLES}
    source_rows = sum(t.num_rows for t in tables.values())
    li, orders, customer = tables["lineitem"], tables["orders"], tables["customer"]
    ship = li.column("l_shipdate")
    picked = li.filter(pc.and_(pc.and_(pc.greater_equal(ship, date(1995, 1, 1)), pc.less(ship, date(1996, 1, 1))),
                               pc.is_in(li.column("l_shipmode"), pa.array(["MAIL", "SHIP"]))))
    wide_rows = picked.join(orders, "l_orderkey", "o_orderkey").join(customer, "o_custkey", "c_custkey").num_rows
    shipped = li.filter(pc.less_equal(ship, date(1998, 9, 2)))
    q1_groups = pc.count_distinct(pc.binary_join_element_wise(
        shipped.column("l_returnflag"), shipped.column("l_linestatus"), "|")).as_py()
    assert wide_rows > 0
    for r in records:
        assert r["land_rows"] == source_rows, r
        assert r["out_rows"] == wide_rows + q1_groups + 10, r
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0 and r["land_s"] > 0
    q1 = read_outputs(bench_run[1] / f"sf{SCALE:g}-csv-headwater" / "warehouse.duckdb")["q1"]
    assert pc.sum(q1.column("count_order")).as_py() == shipped.num_rows


def test_outputs_equal_and_a_perturbed_one_is_caught(bench_run: tuple[list[dict], Path]) -> None:
    work = bench_run[1]
    warehouses = {e: work / f"sf{SCALE:g}-parquet-{e}" / "warehouse.duckdb" for e in ENGINES}
    rows = check_equal(warehouses)
    assert rows["q3"] == 10 and rows["q1"] > 0
    con = duckdb.connect(str(warehouses["polars"]))
    con.execute("UPDATE wide SET l_extendedprice = l_extendedprice * (1 + 1e-12)").fetchall()
    con.close()
    check_equal(warehouses)  # within rel 1e-9: still equal
    con = duckdb.connect(str(warehouses["polars"]))
    con.execute("UPDATE q3 SET revenue = revenue * (1 + 1e-6) WHERE l_orderkey = "
                "(SELECT min(l_orderkey) FROM q3)").fetchall()
    con.close()
    with pytest.raises(HeadwaterError, match=r"polars vs headwater: q3: revenue: 1 value\(s\) differ"):
        check_equal(warehouses)


def test_the_sql_and_polars_models_equal_their_engines_and_a_change_is_caught(
        bench_run: tuple[list[dict], Path], tmp_path: Path) -> None:
    """Headwater's SQL models against DuckDB's run of the same SQL, its polars models against
    polars' run of the same queries (the harness checked every engine's outputs equal before
    recording the round), on copies of the CSV round's warehouses."""
    import shutil

    copies = {}
    for engine in ("duckdb", "headwater-sql", "headwater-polars", "polars"):
        copies[engine] = tmp_path / f"{engine}.duckdb"
        shutil.copy(bench_run[1] / f"sf{SCALE:g}-csv-{engine}" / "warehouse.duckdb", copies[engine])
    rows = check_equal(copies)
    assert rows["q3"] == 10 and rows["wide"] > 0
    for engine, output, column in (("headwater-sql", "q1", "sum_charge"), ("headwater-polars", "wide", "c_acctbal")):
        con = duckdb.connect(str(copies[engine]))
        con.execute(f"UPDATE {output} SET {column} = {column} + 1 WHERE rowid = 0").fetchall()
        con.close()
        with pytest.raises(HeadwaterError, match=rf"{engine} vs duckdb: {output}: {column}: 1 value\(s\) differ"):
            check_equal(copies)
        shutil.copy(bench_run[1] / f"sf{SCALE:g}-csv-{engine}" / "warehouse.duckdb", copies[engine])


def test_differences_names_missing_rows_and_columns() -> None:
    a = pa.table({"l_orderkey": [1, 2], "revenue": [1.0, 2.0]})
    assert differences("q3", a, a.slice(0, 1)) == ["q3: row counts differ: 2 vs 1"]
    assert "columns" in differences("q3", a, a.drop_columns(["revenue"]))[0]
    assert differences("q3", a, a.take([1, 0])) == []  # order does not matter


def test_report_tables_and_chart(bench_run: tuple[list[dict], Path], tmp_path: Path) -> None:
    records, _ = bench_run
    report.save(tmp_path / "r.json", records, {"date": "d", "machine": "m", "versions": {}, "command": "c"})
    results = report.load(tmp_path / "r.json")
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Benchmark results\n\nbefore\n\n{report.START}\nold\n{report.END}\n\nafter\n")
    report.write_markdown(md, report.markdown(results))
    text = md.read_text()
    assert "before" in text and "after" in text and "old" not in text
    for r in records:  # one row per engine and format, with its wall time (the median of one run)
        name = report.label(r["engine"])
        assert f"| {name} | {r['wall_s']:.2f} [{r['wall_s']:.2f}–{r['wall_s']:.2f}] |" in text
    assert "†" not in text  # every row from this session
    by = {(r["engine"], r["format"]): r for r in records}
    sql, duck = by["headwater-sql", "parquet"], by["duckdb", "parquet"]
    assert (f"| {SCALE:g} | parquet | Headwater SQL | DuckDB SQL | {sql['wall_s'] / duck['wall_s']:.2f}× | "
            f"{sql['transform_s'] / duck['transform_s']:.2f}× |") in text
    one = sql["wall_s"] / duck["wall_s"]  # one round: the per-round ratio is that round's
    assert f"| {one:.2f}× [{one:.2f}–{one:.2f}] |" in text
    ratio = by["headwater-polars", "csv"]["wall_s"] / by["polars", "csv"]["wall_s"]
    verdict = "met" if ratio <= 1.10 else "missed"
    assert f"| Headwater polars models end to end ≤ 1.10× polars alone | SF{SCALE:g} csv {ratio:.2f}× ({verdict})" \
        in text
    assert report.chart(results, tmp_path / "c.png").stat().st_size > 1000


def test_rows_kept_from_an_earlier_session_are_marked(bench_run: tuple[list[dict], Path], tmp_path: Path) -> None:
    """A session that re-measures some engines of a scale keeps the others' runs, dated, and a
    target that sets a re-run engine against a kept one says so."""
    records, _ = bench_run
    path = tmp_path / "r.json"
    report.save(path, records, {"date": "2026-11-29 13:30 UTC", "machine": "m", "versions": {}, "command": "c"})
    again = [r for r in records if r["engine"] not in ("pandas", "duckdb")]
    report.save(path, again, {"date": "2026-12-07 04:00 UTC", "machine": "m", "versions": {}, "command": "c2"})
    text = report.markdown(report.load(path))
    assert "| hand pandas † |" in text and "| DuckDB SQL † |" in text and "| polars |" in text
    assert "† not run in this session: hand pandas measured 2026-11-29 13:30 UTC, DuckDB SQL measured" in text
    landing = next(line for line in text.splitlines() if line.startswith("| landing at least as fast"))
    assert landing.count("†") == 6  # three Headwater engines × two formats, each against the earlier DuckDB
    assert report.chart(report.load(path), tmp_path / "c.png").stat().st_size > 1000  # ÷ DuckDB there


def test_bad_arguments_are_clear(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(HeadwaterError, match="unknown engine 'spark'"):
        measure([SCALE], ["parquet"], ["spark"], 1, tmp_path)
    with pytest.raises(HeadwaterError, match="unknown engine 'duckdb:cudf'"):
        measure([SCALE], ["parquet"], ["duckdb:cudf"], 1, tmp_path)
    assert report.label("headwater-sql:cudf") == "Headwater SQL (cudf)" and report.on_gpu("headwater-polars:cudf")
    with pytest.raises(HeadwaterError, match="--runs 0"):
        measure([SCALE], ["parquet"], ["duckdb"], 0, tmp_path)
    with pytest.raises(HeadwaterError, match="not positive"):
        data.ensure(0)
    assert queries.OUTPUTS == tuple(queries.KEYS)


def test_rounds_are_handed_over_as_they_end_and_the_budget_stops_new_ones(cache: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BENCH_CACHE", str(cache))
    seen: list[int] = []
    records = measure([SCALE], ["parquet"], ["duckdb", "polars"], 2, tmp_path,
                      after_round=lambda done: seen.append(len(done)))
    assert seen == [2, 4] and len(records) == 4  # two engines per round, saved after each round
    seen.clear()
    assert measure([SCALE], ["parquet"], ["duckdb"], 3, tmp_path, budget_s=0,
                   after_round=lambda done: seen.append(len(done))) == [] and seen == []


@pytest.mark.gpu
def test_headwater_on_cudf_gives_the_outputs_of_duckdb(cache: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU mode's job (issue 6): the frame queries on cuDF, checked equal to DuckDB SQL."""
    pytest.importorskip("cudf", reason="cuDF needs an NVIDIA GPU: bench/gpu_session.sh runs this there")
    monkeypatch.setenv("HEADWATER_BENCH_CACHE", str(cache))
    records = measure([SCALE], ["parquet"], ["headwater:cudf", "duckdb"], 1, tmp_path)
    assert {r["engine"] for r in records} == {"headwater:cudf", "duckdb"}
    assert len({r["out_rows"] for r in records}) == 1


def test_a_gpu_machines_results_fill_their_own_section(bench_run: tuple[list[dict], Path], tmp_path: Path) -> None:
    """A GPU session's results (bench/gpu_session.sh) go to elt_h_gpu_results.json and their own
    RESULTS.md section, beside this machine's; ratios are to DuckDB and the pandas backend."""
    records, _ = bench_run
    as_gpu = {"polars": "headwater:cudf", "headwater": "headwater", "duckdb": "duckdb"}  # polars stands in
    gpu = [{**r, "engine": as_gpu[r["engine"]]} for r in records if r["engine"] in as_gpu]
    path = tmp_path / "elt_h_gpu_results.json"
    report.save(path, gpu, {"date": "d", "machine": "m, GPU: H200", "versions": {}, "command": "c"})
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Benchmark results\n\n{report.START}\ncpu tables\n{report.END}\n")
    report.write_markdown(md, report.markdown(report.load(path), path), *report.markers(path))
    text = md.read_text()
    assert "cpu tables" in text and "<!-- elt-h-gpu:start -->" in text and "Headwater (cudf)" in text
    cudf = next(r for r in gpu if r["engine"] == "headwater:cudf" and r["format"] == "parquet")
    duck = next(r for r in gpu if r["engine"] == "duckdb" and r["format"] == "parquet")
    assert f"SF{SCALE:g} parquet {duck['wall_s'] / cudf['wall_s']:.2f}×" in text  # DuckDB wall ÷ GPU wall
    assert "hand pandas" not in text.split("<!-- elt-h-gpu:start -->")[1]
    assert report.chart(report.load(path), tmp_path / report.chart_name(path)).name == "elt_h_gpu_ratios.png"


def test_the_gpu_session_runs_every_file_with_gpu_tests() -> None:
    """bench/gpu_session.sh names the test files it runs on the GPU machine (the whole suite
    would not import there); a gpu-marked test in a file it does not name would never run."""
    root = Path(__file__).resolve().parents[2]
    script = (root / "bench" / "gpu_session.sh").read_text()
    named = {p for p in script.split() if p.startswith("tests/") and p.endswith(".py")}
    marked = {p.relative_to(root).as_posix() for p in (root / "tests").rglob("test_*.py")
              if "pytest.mark.gpu" in p.read_text()}
    assert named == marked


def test_engines_missing_at_a_larger_scale_are_named_with_their_scaled_memory() -> None:
    def record(scale: float, engine: str, peak: float) -> dict:
        return {"scale": scale, "format": "parquet", "engine": engine, "run": 0, "wall_s": 1.0, "cpu_s": 1.0,
                "land_s": 0.5, "transform_s": 0.3, "publish_s": 0.2, "land_rows": 10, "out_rows": 1,
                "peak_rss_mb": peak, "land_peak_rss_mb": peak / 2}

    records = [record(1, "pandas", 2048), record(1, "duckdb", 1024), record(10, "duckdb", 4096),
               record(10, "headwater:dask", 3072)]
    text = report.markdown({"records": records, "sessions": {"10": {"machine": "x, 2 cores, 24 GiB"}}})
    assert "Not run at SF 10: hand pandas (peak RSS 2.0 GB at SF 1, so about 20 GB here), " \
           "against this machine's 24 GiB" in text
    assert "| landing peak RSS at SF10 < 1.5 GB | SF10 parquet 1,536 MB (Headwater (dask)) |" in text


def test_an_engine_run_reports_its_own_peak_memory_not_the_harness() -> None:
    """The harness may hold hundreds of MB (comparing outputs) when it starts the next engine;
    on Linux that child's `ru_maxrss` starts at the harness's peak, its VmHWM at its own."""
    import subprocess
    import sys

    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page: resident
    code = "from bench.elt_h.stages import peak_rss_mb; print(peak_rss_mb())"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert float(out.stdout) < 300, out.stdout  # a bare interpreter with pyarrow: well under 400 MB
    del held
