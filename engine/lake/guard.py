"""Guarded commits: a commit written on the version of a table its writer read.

A step reads what it decides on (a source's state, a model's last build) at some version of its
table; its commit is then based on that version (`Based`): written on that snapshot, with a
Delta transaction identifier (`txn`, app id `headwater:<table>`). When another run's commit,
which carries the same app id, reached the table after that version, delta-rs' conflict check
refuses this one and nothing is committed: ConcurrentRunError. That holds on S3 as locally:
delta-rs commits a version with a conditional put. A commit without Headwater's identifier (an
OPTIMIZE) does not stop a guarded one.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import Transaction

from engine.errors import ConcurrentRunError

META_PREFIX = "headwater."  # Headwater's keys in a commit's custom metadata


@dataclass(frozen=True)
class Based:
    """The version of a table its writer read (None: the table did not exist then); a commit
    based on it fails if another run committed to the table after it."""

    version: int | None


def txn(table: str, based_on: Based | None) -> Transaction | None:
    """The transaction identifier a commit based on `based_on` carries: app id
    `headwater:<table>`, and the version the commit means to become."""
    if based_on is None:
        return None
    version = 0 if based_on.version is None else based_on.version + 1
    return Transaction(f"headwater:{table}", version, int(time.time() * 1000))


def properties(custom_metadata: dict[str, Any], transaction: Transaction | None = None) -> CommitProperties:
    """Commit properties with `custom_metadata`, carrying `transaction` when given."""
    return CommitProperties(custom_metadata=custom_metadata,
                            app_transactions=[transaction] if transaction is not None else None)


@contextmanager
def guarded(table: str, based_on: Based | None, exists: Callable[[], bool]) -> Iterator[None]:
    """Turn delta-rs' refusal of a commit based on `based_on` into a ConcurrentRunError (a table
    another run created meanwhile: delta-rs says only that it "already exists", so `exists()`
    is asked)."""
    try:
        yield
    except CommitFailedError as exc:
        if based_on is None:
            raise
        raise conflict(table, based_on) from exc
    except DeltaError as exc:
        if based_on is None or based_on.version is not None or not exists():
            raise
        raise conflict(table, based_on) from exc


def conflict(table: str, based_on: Based) -> ConcurrentRunError:
    """The error of a commit that another run's commit to `table` overtook."""
    read = "did not exist" if based_on.version is None else f"was at version {based_on.version}"
    return ConcurrentRunError(
        f"{table}: another run committed to it since this run read it (it {read}); this run committed nothing to it",
        "runs of one pipeline must not overlap: run again once the other run is done (a rerun takes only "
        "what is still new)")
