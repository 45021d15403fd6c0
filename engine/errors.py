"""The one exception type users see, with what went wrong and what to do about it."""
from __future__ import annotations


class HeadwaterError(Exception):
    """A failure the user can act on: `str(err)` is one line saying what happened and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)
