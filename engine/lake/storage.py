"""Object storage settings and errors, in one place for the lake, file sources and backends.

Storage options are written the way delta-rs (object_store) takes them, e.g. `AWS_ACCESS_KEY_ID`,
`AWS_ENDPOINT_URL`; fsspec-style keys (`key`, `secret`, `endpoint_url`, `anon`, ...) pass
through to fsspec unchanged. For `s3://` URIs the standard AWS environment variables fill in
whatever the options leave out, so the lake (delta-rs) and file sources (s3fs) see the same
credentials and endpoint. On S3 the lake commits with conditional puts (`If-None-Match`), the
delta-rs default, so no locking provider and no unsafe rename is needed.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow.fs as pafs

from engine.errors import HeadwaterError, StorageError

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

# The standard AWS variables that Headwater reads for s3:// URIs (others are left to the clients).
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP")

# delta-rs (object_store) option names and their s3fs (fsspec) equivalents.
S3_KEYS = {"aws_access_key_id": "key", "aws_secret_access_key": "secret",
           "aws_session_token": "token", "aws_endpoint_url": "endpoint_url", "aws_endpoint": "endpoint_url"}


def protocol(uri: str) -> str:
    """The URI's scheme (`s3`, `http`, ...), `file` for a local path."""
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


def is_s3(uri: str) -> bool:
    """True for `s3://` and `s3a://` URIs."""
    return protocol(uri) in ("s3", "s3a")


def aws_env() -> dict[str, str]:
    """The standard AWS variables set (non-empty) in the environment."""
    return {var: os.environ[var] for var in AWS_ENV if os.environ.get(var)}


def _upper_aws(options: dict[str, Any]) -> dict[str, Any]:
    return {(k.upper() if k.lower().startswith("aws_") else k): v for k, v in options.items()}


def delta_options(uri: str, options: dict[str, Any] | None) -> dict[str, str] | None:
    """The storage options delta-rs gets for a lake at `uri` (None for a local lake without any).

    On s3:// the AWS environment fills in what `options` leave out; an `http://` endpoint
    (a local S3-compatible server) turns on `AWS_ALLOW_HTTP`, which object_store refuses
    without; a region defaults to us-east-1 when neither names one.
    """
    given = _upper_aws(dict(options or {}))
    if not is_s3(uri):
        return {k: str(v) for k, v in given.items()} or None
    env = aws_env()
    merged = {**env, **given, "AWS_REGION": _region(given) or _region(env) or "us-east-1"}
    endpoint = str(merged.get("AWS_ENDPOINT_URL", merged.get("AWS_ENDPOINT", "")))
    if endpoint.startswith("http://"):
        merged.setdefault("AWS_ALLOW_HTTP", "true")
    return {k: str(v) for k, v in merged.items()}


def _region(options: dict[str, Any]) -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION (any case), as the AWS SDKs read them."""
    upper = _upper_aws(options)
    return upper.get("AWS_REGION") or upper.get("AWS_DEFAULT_REGION")


def fsspec_options(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options (delta-rs style, e.g. AWS_ACCESS_KEY_ID) as fsspec/s3fs arguments."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        low = key.lower()
        if low in S3_KEYS:
            out[S3_KEYS[low]] = value
        elif not low.startswith("aws_"):  # already fsspec-style (key, secret, anon, ...)
            out[key] = value
    region = _region(options)
    if region:
        out["client_kwargs"] = {**out.get("client_kwargs", {}), "region_name": region}
    return out


def source_options(uri: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """fsspec arguments for reading `uri`: on s3://, the AWS environment under `options`."""
    options = dict(options or {})
    if not is_s3(uri):
        return fsspec_options(options)
    merged = fsspec_options(aws_env())
    given = fsspec_options(options)
    if "client_kwargs" in merged and "client_kwargs" in given:
        given["client_kwargs"] = {**merged["client_kwargs"], **given["client_kwargs"]}
    return {**merged, **given}


def table_filesystem(table_uri: str, storage_options: dict[str, Any] | None = None) -> pafs.FileSystem:
    """A pyarrow filesystem rooted at a Delta table's folder (paths inside it are relative to
    the table): pyarrow's local filesystem; on s3:// pyarrow's own S3 client (`s3_filesystem`),
    or fsspec where the options name something it does not take; never delta-rs' own handler
    (a process that read through it often aborts at exit, delta-rs #2184).

    Not fsspec where pyarrow's client will do: a scan stopped early (`head`) left pyarrow's I/O
    threads calling into Python through the fsspec wrapper while the interpreter shut down,
    and the process aborted at exit (`PyGILState_Release`, `terminate called`) or hung."""
    uri = table_uri.rstrip("/")
    if protocol(uri) == "file":
        fs: pafs.FileSystem = pafs.LocalFileSystem()
        root = unquote(uri.removeprefix("file://"))
    else:
        root = uri.split("://", 1)[1]
        native = s3_filesystem(uri, storage_options) if is_s3(uri) else None
        if native is not None:
            fs = native
        else:
            import fsspec

            handler = pafs.FSSpecHandler(fsspec.filesystem(protocol(uri), **source_options(uri, storage_options)))
            fs = pafs.PyFileSystem(handler)
    return pafs.SubTreeFileSystem(root, fs)


# Options that only delta-rs' commits use (how to commit safely on S3): a data file's reads and
# writes need none of them.
_COMMIT_ONLY = {"AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_CONDITIONAL_PUT", "AWS_S3_LOCKING_PROVIDER",
                "AWS_COPY_IF_NOT_EXISTS", "DELTA_DYNAMO_TABLE_NAME", "AWS_ALLOW_HTTP"}
# fsspec (s3fs) spellings of the options that pyarrow's client takes too
_FSSPEC_AS_AWS = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN",
                  "endpoint_url": "AWS_ENDPOINT_URL"}


def s3_filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> pafs.S3FileSystem | None:
    """pyarrow's S3 client with the settings delta-rs gets for `uri` (see `delta_options`:
    credentials, region, endpoint, plain http for an http:// endpoint), or None when the
    options name something it has no setting for (then fsspec reads the files)."""
    settings: dict[str, str] = {}
    for name, value in (delta_options(uri, storage_options) or {}).items():
        name = _FSSPEC_AS_AWS.get(name, name)
        if name == "anon":
            name = "AWS_SKIP_SIGNATURE"
        settings[name] = str(value)
    if not set(settings) <= {*AWS_ENV, "AWS_ENDPOINT", "AWS_SKIP_SIGNATURE", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
                             *_COMMIT_ONLY}:
        return None
    endpoint = settings.get("AWS_ENDPOINT_URL") or settings.get("AWS_ENDPOINT")
    scheme, override = None, None
    if endpoint:
        scheme, sep, rest = endpoint.partition("://")
        if not sep or "/" in rest.strip("/"):
            return None  # an endpoint with a path: left to fsspec
        override = rest.strip("/")
    anonymous = settings.get("AWS_SKIP_SIGNATURE", "").lower() == "true"
    return pafs.S3FileSystem(
        access_key=None if anonymous else settings.get("AWS_ACCESS_KEY_ID"),
        secret_key=None if anonymous else settings.get("AWS_SECRET_ACCESS_KEY"),
        session_token=None if anonymous else settings.get("AWS_SESSION_TOKEN"),
        anonymous=anonymous, region=_region(settings), scheme=scheme or "https", endpoint_override=override,
        force_virtual_addressing=settings.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "").lower() == "true")


def arrow_dataset(table: DeltaTable, storage_options: dict[str, Any] | None = None) -> ds.Dataset:
    """A Delta table's rows (at the version it was opened at) as a pyarrow dataset, one fragment
    per data file, read through `table_filesystem`."""
    return table.to_pyarrow_dataset(filesystem=table_filesystem(table.table_uri, storage_options))


def missing_files(table_uri: str, paths: list[str], storage_options: dict[str, Any] | None = None) -> list[str]:
    """Those of `paths` (relative to the table at `table_uri`) that its store no longer holds."""
    if not paths:
        return []
    fs = table_filesystem(table_uri, storage_options)
    return [info.path for info in fs.get_file_info(paths) if info.type == pafs.FileType.NotFound]


def check_bucket(fs: Any, path: str) -> None:
    """Raise when the bucket that `path` (bucket/key, protocol stripped) is in cannot be used:
    FileNotFoundError for a missing bucket, PermissionError for refused credentials."""
    bucket = path.split("/")[0]
    try:
        fs.info(bucket)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"NoSuchBucket: {bucket}") from exc


# Error codes S3 (and S3-compatible stores) answer with, what they mean to a user, and whether the
# same request may succeed later unchanged (retryable). delta-rs raises one exception type for
# every object-store failure and quotes the store's answer in its message (pyarrow's S3 client
# raises OSError with `AWS Error ACCESS_DENIED during …`), so the code is read from the text:
# there is no type to match on.
_CAUSES = [
    (r"NoSuchBucket|NO_SUCH_BUCKET|bucket does not exist", "the bucket does not exist",
     "check the bucket name, or create the bucket", False),
    (r"InvalidAccessKeyId|SignatureDoesNotMatch|signature we calculated does not match|AccessDenied|"
     r"ExpiredToken|InvalidToken|\bForbidden\b|lacked the necessary privileges|Unable to locate credentials|"
     r"NoCredentials|^PermissionError|ACCESS_DENIED|INVALID_ACCESS_KEY_ID|SIGNATURE_DOES_NOT_MATCH|EXPIRED_TOKEN",
     "access was refused",
     "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or storage_options) and the key's permissions", False),
    (r"Connection refused|error sending request|dns error|Could not connect to the endpoint|NETWORK_CONNECTION",
     "the endpoint cannot be reached", "check AWS_ENDPOINT_URL (or storage_options) and the network", True),
    (r"SlowDown|ServiceUnavailable|RequestTimeout|<Code>InternalError</Code>|SLOW_DOWN|SERVICE_UNAVAILABLE|"
     r"THROTTLING|INTERNAL_FAILURE",
     "the store is overloaded or failed the request", "run again; if it persists, check the store's status", True),
]


def storage_failure(exc: BaseException) -> tuple[str, str, bool] | None:
    """(what went wrong, what to do, retryable) when `exc` is an object store refusing a request,
    else None."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "the endpoint cannot be reached", "check AWS_ENDPOINT_URL (or storage_options) and the network", True
    text = f"{type(exc).__name__}: {exc}"
    for pattern, cause, hint, retryable in _CAUSES:
        if re.search(pattern, text):
            return cause, hint, retryable
    return None


def detail(exc: BaseException, limit: int = 160) -> str:
    """The store's own words for a failure: its error code and message when the answer has them
    (delta-rs quotes the S3 XML), else the start of the message, on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if code:
        message = re.search(r"<Message>([^<]+)</Message>", text)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn an object store's refusal (no bucket, bad credentials, no endpoint) into a StorageError,
    retryable when the store may answer later (unreachable, overloaded)."""
    try:
        yield
    except HeadwaterError:
        raise
    except Exception as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        cause, hint, retryable = failure
        raise StorageError(f"{what}: {cause} ({detail(exc)})", hint, retryable=retryable) from exc
