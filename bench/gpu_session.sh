#!/usr/bin/env bash
# The whole GPU check of a session that is lent a GPU machine, as one device run after cuDF is
# installed (bench/RESULTS.md, "On a GPU machine"). Everything it measures lands in $OUT; each
# part is capped so that the parts before it are never lost to the run's time limit:
#   1. the card and cuDF's version                                    -> $OUT/gpu.txt
#   2. the cuDF and cudf-polars cases of the test suite (pytest -m gpu) -> $OUT/tests.log
#   3. bench/gpu_check.py: pandas vs cuDF on a 4M-row Delta table    -> $OUT/gpu_check.log
#   4. ELT-H at SF1 (Parquet): Headwater's pandas, SQL and polars models on the GPU (cuDF,
#      cudf-polars) and on the CPU, DuckDB and polars alone, 3 rounds
#   5. ELT-H at SF10 (Parquet), one round, while the budget lasts -> $OUT/elt_h_gpu_results.json
# Usage, from the project root on the device:  bash bench/gpu_session.sh [BUDGET_SECONDS]
# Then, back on the CPU machine: copy elt_h_gpu_results.json into bench/ and run
# `python -m bench.elt_h --report-only --results bench/elt_h_gpu_results.json`: the GPU tables
# get their own section of bench/RESULTS.md (and chart), beside this machine's.
set -uo pipefail
budget="${1:-480}"
started=$(date +%s)
out="${OUT:-/tmp/gpu-session}"
mkdir -p "$out"
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export HEADWATER_BENCH_CACHE="${HEADWATER_BENCH_CACHE:-/tmp/tpch}"
left() { echo $((budget - ($(date +%s) - started))); }
step() { echo "== $(date -u +%H:%M:%S) $* ($(left)s left)" | tee -a "$out/session.log"; }

step "card and versions"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import cudf, pandas, pyarrow; print('cudf', cudf.__version__, 'pandas', pandas.__version__, 'pyarrow', pyarrow.__version__)"
  python -c "import cudf_polars, polars; print('cudf-polars', cudf_polars.__version__, 'polars', polars.__version__)"
  nproc; } > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

step "cuDF test cases"
# the files holding gpu-marked tests (all of tests/ would not even import here: no Prefect, PostgreSQL driver, …)
timeout 150 python -m pytest -q -p no:cacheprovider -m gpu -rs \
    tests/transform/test_backends.py tests/transform/test_backend_equality.py tests/transform/test_features.py \
    tests/transform/test_augment.py tests/transform/test_checks.py tests/transform/test_dask_read.py \
    tests/transform/test_sql_engines.py tests/transform/test_polars_models.py tests/transform/test_history_features.py \
    tests/bench/test_elt_h.py > "$out/tests.log" 2>&1
echo "pytest exit $?" | tee -a "$out/session.log"; tail -5 "$out/tests.log"

step "gpu_check (4M rows)"
timeout 90 python bench/gpu_check.py > "$out/gpu_check.log" 2>&1
echo "gpu_check exit $?" | tee -a "$out/session.log"; tail -8 "$out/gpu_check.log"

results="$out/elt_h_gpu_results.json"
markdown="$out/RESULTS.md"
cp bench/RESULTS.md "$markdown"
elt_h() {  # scale runs engines...
    local scale=$1 runs=$2; shift 2
    local room; room=$(left)
    if [ "$room" -lt 60 ]; then step "SF$scale skipped: budget spent"; return; fi
    step "ELT-H SF$scale"
    timeout "$room" python -m bench.elt_h --scale "$scale" --runs "$runs" --format parquet \
        --engines "$@" --budget $((room / 2)) --results "$results" --markdown "$markdown" \
        --workdir /tmp >> "$out/elt_h.log" 2>&1
    echo "elt_h SF$scale exit $?" | tee -a "$out/session.log"; grep -E "^SF|error" "$out/elt_h.log" | tail -12
}
elt_h 1 3 headwater:cudf headwater-sql:cudf headwater-polars:cudf headwater headwater-sql headwater-polars duckdb polars
elt_h 10 1 headwater:cudf headwater-sql:cudf headwater-polars:cudf duckdb polars headwater-sql
step "done"
