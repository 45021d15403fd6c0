"""s3:// for file sources and for the lake, against moto_server on 127.0.0.1 (tests/support/s3.py)."""
import gzip
import io
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import Config, Pipeline, Runner, model
from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.lake.storage import AWS_ENV
from engine.sources import files
from tests.support.landing import land
from tests.support.s3 import S3Server

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's AWS settings must not leak in: tests set what they use."""
    for var in AWS_ENV + ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def use_env(monkeypatch: pytest.MonkeyPatch, server: S3Server, **override: str) -> None:
    for var, value in {**server.env(), **override}.items():
        monkeypatch.setenv(var, value)


def put(server: S3Server, bucket: str, key: str, body: bytes) -> None:
    server.client().put_object(Bucket=bucket, Key=key, Body=body)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()



def test_csv_jsonl_parquet_globs_on_s3_land_into_a_local_lake_with_env_credentials(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, s3_server)
    put(s3_server, s3_bucket, "in/a.csv", b"id,name\n1,ann\n2,bob\n")
    put(s3_server, s3_bucket, "in/b.jsonl.gz",
        gzip.compress(b'{"id": 3, "device": {"os": "ios"}}\n{"id": 4, "device": {"os": "android"}}\n'))
    put(s3_server, s3_bucket, "in/c.parquet", parquet_bytes(pa.table({"id": [5, 6], "name": ["cy", "di"]})))
    put(s3_server, s3_bucket, "other/d.csv", b"id,name\n9,zed\n")  # outside every glob
    lake = Lake(str(tmp_path / "lake"))

    csv = files("csv", f"s3://{s3_bucket}/in/*.csv")
    assert csv.list_files() == [f"s3://{s3_bucket}/in/a.csv"]
    assert land(lake, csv).rows == 2
    assert land(lake, files("logs", f"s3://{s3_bucket}/in/*.jsonl.gz")).rows == 2
    assert land(lake, files("pq", f"s3://{s3_bucket}/in/*.parquet")).rows == 2

    got = sorted(lake.read("raw.csv").to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["name"], r["_hw_source_file"]) for r in got] == [
        (1, "ann", f"s3://{s3_bucket}/in/a.csv"), (2, "bob", f"s3://{s3_bucket}/in/a.csv")]
    assert sorted((r["id"], r["device__os"]) for r in lake.read("raw.logs").to_pylist()) == [
        (3, "ios"), (4, "android")]
    assert sorted(lake.read("raw.pq", columns=["name"]).column(0).to_pylist()) == ["cy", "di"]

    assert land(lake, csv, "r2").version is None  # landed files are not read again
    put(s3_server, s3_bucket, "in/e.csv", b"id,name\n7,ed\n")  # a new file in the same process
    assert land(lake, csv, "r3").rows == 1
    assert lake.state("raw.csv")["files"] == [f"s3://{s3_bucket}/in/a.csv", f"s3://{s3_bucket}/in/e.csv"]


def test_storage_options_beat_the_environment_and_take_either_spelling(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, s3_server, AWS_SECRET_ACCESS_KEY="wrong-secret")
    put(s3_server, s3_bucket, "in/a.csv", b"n\n1\n2\n")
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(HeadwaterError, match="access was refused"):
        land(lake, files("env_only", f"s3://{s3_bucket}/in/*.csv"))
    aws_style = {"AWS_SECRET_ACCESS_KEY": s3_server.secret}
    assert land(lake, files("aws_style", f"s3://{s3_bucket}/in/*.csv", storage_options=aws_style)).rows == 2
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fsspec_style = {"key": s3_server.key, "secret": s3_server.secret}
    assert land(lake, files("fsspec_style", f"s3://{s3_bucket}/in/a.csv", storage_options=fsspec_style)).rows == 2


def test_lake_on_s3_from_env_lists_reads_and_keeps_state(
        s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, s3_server)
    lake = Lake(f"s3://{s3_bucket}/lake/")
    assert lake.tables() == [] and lake.state("raw.events") == {}
    batch = pa.RecordBatch.from_pydict({"id": [1, 2, 3]})
    commit = lake.land("raw.events", [batch], run_id="r1", state={"files": ["a"]})
    assert (commit.version, commit.rows) == (0, 3)
    lake.write("models.top", pa.table({"id": [3]}), run_id="r1", meta={"inputs": {}})
    assert lake.tables() == ["raw.events", "models.top"]
    assert lake.state("raw.events") == {"files": ["a"]}
    assert lake.read("events").column("id").to_pylist() == [1, 2, 3]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"lake/raw/events/_delta_log/{0:020d}.json" in keys


def test_a_writer_behind_the_latest_commit_does_not_overwrite_it(
        s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits are conditional puts: a writer that read version 0 cannot replace version 1."""
    from deltalake import write_deltalake

    use_env(monkeypatch, s3_server)
    lake = Lake(f"s3://{s3_bucket}/lake")
    lake.land("raw.t", [pa.RecordBatch.from_pydict({"a": [0]})], run_id="r0", state={})
    stale = lake.table("raw.t")  # at version 0
    lake.land("raw.t", [pa.RecordBatch.from_pydict({"a": [1]})], run_id="r1", state={})
    write_deltalake(stale, pa.table({"a": [2]}), mode="append")  # tries version 1, which exists
    assert lake.version("raw.t") == 2
    assert sorted(lake.read("raw.t").column("a").to_pylist()) == [0, 1, 2]


def test_a_pipeline_runs_with_its_lake_on_s3(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    options = {"AWS_ACCESS_KEY_ID": s3_server.key, "AWS_SECRET_ACCESS_KEY": s3_server.secret,
               "AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_REGION": s3_server.region}
    put(s3_server, s3_bucket, "orders/day1.csv", b"order_id,country,amount\n1,fr,10.5\n2,de,4.5\n3,fr,1.0\n")
    orders = files("orders", f"s3://{s3_bucket}/orders/*.csv", storage_options=options)

    @model(inputs={"orders": "raw.orders"})
    def revenue(orders):  # type: ignore[no-untyped-def]
        out = orders.groupby("country", as_index=False).agg(revenue=("amount", "sum"))
        return out.sort_values("country").reset_index(drop=True)

    pipeline = Pipeline("shop", sources=[orders], models=[revenue])
    (tmp_path / "headwater.toml").write_text(  # the lake's settings as a user writes them
        f'lake = "s3://{s3_bucket}/lake"\n[storage_options]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in options.items()))
    config = Config.load(tmp_path, backend="pandas", warehouse=f"duckdb:///{tmp_path}/wh.duckdb")
    assert config.lake == f"s3://{s3_bucket}/lake" and config.storage_options == options
    runner = Runner(pipeline, config)
    first = runner.run()
    assert first.ok, first.error
    assert {(s.kind, s.name): (s.status, s.rows) for s in first.steps if s.kind != "publish"} == {
        ("load", "orders"): ("landed", 3), ("model", "revenue"): ("built", 2)}
    assert runner.lake.tables() == ["raw.orders", "models.revenue"]
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select country, revenue from revenue order by country").fetchall() == [
            ("de", 4.5), ("fr", 11.5)]

    second = runner.run()
    assert second.ok and second.rows_landed() == 0
    assert {s.status for s in second.steps} == {"unchanged"}

    put(s3_server, s3_bucket, "orders/day2.csv", b"order_id,country,amount\n4,de,2.0\n")
    third = runner.run()
    assert third.ok and third.rows_landed() == 1
    lake = Lake(f"s3://{s3_bucket}/lake", options)  # a fresh reader sees the same lake
    assert lake.version("models.revenue") == 1
    assert lake.read("revenue", version=0).to_pylist() == [
        {"country": "de", "revenue": 4.5}, {"country": "fr", "revenue": 11.5}]
    assert lake.read("revenue").to_pylist() == [
        {"country": "de", "revenue": 6.5}, {"country": "fr", "revenue": 11.5}]
    history = lake.history("raw.orders")
    assert [h["version"] for h in history] == [1, 0]
    assert history[0]["state"]["files"] == [f"s3://{s3_bucket}/orders/day1.csv",
                                            f"s3://{s3_bucket}/orders/day2.csv"]
    assert history[0]["run_id"] == third.run_id


def test_a_missing_bucket_is_a_clear_error(
        s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, s3_server)
    lake = Lake("s3://hw-no-such-bucket/lake")
    with pytest.raises(HeadwaterError, match="the bucket does not exist.*check the bucket name"):
        lake.land("raw.x", [pa.RecordBatch.from_pydict({"a": [1]})], run_id="r", state={})
    with pytest.raises(HeadwaterError, match="cannot list the lake.*the bucket does not exist"):
        lake.tables()
    with pytest.raises(HeadwaterError, match="hw-no-such-bucket.*the bucket does not exist"):
        files("x", "s3://hw-no-such-bucket/in/*.csv").list_files()


def test_bad_credentials_are_a_clear_error(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env(monkeypatch, s3_server, AWS_ACCESS_KEY_ID="AKIANOTAKEY", AWS_SECRET_ACCESS_KEY="nope")
    put(s3_server, s3_bucket, "in/a.csv", b"n\n1\n")
    lake = Lake(f"s3://{s3_bucket}/lake")
    with pytest.raises(HeadwaterError, match="access was refused.*AWS_ACCESS_KEY_ID"):
        lake.land("raw.x", [pa.RecordBatch.from_pydict({"a": [1]})], run_id="r", state={})
    with pytest.raises(HeadwaterError, match="access was refused"):
        lake.tables()
    good = Lake(f"s3://{s3_bucket}/lake", {"AWS_ACCESS_KEY_ID": s3_server.key,
                                          "AWS_SECRET_ACCESS_KEY": s3_server.secret})
    assert good.land("raw.x", [pa.RecordBatch.from_pydict({"a": [1]})], run_id="r", state={}).rows == 1
    assert good.tables() == ["raw.x"]  # storage_options beat the environment
    with pytest.raises(HeadwaterError, match=f"source 'x'.*{s3_bucket}.*access was refused"):
        files("x", f"s3://{s3_bucket}/in/*.csv").list_files()

    runner = Runner(Pipeline("p", sources=[files("x", f"s3://{s3_bucket}/in/*.csv")], models=[]),
                    Config.load(tmp_path, lake=str(tmp_path / "lake"), backend="pandas",
                                warehouse=f"duckdb:///{tmp_path}/wh.duckdb"))
    summary = runner.run()
    assert not summary.ok
    (step,) = summary.steps
    assert step.status == "failed" and "access was refused" in step.detail


def test_the_cli_runs_and_queries_a_lake_on_s3_from_the_environment(
        s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    cli = CliRunner()
    put(s3_server, s3_bucket, "in/a.csv", b"n\n1\n2\n3\n")
    (tmp_path / "pipeline.py").write_text(
        "from engine import Pipeline, sources\n"
        f"pipeline = Pipeline('p', sources=[sources.files('nums', 's3://{s3_bucket}/in/*.csv')])\n")
    monkeypatch.chdir(tmp_path)
    use_env(monkeypatch, s3_server)
    monkeypatch.setenv("HEADWATER_LAKE", f"s3://{s3_bucket}/lake")
    monkeypatch.setenv("HEADWATER_BACKEND", "pandas")
    ran = cli.invoke(app, ["run", "pipeline.py"])
    assert ran.exit_code == 0, ran.output
    total = cli.invoke(app, ["query", "select sum(n) as total from raw.nums"])
    assert total.exit_code == 0, total.output
    assert " 6 " in total.output.replace("│", " ")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    refused = cli.invoke(app, ["query", "select count(*) from raw.nums"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "cannot list the lake" in refused.output and "access was refused" in refused.output
