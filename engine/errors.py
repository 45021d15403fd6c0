"""The errors Headwater raises: one class per kind of failure, each retryable or not, each
keeping the exception that caused it (`raise … from exc`).

`str(err)` is one line saying what happened and what to do. `retryable` says whether running
the same step again may succeed without anyone changing anything (a network blip, a lock held
by another process, a store answering slowly); the Prefect tasks retry only those.

`where(exc)` and `user_traceback(exc)` find the user's own code in a traceback, so a model that
raises is reported as `pipeline.py:12 in photo_likes: KeyError: 'photoid'`, not as a frame of
the engine that called it. `one_line(text)` is any error text as one line: without the native
backtrace a Rust library appends under RUST_BACKTRACE (the traceback, printed under
HEADWATER_DEBUG=1, still has it).
"""
from __future__ import annotations

import re
import sysconfig
import traceback
from pathlib import Path
from types import TracebackType

from engine.redact import mask

# Where a native backtrace starts in an error's text: Rust's "   0: <frame>" list (std's
# Backtrace), anyhow's "Stack backtrace:", or the hint Rust prints with a panic.
_BACKTRACE = re.compile(r"^\s*(?:0: |Stack backtrace:|stack backtrace:|note: run with `RUST_BACKTRACE)",
                        re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(text: str) -> str:
    """`text` as one line: colour codes and any native backtrace dropped, whitespace collapsed."""
    text = _ANSI.sub("", text)
    start = _BACKTRACE.search(text)
    if start is not None:
        text = text[:start.start()]
    return " ".join(text.split())


class HeadwaterError(Exception):
    """A failure the user can act on: `str(err)` is one line saying what happened and what to do."""

    retryable: bool = False  # the class default; an instance may say otherwise

    def __init__(self, message: str, hint: str | None = None, *, retryable: bool | None = None) -> None:
        message = mask(one_line(message))
        hint = mask(one_line(hint)) if hint else hint
        self.message = message
        self.hint = hint
        if retryable is not None:
            self.retryable = retryable
        super().__init__(f"{message} ({hint})" if hint else message)


class ConfigError(HeadwaterError):
    """Settings, a pipeline file or a declaration (source, model, check, selector) is wrong."""


class SourceError(HeadwaterError):
    """A source cannot be read as declared (no such table, an unknown file format, a bad cursor)."""


class SchemaError(SourceError):
    """Rows do not fit the table's schema or the source's contract."""


class ModelError(HeadwaterError):
    """A model's own code raised. The cause is the user's exception; `location` is the user's
    frame it came from (`pipeline.py:12 in photo_likes`), when there is one."""

    def __init__(self, model: str, cause: BaseException) -> None:
        self.model = model
        self.location = where(cause)
        self.cause_line = exception_line(cause)
        at = f"{self.location}: " if self.location else ""
        super().__init__(f"model {model!r} failed: {at}{self.cause_line}")


class CheckError(HeadwaterError):
    """A model's output failed an error-severity check; nothing was committed."""


class WarehouseError(HeadwaterError):
    """The warehouse refused a publish or a query, or cannot be reached."""


class StorageError(HeadwaterError):
    """The lake's or a source's storage refused or failed a request."""


class ConcurrentRunError(HeadwaterError):
    """Another run committed to a table this run is writing; running again after it is safe."""

    retryable = True


# -- the user's code in a traceback ----------------------------------------------------------
_ENGINE_DIRS = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "flows")
_LIBRARY_DIRS = tuple({Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
                       if (p := sysconfig.get_paths().get(key))})


def is_user_file(filename: str) -> bool:
    """Whether `filename` is the user's code: not Headwater's, not installed, not the standard library."""
    if filename.startswith("<"):  # <frozen …>, <string>: code without a file of its own
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(d) for d in _ENGINE_DIRS + _LIBRARY_DIRS)


def _frames(tb: TracebackType | None) -> list[TracebackType]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def where(exc: BaseException) -> str | None:
    """`file.py:line in function` of the deepest frame of the user's code in `exc`'s traceback
    (None when the user's code is not in it)."""
    for tb in reversed(_frames(exc.__traceback__)):
        code = tb.tb_frame.f_code
        if is_user_file(code.co_filename):
            return f"{Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"
    return None


def user_traceback(exc: BaseException) -> str:
    """`exc`'s traceback from the first frame of the user's code down (what the user's code
    called, libraries included), formatted as Python prints it; the whole traceback when the
    user's code is not in it."""
    frames = _frames(exc.__traceback__)
    first = next((tb for tb in frames if is_user_file(tb.tb_frame.f_code.co_filename)), None)
    if first is None:
        return "".join(traceback.format_exception(exc))
    return "".join(traceback.format_exception(type(exc), exc, first, chain=False))


def cause_of(exc: BaseException) -> BaseException:
    """The user's exception behind a `ModelError` (the error itself otherwise)."""
    if isinstance(exc, ModelError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def exception_line(exc: BaseException) -> str:
    """`Type: message` of an exception that is not Headwater's own: one line, credentials masked."""
    return mask(one_line(f"{type(exc).__name__}: {exc}"))


def traceback_text(exc: BaseException) -> str:
    """The traceback to show for `exc`: for a model that raised, the user's from their own code
    down; else the whole of it."""
    cause = cause_of(exc)
    return user_traceback(cause) if cause is not exc else "".join(traceback.format_exception(exc))
