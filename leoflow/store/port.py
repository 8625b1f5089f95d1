"""The store port: Consul KV semantics, as a narrow contract of plain values.

Every adapter (``consul.py`` over py-consul, ``sqlite.py`` embedded) implements exactly this and
passes the same contract suite (``tests/store/test_contract.py``). Nothing outside ``leoflow/store``
builds keys; repositories on top of this port do.

Contract, in short (Consul's documented behaviour, which the fake in ``tests/fakes/consul.py``
reproduces):

* Indexes are ints >= 1. Every successful write bumps one global index; an entry's
  ``modify_index`` is the index of the write that last changed it.
* ``put(..., cas=0)`` creates only; ``cas=N`` writes only if the entry's ``modify_index == N``.
  A failed CAS returns False and changes nothing.
* A write that changes nothing (same value, flags and session) succeeds but keeps the entry's
  ``modify_index`` (Consul's ``kvsSetTxn``): two CAS writers of *identical* bytes can both
  "win", so a state transition must always change the value.
* ``txn`` applies all operations atomically or none; at most ``MAX_TXN_OPS`` operations, each
  value at most ``MAX_VALUE_BYTES``, keys plus values together at most ``MAX_TXN_BYTES`` (Consul
  caps the base64 JSON body at 512 KiB); violations raise before anything is written.
* ``watch`` blocks until the index of the key/prefix exceeds ``index`` or ``wait`` elapses, and
  may return early with nothing changed (callers must compare).
* Sessions expire after their TTL (the server may take up to 2x TTL); when a session ends,
  locks it holds are released (``behavior="release"``) or their keys deleted (``"delete"``), and
  a lock-delay applies to released locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

MAX_TXN_OPS = 64
MAX_VALUE_BYTES = 512 * 1024
# Raw bytes (keys + values) of one txn: base64 (x4/3) plus JSON framing of 64 ops stays under
# Consul's 512 KiB txn_max_req_len.
MAX_TXN_BYTES = 360 * 1024


class StoreError(Exception):
    """Base of every store failure; the message names the key or operation at fault."""


class ValueTooLarge(StoreError):
    pass


class TooManyOperations(StoreError):
    pass


class InvalidKey(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The backend could not be reached or answered 5xx; the caller may retry."""


class SessionInvalid(StoreError):
    """The session does not exist (expired or destroyed): leadership is lost."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    create_index: int
    modify_index: int
    lock_index: int = 0
    flags: int = 0
    session: str | None = None


# Transaction operations (Consul /v1/txn KV verbs).
@dataclass(frozen=True)
class Set:
    key: str
    value: bytes
    flags: int = 0


@dataclass(frozen=True)
class Cas:
    key: str
    value: bytes
    index: int  # 0: create only
    flags: int = 0


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class DeleteCas:
    key: str
    index: int


@dataclass(frozen=True)
class CheckIndex:
    key: str
    index: int


@dataclass(frozen=True)
class CheckNotExists:
    key: str


@dataclass(frozen=True)
class CheckSession:
    """Succeeds only while ``session`` holds the lock on ``key``: the leader fence."""

    key: str
    session: str


@dataclass(frozen=True)
class Get:
    key: str


Op = Set | Cas | Delete | DeleteCas | CheckIndex | CheckNotExists | CheckSession | Get


@dataclass(frozen=True)
class TxnError:
    op_index: int
    what: str


@dataclass(frozen=True)
class TxnResult:
    ok: bool
    # On success: one entry per set/cas/get op, in op order (set/cas entries carry the written value
    # and the new modify_index); deletes and checks add none.
    results: tuple[Entry, ...] = ()
    errors: tuple[TxnError, ...] = ()
    # The index the writes were applied at (== modify_index of the written entries); 0 when the
    # transaction wrote nothing or the backend does not say. Do not compare across backends.
    index: int = 0


@dataclass(frozen=True)
class WatchResult:
    index: int
    entries: tuple[Entry, ...]


Behavior = Literal["release", "delete"]


class Store(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def list(self, prefix: str) -> list[Entry]:
        """Every entry whose key starts with ``prefix``, sorted by key."""
        ...

    def keys(self, prefix: str, separator: str | None = "/") -> list[str]:
        """Key names under ``prefix``; with a separator, rolled up to the next separator (Consul's keys=)."""
        ...

    def put(
        self,
        key: str,
        value: bytes,
        *,
        cas: int | None = None,
        flags: int = 0,
        acquire: str | None = None,
        release: str | None = None,
    ) -> bool:
        """True if written. ``cas``/``acquire``/``release`` are mutually exclusive (StoreError).
        ``acquire``: False if another session holds the lock or lock-delay is running; an unknown
        session raises SessionInvalid. ``release``: True only for the holder; the value is replaced
        by ``value`` (send the current value to keep it). Locks are advisory: a plain put on a held
        key succeeds and keeps the holder."""
        ...

    def delete(self, key: str, *, cas: int | None = None, recurse: bool = False) -> bool:
        """A plain delete is True even for a missing key. ``cas=N`` deletes only at that
        modify_index (``cas=0`` never deletes an existing key). ``recurse`` treats ``key`` as a
        string prefix (end it with '/'); the empty prefix is refused."""
        ...

    def txn(self, ops: Sequence[Op]) -> TxnResult:
        """All ops apply atomically or none do. A failed check/CAS is not an exception: ``ok`` is
        False and ``errors`` name the op indexes. Limits raise before anything is sent."""
        ...

    def watch(self, key: str, *, index: int, wait: float, recurse: bool = False) -> WatchResult:
        """Blocking query on a key (or a prefix with ``recurse``): returns when its index > ``index``
        or ``wait`` seconds pass; ``index=0`` returns at once. Loop with ``watching.Watcher``."""
        ...

    def session_create(
        self, *, name: str, ttl: float, behavior: Behavior = "release", lock_delay: float = 15.0
    ) -> str: ...

    def session_renew(self, session: str) -> bool:
        """False when the session is gone: the holder must act as if it lost every lock at once."""
        ...

    def session_destroy(self, session: str) -> None: ...

    def close(self) -> None: ...
