"""The docs cannot lie: every runnable block of every page runs (docs/contributing.md, "Runnable
examples"), pages with pandas-API models run on pandas and on Dask with equal tables, and the
site builds with `mkdocs build --strict` (a broken link or anchor fails)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from engine.runs.compare import differences
from tests.docs.runnable import DOCS, ROOT, backends, blocks, environment, missing_lines, pandas_api_models, run_page

PAGES = sorted(p for p in DOCS.glob("*.md") if any(b.kind != "output" for b in blocks(p)))
# the examples the docs must keep runnable: the quickstart, a SQL model, a polars model, a
# materialization, a check
MUST_RUN = {
    "quickstart.md": ["headwater demo --photos 300 --users 60 --log-days 8"],
    "models.md": ["sql_model(", 'frame="polars"', "-- materialized: merge"],
    "materializations.md": ['materialized="incremental"', 'materialized="merge"'],
    "checks.md": ["checks=["],
}


def model_tables(folder: Path) -> dict[str, pa.Table]:
    """Every Delta table under a `models` zone in `folder` (any lake the page made), by path,
    without Headwater's `_hw_` load columns (when and by which run: they differ by run)."""
    out = {}
    for log in sorted(folder.glob("**/models/*/_delta_log")):
        table = DeltaTable(str(log.parent)).to_pyarrow_table()
        out[str(log.parent.relative_to(folder))] = table.drop_columns(
            [c for c in table.column_names if c.startswith("_hw_")])
    return out


def test_the_required_examples_are_runnable() -> None:
    for page, needles in MUST_RUN.items():
        code = "".join(b.code for b in blocks(DOCS / page) if b.kind in ("run", "file"))
        for needle in needles:
            assert needle in code, f"docs/{page} has no runnable block with {needle!r}"


def test_pages_with_pandas_api_models_also_run_on_dask() -> None:
    for page in PAGES:
        models = [m for b in blocks(page) if b.kind in ("run", "file") for m in pandas_api_models(b)]
        if models:
            assert "dask" in backends(page), (
                f"docs/{page.name} runs pandas-API models ({models[0].splitlines()[0]} …): add "
                "<!-- runnable-backends: pandas dask --> so they are checked on Dask too")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_runnable_blocks_run(page: Path, tmp_path: Path) -> None:
    """The page's blocks in a fresh folder per backend (the backends in parallel: most of the
    time is each command's own start); every model table equal to the pandas run's."""
    names = backends(page)
    with ThreadPoolExecutor(len(names)) as pool:
        runs = [pool.submit(run_page, page, tmp_path / name, name, reference=name == names[0]) for name in names]
        for run in runs:
            run.result()
    reference = model_tables(tmp_path / names[0])
    for name in names[1:]:
        other = model_tables(tmp_path / name)
        assert sorted(other) == sorted(reference), f"{name} made other model tables than pandas"
        for path, table in reference.items():
            assert table.num_rows, f"{path} is empty: the example shows nothing"
            diff = differences(table, other[path])
            assert not diff, f"docs/{page.name}: {path} differs between pandas and {name}: {diff}"


def test_the_quickstart_shows_the_readme_starter_pipeline() -> None:
    """The quickstart shows the README's starter pipeline, which tests/runs/test_readme_pipeline.py
    runs (on files of its own): the copy must not drift from the tested block."""
    from tests.runs.test_readme_pipeline import starter_code

    shown = [b.code for b in blocks(DOCS / "quickstart.md", every=True) if b.lang == "python"]
    assert starter_code() in shown, "docs/quickstart.md must show README.md's starter pipeline as it is"


def test_output_lines_are_matched_in_order_with_ellipses() -> None:
    printed = "step  table   status\nload  raw.users   landed   60   0   0.02   rows\nlanded 9 rows; lake /x/lake\n"
    assert missing_lines("load raw.users landed 60 0\n…\nlanded 9 rows; lake …/lake", printed) == []
    assert missing_lines("landed 9 rows\nload raw.users", printed) == ["load raw.users"]  # order counts
    assert missing_lines("load raw.users landed 61", printed) == ["load raw.users landed 61"]


def test_a_mistyped_marker_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- runable -->\n```bash\nfalse\n```\n")
    with pytest.raises(ValueError, match="not a runnable marker"):
        blocks(page)
    page.write_text("<!-- runnable -->\n\n```bash\nfalse\n```\n")
    with pytest.raises(ValueError, match="right before a fenced block"):
        blocks(page)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[dev]')")
@pytest.mark.timeout(300)
def test_the_site_builds_strict(tmp_path: Path) -> None:
    env = environment("pandas") | {"NO_MKDOCS_2_WARNING": "1"}
    env.pop("HEADWATER_BACKEND")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "headwater run [OPTIONS] PIPELINE" in cli and "--full-refresh" in cli  # the generated reference
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()
    assert (tmp_path / "site" / "bench" / "RESULTS" / "index.html").is_file()
    assert not any((tmp_path / "site").glob("**/hooks.py")), "the hook is no page"
    assert os.path.getsize(tmp_path / "site" / "img" / "prefect-lineage.png") > 10_000
