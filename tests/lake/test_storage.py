"""Storage options: one mapping for delta-rs and fsspec, the AWS environment under explicit options."""
import socket

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from engine.errors import HeadwaterError
from engine.lake import Lake
from engine.lake.storage import (
    AWS_ENV,
    delta_options,
    detail,
    s3_filesystem,
    source_options,
    storage_failure,
    table_filesystem,
)


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in AWS_ENV:
        monkeypatch.delenv(var, raising=False)


def test_a_local_lake_gets_no_options_and_s3_gets_the_environment_under_explicit_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert delta_options("/data/lake", None) is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert delta_options("s3://b/lake", {"aws_secret_access_key": "mine"}) == {
        "AWS_ACCESS_KEY_ID": "env-key", "AWS_SECRET_ACCESS_KEY": "mine", "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_REGION": "eu-west-3", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true"}
    assert source_options("s3://b/in/*.csv", {"secret": "mine"}) == {
        "key": "env-key", "secret": "mine", "client_kwargs": {"region_name": "eu-west-3"},
        "endpoint_url": "http://127.0.0.1:9000"}
    assert source_options("https://example.org/a.parquet", {"headers": {"x": "1"}}) == {"headers": {"x": "1"}}


def test_aws_region_beats_aws_default_region_and_explicit_options_beat_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert delta_options("s3://b/lake", None)["AWS_REGION"] == "eu-north-1"
    assert source_options("s3://b/x.csv", None)["client_kwargs"] == {"region_name": "eu-north-1"}
    assert delta_options("s3://b/lake", {"AWS_DEFAULT_REGION": "ap-south-1"})["AWS_REGION"] == "ap-south-1"
    assert source_options("s3://b/x.csv", {"aws_region": "ap-south-1"})["client_kwargs"] == {
        "region_name": "ap-south-1"}


def test_an_https_endpoint_keeps_https_only_and_the_region_defaults() -> None:
    options = delta_options("s3://b/lake", {"AWS_ENDPOINT_URL": "https://minio.internal"})
    assert options == {"AWS_ENDPOINT_URL": "https://minio.internal", "AWS_REGION": "us-east-1"}


def test_store_refusals_are_recognised_and_quoted_briefly() -> None:
    xml = OSError("Generic S3 error \x1b[31m↳\x1b[0m 404 Not Found <Error><Code>NoSuchBucket</Code>"
                  "<Message>The specified bucket does not exist</Message></Error>")
    assert storage_failure(xml)[0] == "the bucket does not exist"
    assert detail(xml) == "NoSuchBucket: The specified bucket does not exist"
    assert storage_failure(PermissionError("Forbidden"))[0] == "access was refused"
    assert storage_failure(ValueError("orders_403: column 'x' is int64, the table has string")) is None


def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lake = Lake("s3://bucket/lake", {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                                     "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    with pytest.raises(HeadwaterError, match="the endpoint cannot be reached.*check AWS_ENDPOINT_URL"):
        lake.land("raw.x", [pa.RecordBatch.from_pydict({"a": [1]})], run_id="r", state={})


def test_an_s3_lake_is_read_by_pyarrow_s3_client_with_delta_rs_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    fs = table_filesystem("s3://b/lake/raw/x", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "aws_region": "eu-west-3"})
    assert isinstance(fs, pafs.SubTreeFileSystem) and fs.base_path == "b/lake/raw/x/"
    s3 = fs.base_fs
    assert isinstance(s3, pafs.S3FileSystem) and s3.region == "eu-west-3"
    # what pyarrow keeps of the settings it was given (its S3 options are not all readable)
    assert "127.0.0.1:9000" in repr(s3.__reduce__()) and "'http'" in repr(s3.__reduce__())
    assert "env-key" in repr(s3.__reduce__())
    assert isinstance(s3_filesystem("s3://b/t", {"key": "k", "secret": "s", "endpoint_url": "https://m.io"}),
                      pafs.S3FileSystem)  # fsspec spellings
    assert s3_filesystem("s3://b/t", {"anon": True}) is not None
    # a setting pyarrow's client has none for, or an endpoint with a path: fsspec reads instead
    assert s3_filesystem("s3://b/t", {"client_kwargs": {"verify": False}}) is None
    assert s3_filesystem("s3://b/t", {"AWS_ENDPOINT_URL": "https://gw.example.org/s3"}) is None
    assert isinstance(table_filesystem("s3://b/t", {"client_kwargs": {"verify": False}}).base_fs, pafs.PyFileSystem)


def test_pyarrow_s3_refusals_are_recognised() -> None:
    denied = OSError("When reading information for key 'k' in bucket 'b': AWS Error ACCESS_DENIED during "
                     "HeadObject operation: No response body.")
    assert storage_failure(denied)[0] == "access was refused"
    down = OSError("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not connect to "
                   "server")
    assert storage_failure(down)[:1] == ("the endpoint cannot be reached",) and storage_failure(down)[2]
