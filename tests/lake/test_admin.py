"""Resetting a source's raw table and dropping lake tables (engine/lake/admin.py), locally and
on S3 (moto), and descriptions set on a table by metadata-only commits."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from engine.errors import ConcurrentRunError, ConfigError
from engine.lake import Lake, admin
from engine.lake.changes import changes
from engine.lake.describe import Description
from engine.lake.storage import AWS_ENV
from tests.support.s3 import S3Server

ROWS = pa.RecordBatch.from_pydict({"id": [1, 2, 3], "v": ["a", "b", "c"]})


def landed(lake: Lake) -> None:
    """raw.src with 3 rows and 2 landed files; quarantine.src with 2 refused rows."""
    lake.land("raw.src", [ROWS], run_id="r1", state={"files": ["a.csv", "b.csv"]})
    lake.write_append("quarantine.src", pa.table({"line": [4, 9]}), run_id="r1", meta={"quarantined": 2})


def test_reset_empties_the_table_and_its_state_in_one_commit(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    landed(lake)
    assert admin.pending_reset(lake, "src") == admin.Reset("raw.src", 0, 3, {"files": ["a.csv", "b.csv"]}, 2)
    done = admin.reset(lake, "raw.src", "reset-1")
    assert done.version == 1 and lake.version("raw.src") == 1  # one commit: no rows, empty state
    assert lake.read("raw.src").num_rows == 0 and lake.state("raw.src") == {}
    assert lake.read("raw.src").schema.names == ["id", "v"]  # the schema stays
    assert lake.read("raw.src", version=0).num_rows == 3  # and the history
    assert lake.read("quarantine.src").num_rows == 0
    assert changes(lake, "raw.src", 0, 1).rewritten  # readers rebuild in full
    lake.land("raw.src", [ROWS], run_id="r2", state={"files": ["a.csv", "b.csv"]})
    assert sorted(lake.read("raw.src").column("id").to_pylist()) == [1, 2, 3]  # landed again, once


def test_reset_of_a_table_that_is_already_empty_still_forgets_its_state(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.src", [], run_id="r1", state={"files": ["x.csv"]}, schema=ROWS.schema, commit_empty=lambda: True)
    admin.reset(lake, "raw.src", "reset-1")
    assert lake.state("raw.src") == {} and lake.version("raw.src") == 1


def test_a_reset_that_another_run_overtook_commits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(str(tmp_path))
    landed(lake)
    stale = admin.pending_reset(lake, "raw.src")
    lake.land("raw.src", [ROWS], run_id="r2", state={"files": ["a.csv", "b.csv", "c.csv"]})
    monkeypatch.setattr(admin, "pending_reset", lambda *_: stale)  # read before the other run's commit
    with pytest.raises(ConcurrentRunError):
        admin.reset(lake, "raw.src", "reset-1")
    assert lake.read("raw.src").num_rows == 6 and lake.state("raw.src")["files"][-1] == "c.csv"
    assert lake.read("quarantine.src").num_rows == 2  # checked before anything was emptied


def test_only_raw_tables_that_exist_can_be_reset(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write("models.m", pa.table({"a": [1]}), run_id="r", meta={})
    with pytest.raises(ConfigError, match="is not a raw table"):
        admin.reset(lake, "models.m", "x")
    with pytest.raises(ConfigError, match="no lake table 'raw.nothing'"):
        admin.reset(lake, "nothing", "x")


def test_drop_removes_a_table_and_its_history(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    landed(lake)
    lake.write("models.m", pa.table({"a": [1]}), run_id="r", meta={})
    assert admin.drop(lake, "m") == "models.m"
    assert lake.tables() == ["raw.src", "quarantine.src"] and not (tmp_path / "models" / "m").exists()
    with pytest.raises(ConfigError, match="no lake table 'models.m'"):
        admin.drop(lake, "models.m")
    with pytest.raises(ConfigError, match="Headwater's own table"):
        admin.drop(lake, "_headwater.runs")


def test_reset_and_drop_on_s3(s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in AWS_ENV + ("AWS_PROFILE",):
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_server.env().items():
        monkeypatch.setenv(var, value)
    lake = Lake(f"s3://{s3_bucket}/lake")
    landed(lake)
    admin.reset(lake, "raw.src", "reset-1")
    assert lake.read("raw.src").num_rows == 0 and lake.state("raw.src") == {}
    admin.drop(lake, "quarantine.src")
    assert lake.tables() == ["raw.src"]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys and not [k for k in keys if k.startswith("lake/quarantine/")]


def test_descriptions_are_set_by_metadata_only_commits_that_add_no_rows(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    about = Description("a table", {"a": "the a"})
    lake.write("models.m", pa.table({"a": [1], "b": [2]}), run_id="r", meta={}, describe=about)
    assert lake.version("models.m") == 0  # created with both, in one commit
    assert Description.of(lake.table("models.m")) == about
    lake.write_append("models.m", pa.table({"a": [3], "b": [4]}), run_id="r2", meta={},
                      describe=replace(about, columns={"b": "the b"}))
    assert Description.of(lake.table("models.m")) == Description("a table", {"b": "the b"})
    history = lake.history("models.m")
    assert [c.get("described") for c in history] == [True, True, None, None]  # a's comment cleared, b's set
    assert changes(lake, "models.m", 1, 3).dataset.count_rows() == 0 and not changes(lake, "models.m", 1, 3).rewritten
    lake.write_append("models.m", pa.table({"a": [5], "b": [6]}), run_id="r3", meta={},
                      describe=Description("a table", {"b": "the b"}))
    assert lake.version("models.m") == 4  # nothing differed: no metadata commit
    assert sorted(lake.read("models.m").column("a").to_pylist()) == [1, 3, 5]
