"""Errors the repositories raise; each names the record at fault so callers can answer clearly.

They subclass ``StoreError`` so a caller that only wants "the store said no" can catch one type,
while the API maps each to its HTTP status (NotFound 404, AlreadyExists/Conflict 409,
StaleTry 409, ValueTooLarge 413/400) and the scheduler treats ``Fenced`` as "step down now".
"""

from __future__ import annotations

from leoflow.store.fence import NotLeader
from leoflow.store.port import StoreError, ValueTooLarge


class RepoError(StoreError):
    pass


class NotFound(RepoError):
    pass


class AlreadyExists(RepoError):
    pass


class Conflict(RepoError):
    """A compare-and-set lost: someone else changed the record since it was read. Re-read, re-decide."""


class StaleTry(Conflict):
    """A write for an older try (or a try that is not the current one) was refused: a newer try owns the TI."""


class Fenced(NotLeader, RepoError):
    """The leader fence (check-session on the leader key) failed: this process is no longer leader.

    A ``leoflow.store.fence.NotLeader``, so the scheduler catches one type whatever path wrote.
    """


class XComTooLarge(ValueTooLarge):
    """An XCom value serialises to more than the 256 KiB cap; nothing was stored."""


class CorruptRecord(RepoError):
    """A stored value could not be decoded into its record; the message names the key."""


__all__ = [
    "AlreadyExists",
    "Conflict",
    "CorruptRecord",
    "Fenced",
    "NotFound",
    "RepoError",
    "StaleTry",
    "XComTooLarge",
]
