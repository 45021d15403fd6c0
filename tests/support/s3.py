"""An S3-compatible server for tests: moto_server on 127.0.0.1, with real credential checks.

`s3_server` (session scope) starts `moto_server` on a free loopback port, creates an IAM user
with an access key allowed to do anything, then turns moto's authentication on, so requests
signed with any other key or secret are refused as S3 would refuse them. The fixtures,
`s3_server` and `s3_bucket` (a new, empty bucket per test), are in tests/conftest.py.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the server is and a key it accepts."""

    endpoint: str
    key: str
    secret: str
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The standard AWS environment variables that point a client at this server."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client with the good key (for arranging and checking objects)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moto_command(port: int) -> list[str]:
    beside = Path(sys.executable).with_name("moto_server")  # the venv's, else the system's
    exe = str(beside) if beside.exists() else shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    return [exe, "-H", "127.0.0.1", "-p", str(port)]


def wait_until_up(endpoint: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer at {endpoint} within {seconds}s")


def admin_key(endpoint: str) -> tuple[str, str]:
    """An IAM user's key that may do anything (created while moto still accepts anyone)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="headwater")
    iam.put_user_policy(UserName="headwater", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="headwater")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def require_auth(endpoint: str) -> None:
    """From now on every request must be signed by a known key (moto's `reset-auth` API)."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=5):
        pass
