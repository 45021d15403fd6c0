"""One CLI convention: `--version`, help on every option and argument, `-s/--select`, `--exclude`
and `--full-refresh` spelled alike on `run` and `serve`, `demo --lake/--warehouse`; and messages
that say what to do: `query` before anything is published, a bad `--select` (no table first),
`doctor` with a warehouse it cannot reach (no stray error line)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from engine.cli import app
from engine.lake import Lake
from tests.support.shop import write_pipeline

cli = CliRunner()


def commands() -> dict[str, Any]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def option(command: str, name: str) -> Any:
    (found,) = [p for p in commands()[command].params if p.name == name]
    return found


def test_version() -> None:
    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"headwater {metadata.version('headwater')}\n"


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{name} {p.name}" for name, command in commands().items() for p in command.params
               if not (p.help or "").strip()]
    assert not missing


@pytest.mark.parametrize("command", ["run", "serve"])
def test_selection_options_are_spelled_alike(command: str) -> None:
    select, exclude, refresh = (option(command, n) for n in ("select", "exclude", "full_refresh"))
    assert sorted(select.opts) == ["--select", "-s"] and select.multiple
    assert exclude.opts == ["--exclude"] and exclude.multiple
    assert refresh.opts == ["--full-refresh"] and refresh.is_flag and not refresh.secondary_opts
    assert select.help == option("run", "select").help and refresh.help == option("run", "full_refresh").help


def test_demo_takes_a_lake_and_a_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    lake, warehouse = tmp_path / "elsewhere" / "lake", tmp_path / "elsewhere" / "wh.duckdb"
    result = cli.invoke(app, ["demo", str(tmp_path / "demo"), "--lake", str(lake),
                              "--warehouse", f"duckdb:///{warehouse}"])
    assert result.exit_code == 0, result.output
    assert "models.training_set" in Lake(str(lake)).tables() and warehouse.is_file()
    assert not (tmp_path / "demo" / "lake").exists() and not (tmp_path / "demo" / "warehouse.duckdb").exists()


def test_query_before_anything_is_published_says_what_to_run(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["query", "select * from top_photos"])
    assert result.exit_code == 1
    assert "nothing is published to the warehouse (duckdb:///warehouse.duckdb) yet" in result.output
    assert "headwater run PIPELINE" in result.output and "Catalog Error" not in result.output
    assert not (tmp_path / "warehouse.duckdb").exists()  # asking did not create it


def test_query_after_loads_only_names_the_lake_tables(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop)
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    loaded = cli.invoke(app, ["run", str(write_pipeline(shop)), "-s", "raw.orders", "-s", "raw.customers"])
    assert loaded.exit_code == 0, loaded.output
    result = cli.invoke(app, ["query", "select * from by_country"], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "nothing is published" in result.output
    assert "raw.customers, raw.orders" in result.output
    lake = cli.invoke(app, ["query", "select count(*) as n from raw.orders"])
    assert lake.exit_code == 0  # the lake itself is queryable all the same


def test_a_bad_selector_prints_its_error_and_no_table(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shop)
    result = cli.invoke(app, ["run", str(write_pipeline(shop)), "--select", "nosuch", "--backend", "pandas"])
    assert result.exit_code == 1
    assert result.output.startswith("error: selector 'nosuch' matches no model, source or tag"), result.output
    assert result.output.count("\n") == 1


def test_doctor_with_an_unreachable_warehouse_has_no_stray_error(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'wh.sqlite'}"
    result = cli.invoke(app, ["doctor", "--warehouse", url, "--backend", "pandas"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("FAIL warehouse: ") for line in lines), result.output
    assert not any(line.startswith("error:") for line in lines) and "Exit" not in result.output
