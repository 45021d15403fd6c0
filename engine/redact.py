"""Credentials masked out of everything Headwater prints, logs, stores or sends: `mask(text)`.

What is masked, as `***`:

* the password of any URL (`postgresql+psycopg://hw:***@db/warehouse`), and secret-looking
  query parameters (`?password=***`);
* `NAME=value` and `'NAME': 'value'` where NAME looks secret (`AWS_SECRET_ACCESS_KEY`,
  `*_PASSWORD`, `*_TOKEN`, `client_secret`, `account_key`, …: see `SECRET_NAME`);
* wherever they appear, the values of secret-looking environment variables, the passwords of
  URLs in the environment or in any text masked before, and every value `remember`ed: the
  warehouse URL's password and the secret-looking `storage_options` values, registered where
  settings are read (the CLI, the Prefect flow, `engine.publish.connect`, the run manifest).
  Values shorter than `MIN_SECRET` characters are masked only where a pattern above finds them.

`MaskFilter` masks log records; importing this module puts it on the `headwater` loggers.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
MIN_SECRET = 6  # shorter known values would mask ordinary words; the patterns still catch them
SECRET_NAME = re.compile(r"secret|passw|token|credential|private_key|account_key|sas_key|api_key|"
                         r"access_key(?!_id)|signature", re.IGNORECASE)
_NOT_SECRET = {"true", "false", "none", "null", "yes", "no"}  # flags named like secrets (…_TOKEN_REFRESH=true)
# The engine's loggers (tests/test_redact.py checks that every logger the engine names is here).
LOGGERS = ("headwater", "headwater.cli", "headwater.lake", "headwater.load", "headwater.publish",
           "headwater.runs", "headwater.sources", "headwater.transform")

_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)([^@\s'\"/]+)(?=@)")
_QUERY_SECRET = re.compile(r"([?&;][A-Za-z_]*(?:password|passwd|pwd|secret|token|key|sig|signature)"
                           r"[A-Za-z_]*=)([^&\s'\"#]+)", re.IGNORECASE)
_ASSIGNED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_.\-]*)(\s*=\s*)([^\s&;,'\")}\]]+)")
_QUOTED = re.compile(r"(['\"])([^'\"]{1,80})\1(\s*:\s*)(['\"])(.*?)\4")

_remembered: set[str] = set()
_lock = threading.Lock()


def remember(*values: str | None) -> None:
    """Mask these values wherever they appear from now on (in this process)."""
    with _lock:
        for value in values:
            if value and len(value) >= MIN_SECRET and value.lower() not in _NOT_SECRET:
                _remembered.update({value, quote(value, safe=""), unquote(value)})


def url_password(url: str | None) -> str | None:
    """The password in `url` (decoded), or None."""
    if not url or "://" not in url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def secret_values(options: Mapping[str, Any] | None) -> list[str]:
    """The values of `options` whose keys look secret (and the passwords of URL values)."""
    out = []
    for key, value in (options or {}).items():
        text = str(value)
        if SECRET_NAME.search(str(key)):
            out.append(text)
        elif (password := url_password(text)) is not None:
            out.append(password)
    return out


def remember_settings(warehouse: str | None = None, storage_options: Mapping[str, Any] | None = None,
                      *urls: str | None) -> None:
    """Mask the warehouse URL's password, the secret `storage_options` values and the passwords
    of `urls` from now on."""
    remember(url_password(warehouse), *secret_values(storage_options), *(url_password(u) for u in urls))


def _known() -> tuple[str, ...]:
    """Every value to mask now: remembered ones and the environment's secrets, longest first."""
    with _lock:
        values = set(_remembered)
    for value in secret_values(os.environ):
        if len(value) >= MIN_SECRET and value.lower() not in _NOT_SECRET:
            values.update({value, quote(value, safe="")})
    return tuple(sorted(values, key=lambda v: (-len(v), v)))


@lru_cache(maxsize=16)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(re.escape(v) for v in values)) if values else None


def _assigned(match: re.Match[str]) -> str:
    key, sep, _ = match.groups()
    return f"{key}{sep}{MASK}" if SECRET_NAME.search(key) else match.group(0)


def _quoted(match: re.Match[str]) -> str:
    q, key, sep, vq, _ = match.groups()
    return f"{q}{key}{q}{sep}{vq}{MASK}{vq}" if SECRET_NAME.search(key) else match.group(0)


def mask(text: str) -> str:
    """`text` with every credential in it replaced by `***` (see the module's docstring)."""
    if not text:
        return text
    found = [m.group(2) for m in _URL_PASSWORD.finditer(text)]
    if found:  # a password seen in a URL is masked wherever it appears, here and from now on
        remember(*found)
    pattern = _pattern(_known())
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _ASSIGNED.sub(_assigned, text)
    return _QUOTED.sub(_quoted, text)


def mask_data(value: Any) -> Any:
    """`value` (strings, and dicts, lists and tuples of them) with every string masked."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_data(v) for v in value)
    return value


class MaskFilter(logging.Filter):
    """Masks a log record's message, and its traceback text, in place (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the handler's to report, not ours
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


def guard(names: Iterable[str] = LOGGERS) -> None:
    """Put a `MaskFilter` on each of the loggers `names` (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskFilter) for f in logger.filters):
            logger.addFilter(MaskFilter())


guard()
