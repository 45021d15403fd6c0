"""Names are checked when they are declared: a source's or a model's name is an identifier
(ASCII letters, digits, `_`, not starting with a digit), so it can never reach outside its zone's
folder in the lake; names that differ only in case are refused; a published model's name must
also be a warehouse table name Headwater does not keep for itself. Whatever slips past a
declaration (a hand-made Source, a name given straight to the lake) is stopped by the lake,
which checks the string and the resolved path."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from engine import Config, Runner
from engine.errors import ConfigError
from engine.lake import Lake
from engine.load.extraction import Extraction
from engine.pipeline import Pipeline
from engine.sources import files, sql
from engine.transform.models import Model, model

# Every name here is refused, as a source's and as a model's. The first five are the issue's
# escapes (a Delta table outside the lake, into the run manifest, into another model, a zone
# folder made a table); the rest are what else is not an identifier.
REFUSED = ["../../x", "../_headwater/runs", "../models/m", ".", "..", "", "a/b", "a\\b", "raw.x",
           "my-source", "a b", "1abc", "café", "x\x00y", 'x"; DROP TABLE victim; --', "<lambda>",
           "x" * 129]
ACCEPTED = ["x", "_x", "X9", "photo_likes", "a" * 128]
# and for a model that publishes, names the warehouse side refuses
REFUSED_PUBLISHED = ["_headwater_published", "t__hw_new", "m" * 56]


def identity(df: Any) -> Any:
    return df


@pytest.mark.parametrize("name", REFUSED)
def test_refused_source_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid source name|source name .* characters long") as err:
        files(name, str(tmp_path / "*.csv"))
    assert "letters, digits and underscores" in str(err.value) or "at most 128" in str(err.value)
    with pytest.raises(ConfigError, match="source name"):
        sql(name, f"sqlite:///{tmp_path}/db.sqlite", "t")


@pytest.mark.parametrize("name", REFUSED)
def test_refused_model_names(name: str) -> None:
    with pytest.raises(ConfigError, match="model name"):
        model(inputs={"df": "raw.x"}, name=name)(identity)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="invalid model name '<lambda>'"):
        model(inputs={})(lambda: None)
    assert model(inputs={}, name="ok")(lambda: None).name == "ok"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names(name: str, tmp_path: Path) -> None:
    assert files(name, str(tmp_path / "*.csv")).name == name
    assert model(inputs={"df": f"raw.{name}"}, name=name, publish=False)(identity).name == name


@pytest.mark.parametrize("ref", ["raw.../../x", "../x", "models.a/b", "raw.my-source"])
def test_inputs_that_are_not_table_names_are_refused(ref: str) -> None:
    with pytest.raises(ConfigError, match=r"model 'm': input df=.* is not a valid table name"):
        model(inputs={"df": ref}, name="m")(identity)


@pytest.mark.parametrize("name", REFUSED_PUBLISHED)
def test_a_published_model_needs_a_warehouse_name(name: str, tmp_path: Path) -> None:
    src = files("x", str(tmp_path / "*.csv"))
    m = model(inputs={"df": "raw.x"}, name=name)(identity)
    with pytest.raises(ConfigError, match=f"model {name!r} cannot be published"):
        Pipeline("p", sources=[src], models=[m])
    lake_only = model(inputs={"df": "raw.x"}, name=name, publish=False)(identity)
    assert Pipeline("p", sources=[src], models=[lake_only]).graph.models == (name,)


def test_names_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    src = files("x", str(tmp_path / "*.csv"))
    upper = model(inputs={"df": "raw.x"}, name="Foo")(identity)
    lower = model(inputs={"df": "raw.x"}, name="foo")(identity)
    with pytest.raises(ConfigError, match=r"model names \['Foo', 'foo'\] differ only in case"):
        Pipeline("p", sources=[src], models=[upper, lower])
    with pytest.raises(ConfigError, match=r"source names \['Orders', 'orders'\] differ only in case"):
        Pipeline("p", sources=[files("orders", "a.csv"), files("Orders", "b.csv")])
    # a source and a model may share a name: raw.foo and models.foo are different tables
    assert Pipeline("p", sources=[files("foo", str(tmp_path / "*.csv"))],
                    models=[model(inputs={"df": "raw.foo"}, name="foo")(identity)]).graph.sources == ("foo",)


@dataclass
class HandMade:
    """A Source made without the constructors' checks."""

    name: str

    def extract(self, state: dict[str, Any], *, run_id: str, loaded_at: datetime) -> Extraction:
        raise AssertionError("never reached")


@pytest.mark.parametrize("name", ["../../x", "../_headwater/runs", "."])
def test_a_pipeline_checks_names_that_skipped_the_constructors(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid source name"):
        Pipeline("p", sources=[HandMade(name)])
    bare = Model(name, identity, {})
    with pytest.raises(ConfigError, match="invalid model name"):
        Pipeline("p", models=[bare])


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["raw.../../x", "../../x", "raw.../_headwater/runs", "raw.../models/m",
                                  "raw..", "raw.a/b", "models.a\\b", "quarantine.../raw/x"])
def test_the_lake_refuses_a_name_that_leaves_its_zone(name: str, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write("models.m", pa.table({"a": [1]}), run_id="r0", meta={})
    before = files_under(tmp_path)
    with pytest.raises(ConfigError, match="does not name a table inside the lake's"):
        lake.write(name, pa.table({"a": [2]}), run_id="r1", meta={})
    with pytest.raises(ConfigError, match="does not name a table inside the lake's"):
        lake.land(name, iter([pa.record_batch({"a": [3]})]), run_id="r2", state={})
    assert files_under(tmp_path) == before  # nothing written anywhere, in the lake or beside it
    assert lake.read("models.m").to_pydict() == {"a": [1]}


def test_the_lake_refuses_a_table_folder_that_resolves_elsewhere(tmp_path: Path) -> None:
    """The string is fine, the path is not: raw/evil is a symlink to a folder outside the lake."""
    lake = Lake(str(tmp_path / "lake"))
    lake.write("raw.ok", pa.table({"a": [1]}), run_id="r0", meta={})
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "lake" / "raw" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="'raw.evil' does not name a table inside the lake's raw folder"):
        lake.land("raw.evil", iter([pa.record_batch({"a": [3]})]), run_id="r1", state={})
    assert list(outside.iterdir()) == []
    (tmp_path / "lake" / "raw" / "loop").symlink_to(tmp_path / "lake" / "raw", target_is_directory=True)
    with pytest.raises(ConfigError, match="'raw.loop' does not name a table"):
        lake.write("raw.loop", pa.table({"a": [1]}), run_id="r2", meta={})


def test_a_run_publishes_over_a_foreign_table_only_when_the_model_says_so(tmp_path: Path) -> None:
    """A model named like a warehouse table that Headwater did not create: the publish step fails
    and names the table, the table is untouched; with replace_existing=True the model replaces it."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id,v\n1,10\n2,20\n")
    wh = tmp_path / "wh.duckdb"
    with duckdb.connect(str(wh)) as con:
        con.execute("CREATE TABLE sales (id INTEGER, note VARCHAR)")
        con.execute("INSERT INTO sales VALUES (7, 'kept by the finance team')")
    cfg = Config.load(tmp_path, lake=str(tmp_path / "lake"), warehouse=f"duckdb:///{wh}", backend="pandas")
    src = files("src", str(tmp_path / "in" / "*.csv"))

    def sales(df: Any) -> Any:
        return df[["id", "v"]]

    summary = Runner(Pipeline("p", sources=[src], models=[model(inputs={"df": "raw.src"})(sales)]), cfg).run()
    step = {(s.kind, s.name): s for s in summary.steps}[("publish", "sales")]
    assert step.status == "failed"
    assert "has a table 'sales' that Headwater did not create" in step.detail
    assert "replace_existing=True" in step.detail and "\n" not in step.detail
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT * FROM sales").fetchall() == [(7, "kept by the finance team")]

    allowed = model(inputs={"df": "raw.src"}, replace_existing=True)(sales)
    again = Runner(Pipeline("p", sources=[src], models=[allowed]), cfg).run()
    assert again.ok, again.error
    with duckdb.connect(str(wh), read_only=True) as con:
        assert sorted(con.execute("SELECT id, v FROM sales").fetchall()) == [(1, 10), (2, 20)]
    # from now on the table is Headwater's: the next publish needs no permission
    (tmp_path / "in" / "b.csv").write_text("id,v\n3,30\n")
    third = Runner(Pipeline("p", sources=[src], models=[model(inputs={"df": "raw.src"})(sales)]), cfg).run()
    assert third.ok, third.error
    with duckdb.connect(str(wh), read_only=True) as con:
        assert sorted(con.execute("SELECT id, v FROM sales").fetchall()) == [(1, 10), (2, 20), (3, 30)]
