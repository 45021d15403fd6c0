"""engine.redact: what `mask` hides, what it leaves alone, and that every engine logger masks."""
from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pytest

from engine import redact
from engine.errors import ConfigError, one_line
from engine.redact import MASK, mask, mask_data, remember, remember_settings

ROOT = Path(__file__).resolve().parent.parent


def secret() -> str:
    return "S3cr" + uuid.uuid4().hex[:12]


@pytest.mark.parametrize(("text", "want"), [
    ("postgresql+psycopg://hw:S3cret@db:5432/wh", "postgresql+psycopg://hw:***@db:5432/wh"),
    ("warehouse mysql://u:p%40ss:w@h/db done", "warehouse mysql://u:***@h/db done"),
    ("s3://key:secretvalue@bucket/lake", "s3://key:***@bucket/lake"),
    ("https://host/x?sig=abc123&sv=2020&token=zzz", "https://host/x?sig=***&sv=2020&token=***"),
    ("AWS_SECRET_ACCESS_KEY=abcd1234 next", "AWS_SECRET_ACCESS_KEY=*** next"),
    ("{'aws_secret_access_key': 'abc', 'region': 'x'}", "{'aws_secret_access_key': '***', 'region': 'x'}"),
    ('{"client_secret": "abc def"}', '{"client_secret": "***"}'),
    ("DB_PASSWORD = hunter2", "DB_PASSWORD = ***"),
])
def test_patterns(text: str, want: str) -> None:
    assert mask(text) == want


@pytest.mark.parametrize("text", [
    "postgresql+psycopg://hw@db:5432/wh",  # no password
    "duckdb:///tmp/wh.duckdb", "s3://bucket/lake/raw/orders", "http://host:8080/path@x",
    "primary_key=id", "AWS_ACCESS_KEY_ID=AKIAEXAMPLE", "lock_timeout = 200", "unexpected token: '}'",
    "model 'photo_likes' failed: pipeline.py:12 in photo_likes: KeyError: 'photoid'",
])
def test_what_is_not_a_secret_is_left_alone(text: str) -> None:
    assert mask(text) == text


def test_environment_secrets_are_masked_wherever_they_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    value, password = secret(), secret()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", value)
    monkeypatch.setenv("SOME_DATABASE_URL", f"postgresql://u:{password}@h/db")
    monkeypatch.setenv("FEATURE_TOKEN_REFRESH", "true")  # named like a secret, but a flag
    text = f"failed with {value}, then {password} alone; refresh is true"
    assert mask(text) == f"failed with {MASK}, then {MASK} alone; refresh is true"


def test_remembered_settings_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    password, key, token = secret(), secret(), secret()
    remember_settings(f"postgresql+psycopg://hw:{password}@db/wh",
                      {"AWS_SECRET_ACCESS_KEY": key, "AWS_REGION": "eu-west-1", "sas_token": token})
    text = f"{password} {key} {token} eu-west-1 {password.upper()}"
    assert mask(text) == f"{MASK} {MASK} {MASK} eu-west-1 {password.upper()}"
    encoded = secret() + "@/:"
    remember(encoded)
    assert MASK in mask("url-encoded: " + encoded.replace("@", "%40").replace("/", "%2F").replace(":", "%3A"))
    remember("short")  # under MIN_SECRET: only the patterns would catch it
    assert mask("a short word") == "a short word"


def test_mask_data_walks_dicts_and_lists() -> None:
    password = secret()
    remember(password)
    step = {"detail": f"at {password}", "rows": 3, "checks": [{"detail": f"x {password}"}], "t": (password,)}
    assert mask_data(step) == {"detail": f"at {MASK}", "rows": 3, "checks": [{"detail": f"x {MASK}"}], "t": (MASK,)}


def test_errors_are_masked_and_one_line() -> None:
    password = secret()
    err = ConfigError(f"cannot reach postgresql://hw:{password}@db/x\nsecond line", f"check {password}")
    assert password not in str(err) and "\n" not in str(err)
    assert str(err) == "cannot reach postgresql://hw:***@db/x second line (check ***)"


def test_one_line_drops_native_backtraces() -> None:
    rust = "Kernel error: Json error: unexpected 'g'\n   0: <unknown>\n   1: <unknown>\n"
    assert one_line(rust) == "Kernel error: Json error: unexpected 'g'"
    full = ("Generic error: no file\n\nStack backtrace:\n   0: std::backtrace::Backtrace::create\n"
            "             at /rustc/x/library/std/src/backtrace.rs:331:13\n")
    assert one_line(full) == "Generic error: no file"
    assert one_line("\x1b[31mred\x1b[0m text\n  on two lines") == "red text on two lines"


def test_log_records_are_masked_on_every_engine_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    value = secret()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", value)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(logging.Formatter().format(record))

    top = logging.getLogger("headwater")
    handler, level = Keep(), top.level
    top.addHandler(handler)
    top.setLevel(logging.DEBUG)
    try:
        for name in redact.LOGGERS:
            logging.getLogger(name).info("key %s in %s", value, name)
        try:
            raise RuntimeError(f"boom {value}")
        except RuntimeError:
            logging.getLogger("headwater.runs").exception("failed")
    finally:
        top.removeHandler(handler)
        top.setLevel(level)
    assert len(seen) == len(redact.LOGGERS) + 1
    assert all(value not in line for line in seen) and f"boom {MASK}" in seen[-1]


def test_every_engine_logger_is_guarded() -> None:
    named = set()
    for path in list((ROOT / "engine").rglob("*.py")) + list((ROOT / "flows").rglob("*.py")):
        named |= set(re.findall(r"getLogger\(\"(headwater[\w.]*)\"\)", path.read_text()))
    assert named and named <= set(redact.LOGGERS), sorted(named - set(redact.LOGGERS))
