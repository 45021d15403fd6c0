"""`python -m flows.elt` and `headwater serve` take the selection as `headwater run` does:
`-s/--select` and `--exclude` repeatable, `--full-refresh` a plain flag; and repeated selectors
reach the flow (a real flow run selects exactly the sources named)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.lake import Lake
from flows import deploy
from flows import elt as elt_module

OPTIONS = ["pipeline.py", "-s", "a", "--select", "+b", "--exclude", "c", "--exclude", "tag:d", "--full-refresh"]


def test_elt_parses_repeated_selectors_and_a_plain_flag() -> None:
    args = elt_module.parser().parse_args(OPTIONS)
    assert (args.select, args.exclude, args.full_refresh) == (["a", "+b"], ["c", "tag:d"], True)
    plain = elt_module.parser().parse_args(["pipeline.py"])
    assert (plain.select, plain.exclude, plain.full_refresh) == (None, None, False)
    with pytest.raises(SystemExit):
        elt_module.parser().parse_args(["pipeline.py", "--no-full-refresh"])


def test_serve_passes_repeated_selectors_to_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[Any, ...]] = []
    monkeypatch.setattr(deploy, "serve", lambda *args: served.append(args))
    result = CliRunner().invoke(app, ["serve", *OPTIONS, "--name", "x"])
    assert result.exit_code == 0, result.output
    (args,) = served
    pipeline, name, cron, select, exclude, full_refresh = args[:6]
    assert (pipeline, name, cron, full_refresh) == ("pipeline.py", "x", None, True)
    assert (select, exclude) == (["a", "+b"], ["c", "tag:d"])


@pytest.mark.prefect
def test_elt_runs_only_the_sources_selected_twice(prefect_server: dict[str, Any], flow_shop: dict[str, Any],
                                                  tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    code = elt_module.main([flow_shop["path"], "-s", "raw.customers", "--select", "raw.orders",
                            "--lake", str(lake), "--warehouse", f"duckdb:///{tmp_path / 'wh.duckdb'}",
                            "--backend", "pandas"])
    assert code == 0
    assert sorted(Lake(str(lake)).tables()) == ["raw.customers", "raw.orders"]
    assert not (tmp_path / "wh.duckdb").exists()  # no model selected: nothing built or published


@pytest.mark.prefect
def test_elt_with_a_warehouse_it_cannot_reach_fails_before_anything_lands(
        prefect_server: dict[str, Any], flow_shop: dict[str, Any], tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (tmp_path / "not_a_database").write_text("plain text, not DuckDB")
    state = elt_module.elt(flow_shop["path"], lake=str(lake), warehouse=f"duckdb:///{tmp_path / 'not_a_database'}",
                           backend="pandas", return_state=True)
    assert state.is_failed()
    assert "warehouse" in str(state.message) or "warehouse" in repr(state.result(raise_on_failure=False))
    assert not lake.exists() or Lake(str(lake)).tables() == []  # nothing landed
