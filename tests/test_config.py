from pathlib import Path

import pytest

from engine.config import DEFAULTS, Config
from engine.errors import HeadwaterError


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    cfg = Config.load(tmp_path)
    assert (cfg.lake, cfg.warehouse, cfg.backend) == (DEFAULTS["lake"], DEFAULTS["warehouse"], "auto")
    assert cfg.source == "defaults"


def test_toml_beside_pipeline_resolves_relative_paths_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "headwater.toml").write_text(
        'lake = "data/lake"\nwarehouse = "duckdb:///wh/w.duckdb"\nbackend = "pandas"\n'
        '[storage_options]\nAWS_REGION = "eu-west-1"\n')
    cfg = Config.load(tmp_path)
    assert cfg.lake == str(tmp_path.resolve() / "data" / "lake")
    assert cfg.warehouse == f"duckdb:///{tmp_path.resolve() / 'wh' / 'w.duckdb'}"
    assert cfg.backend == "pandas"
    assert cfg.storage_options == {"AWS_REGION": "eu-west-1"}
    (tmp_path / "headwater.toml").write_text('warehouse = "sqlite:///wh.sqlite"\nsql_engine = "polars"\n')
    cfg = Config.load(tmp_path)
    assert (cfg.warehouse, cfg.sql_engine) == (f"sqlite:///{tmp_path.resolve() / 'wh.sqlite'}", "polars")


def test_env_beats_toml_and_arguments_beat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "headwater.toml").write_text('lake = "from_toml"\nbackend = "cudf"\n')
    monkeypatch.setenv("HEADWATER_LAKE", "s3://bucket/lake")
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    cfg = Config.load(tmp_path)
    assert (cfg.lake, cfg.backend) == ("s3://bucket/lake", "pandas")
    assert Config.load(tmp_path, lake="/explicit", backend=None).lake == "/explicit"
    assert "HEADWATER_LAKE" in cfg.source


def test_unknown_backend_and_bad_toml_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_BACKEND", "tpu")
    with pytest.raises(HeadwaterError, match="auto, pandas, cudf"):
        Config.load(tmp_path)
    monkeypatch.delenv("HEADWATER_BACKEND")
    (tmp_path / "headwater.toml").write_text("lake = [unclosed\n")
    with pytest.raises(HeadwaterError, match="not valid TOML"):
        Config.load(tmp_path)
    (tmp_path / "headwater.toml").write_text('lakes = "typo"\n')
    with pytest.raises(HeadwaterError, match="unknown setting"):
        Config.load(tmp_path)


def test_an_unknown_sql_engine_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_SQL_ENGINE", "spark")
    with pytest.raises(HeadwaterError, match="unknown SQL engine 'spark'.*auto, duckdb, polars"):
        Config.load(tmp_path)
