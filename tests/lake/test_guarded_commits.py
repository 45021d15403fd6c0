"""Guarded commits (engine/lake/store.py): a commit based on the version its writer read fails,
committing nothing, once another run's commit reached the table; a commit by someone else
(a compaction) does not stop it."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from engine.errors import ConcurrentRunError
from engine.lake import Lake


def rows(ids: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([f"v{i}" for i in ids])})


def ids(lake: Lake, name: str) -> list[int]:
    return sorted(lake.read(name).column("id").to_pylist())


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_the_second_of_two_commits_based_on_one_version_commits_nothing(tmp_path: Path, mode: str) -> None:
    lake = Lake(str(tmp_path))
    lake.land("raw.t", rows([1, 2]).to_batches(), run_id="r0", state={"files": ["a"]})
    read = lake.based("raw.t")  # both runs read version 0 and the same state
    won = lake.land("raw.t", rows([3]).to_batches(), run_id="r1", state={"files": ["a", "b"]}, mode=mode,
                    primary_key=["id"], based_on=read)
    with pytest.raises(ConcurrentRunError, match=r"raw.t: another run committed to it since this run read it "
                                                 r"\(it was at version 0\); this run committed nothing"):
        lake.land("raw.t", rows([3]).to_batches(), run_id="r2", state={"files": ["a", "b"]}, mode=mode,
                  primary_key=["id"], based_on=read)
    assert lake.version("raw.t") == won.version == 1
    assert ids(lake, "raw.t") == ([3] if mode == "replace" else [1, 2, 3])  # 3 once, not twice
    assert lake.state("raw.t") == {"files": ["a", "b"]} and lake.metadata("raw.t")["run_id"] == "r1"


def test_two_runs_creating_one_table(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    read = lake.based("models.m")
    assert read.version is None
    lake.write("models.m", rows([1]), run_id="r1", meta={}, based_on=read)
    with pytest.raises(ConcurrentRunError, match="it did not exist"):
        lake.write("models.m", rows([1]), run_id="r2", meta={}, based_on=read)
    assert ids(lake, "models.m") == [1] and lake.version("models.m") == 0


def test_an_append_based_on_a_version_is_refused_after_an_unguarded_headwater_commit_too(tmp_path: Path) -> None:
    """The run manifest and quarantine are appended without a guard; a guarded commit on top of
    an older version still sees a guarded one that came between."""
    lake = Lake(str(tmp_path))
    lake.write_append("raw.t", rows([1]), run_id="r0", meta={})
    read = lake.based("raw.t")
    lake.write_append("raw.t", rows([2]), run_id="r1", meta={}, based_on=read)
    with pytest.raises(ConcurrentRunError):
        lake.write_append("raw.t", rows([2]), run_id="r2", meta={}, based_on=read)
    with pytest.raises(ConcurrentRunError):
        lake.check_unchanged("raw.t", read)
    assert ids(lake, "raw.t") == [1, 2]


def test_a_compaction_in_between_does_not_stop_a_load(tmp_path: Path) -> None:
    """OPTIMIZE carries no Headwater transaction: the load, based on the version before it,
    still commits (its rows do not depend on how the old ones are laid out)."""
    lake = Lake(str(tmp_path))
    for i in range(3):
        lake.write_append("raw.t", rows([i]), run_id=f"r{i}", meta={})
    read = lake.based("raw.t")
    lake.table("raw.t").optimize.compact()
    lake.write_append("raw.t", rows([9]), run_id="r9", meta={}, based_on=read)
    assert ids(lake, "raw.t") == [0, 1, 2, 9] and lake.version("raw.t") == read.version + 2


def test_read_metadata_gives_a_version_and_its_metadata(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    assert lake.read_metadata("raw.t") == (None, {})
    lake.land("raw.t", rows([1]).to_batches(), run_id="r0", state={"cursor": 1})
    lake.land("raw.t", rows([2]).to_batches(), run_id="r1", state={"cursor": 2})
    version, meta = lake.read_metadata("raw.t")
    assert version == 1 and meta["state"] == {"cursor": 2} and meta["run_id"] == "r1"


def test_a_merge_that_adds_a_column_is_refused_whole(tmp_path: Path) -> None:
    """The column a merge adds goes in a commit of its own, guarded like the merge: the run that
    lost adds neither the column nor its rows."""
    lake = Lake(str(tmp_path))
    lake.land("raw.t", rows([1, 2]).to_batches(), run_id="r0", state={}, mode="merge", primary_key=["id"])
    read = lake.based("raw.t")
    lake.land("raw.t", rows([2, 3]).to_batches(), run_id="r1", state={"n": 1}, mode="merge", primary_key=["id"],
              based_on=read)
    wider = rows([3, 4]).append_column("extra", pa.array(["x", "y"]))
    with pytest.raises(ConcurrentRunError):
        lake.land("raw.t", wider.to_batches(), run_id="r2", state={"n": 1}, mode="merge", primary_key=["id"],
                  based_on=read)
    assert lake.read("raw.t").column_names == ["id", "v"] and ids(lake, "raw.t") == [1, 2, 3]
    assert lake.version("raw.t") == read.version + 1
