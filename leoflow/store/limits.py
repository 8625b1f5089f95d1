"""Client-side checks every adapter runs before sending anything, so a request that Consul would
refuse (413/400) fails the same way on every backend, with an error naming the key, and writes
nothing."""

from __future__ import annotations

from collections.abc import Sequence

from leoflow.store import keys
from leoflow.store.port import (
    MAX_TXN_BYTES,
    MAX_TXN_OPS,
    MAX_VALUE_BYTES,
    Cas,
    CheckIndex,
    CheckNotExists,
    CheckSession,
    Delete,
    DeleteCas,
    Get,
    Op,
    Set,
    StoreError,
    TooManyOperations,
    ValueTooLarge,
)

_OP_TYPES = (Set, Cas, Delete, DeleteCas, CheckIndex, CheckNotExists, CheckSession, Get)


def check_value(key: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise StoreError(f"value for key {key!r} must be bytes, got {type(value).__name__}")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueTooLarge(f"value for key {key!r} is {len(value)} bytes, over the {MAX_VALUE_BYTES} byte limit")


def check_index(what: str, index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StoreError(f"{what} must be an int >= 0, got {index!r}")


def check_put(key: str, value: bytes, cas: int | None, flags: int, acquire: str | None, release: str | None) -> None:
    keys.validate_key(key)
    check_value(key, value)
    if sum(x is not None for x in (cas, acquire, release)) > 1:
        raise StoreError(f"put {key!r}: cas, acquire and release are mutually exclusive")
    if cas is not None:
        check_index(f"cas for key {key!r}", cas)
    check_flags(key, flags)
    for name, session in (("acquire", acquire), ("release", release)):
        if session is not None and (not isinstance(session, str) or not session):
            raise StoreError(f"put {key!r}: {name} needs a session id")


def check_delete_tree(prefix: str, cas: int | None) -> None:
    if cas is not None:
        raise StoreError(f"delete {prefix!r}: recurse and cas are mutually exclusive")
    keys.validate_prefix(prefix)
    if prefix == "":
        raise StoreError("delete: refusing a recursive delete of the empty prefix (the whole store)")


def check_flags(key: str, flags: int) -> None:
    if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags < 2**64:
        raise StoreError(f"flags for key {key!r} must be a uint64, got {flags!r}")


def check_txn(ops: Sequence[Op]) -> None:
    """Raise (naming the op) if Consul would refuse this transaction; nothing has been sent yet."""
    if len(ops) > MAX_TXN_OPS:
        raise TooManyOperations(f"transaction has {len(ops)} operations, over the limit of {MAX_TXN_OPS}")
    total = 0
    for i, op in enumerate(ops):
        if not isinstance(op, _OP_TYPES):
            raise StoreError(f"transaction op {i} is not a store operation: {op!r}")
        keys.validate_key(op.key)
        total += len(op.key)
        if isinstance(op, Set | Cas):
            check_value(op.key, op.value)
            check_flags(op.key, op.flags)
            total += len(op.value)
        if isinstance(op, Cas | DeleteCas | CheckIndex):
            check_index(f"index of op {i} on key {op.key!r}", op.index)
        if isinstance(op, CheckSession) and (not isinstance(op.session, str) or not op.session):
            raise StoreError(f"check-session op {i} on key {op.key!r} needs a session id")
    if total > MAX_TXN_BYTES:
        raise ValueTooLarge(f"transaction carries {total} bytes of keys and values, over the {MAX_TXN_BYTES} limit")
