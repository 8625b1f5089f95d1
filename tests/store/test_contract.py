"""The store contract: every adapter (SQLite, Consul via the fake, a real Consul when configured)
must pass these unchanged. Each test names the Consul behaviour it pins down."""

from __future__ import annotations

import threading
import time

import pytest

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
    InvalidKey,
    SessionInvalid,
    Set,
    StoreError,
    TooManyOperations,
    ValueTooLarge,
    WatchResult,
)
from tests.store.conftest import Backend


def _later(delay: float, fn: object) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()  # type: ignore[operator]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- get / put / indexes ---------------------------------------------------------------------


def test_put_get_roundtrip_binary_and_empty(backend: Backend) -> None:
    s, k = backend.store, backend.key
    payload = bytes(range(256)) * 4
    assert s.put(k("bin"), payload) is True
    assert s.put(k("empty"), b"") is True
    assert s.get(k("bin")).value == payload
    empty = s.get(k("empty"))
    assert empty is not None and empty.value == b""
    assert s.get(k("missing")) is None


def test_indexes_create_modify_monotonic(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("a"), b"1")
    first = s.get(k("a"))
    assert first.create_index == first.modify_index >= 1
    assert first.lock_index == 0 and first.session is None
    s.put(k("b"), b"1")
    s.put(k("a"), b"2")
    second = s.get(k("a"))
    assert second.create_index == first.create_index
    assert second.modify_index > s.get(k("b")).modify_index > first.modify_index


def test_noop_write_keeps_modify_index(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("a"), b"same")
    before = s.get(k("a")).modify_index
    assert s.put(k("a"), b"same") is True
    assert s.get(k("a")).modify_index == before


def test_cas_zero_creates_only(backend: Backend) -> None:
    s, k = backend.store, backend.key
    assert s.put(k("a"), b"1", cas=0) is True
    assert s.put(k("a"), b"2", cas=0) is False
    assert s.get(k("a")).value == b"1"


def test_cas_on_modify_index_and_failed_cas_changes_nothing(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("a"), b"1")
    entry = s.get(k("a"))
    assert s.put(k("a"), b"2", cas=entry.modify_index + 1000) is False
    assert s.get(k("a")) == entry  # value and every index unchanged
    assert s.put(k("a"), b"2", cas=entry.modify_index) is True
    assert s.put(k("a"), b"3", cas=entry.modify_index) is False  # the index moved on
    assert s.get(k("a")).value == b"2"
    assert s.put(k("nope"), b"x", cas=entry.modify_index) is False  # cas=N on a missing key
    assert s.get(k("nope")) is None


def test_flags_set_and_reset_by_plain_put(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("a"), b"1", flags=42)
    assert s.get(k("a")).flags == 42
    s.put(k("a"), b"1")
    assert s.get(k("a")).flags == 0


def test_conflicting_put_flags_refused(backend: Backend) -> None:
    s, k = backend.store, backend.key
    session = s.session_create(name="t", ttl=backend.min_ttl * 50, lock_delay=0)
    try:
        with pytest.raises(StoreError):
            s.put(k("a"), b"1", cas=0, acquire=session)
        assert s.get(k("a")) is None
    finally:
        s.session_destroy(session)


def test_invalid_keys_refused_and_nothing_written(backend: Backend) -> None:
    s, k = backend.store, backend.key
    for bad in ["/abs", k("sp ace"), k("a//b"), k("a/../b"), k("trail/"), k("x.json"), k("ümlaut"), ""]:
        with pytest.raises(InvalidKey):
            s.put(bad, b"1")
    with pytest.raises(InvalidKey):
        s.txn([Set(k("ok"), b"1"), Set(k("bad key"), b"1")])
    assert s.get(k("ok")) is None
    with pytest.raises(InvalidKey):
        s.get(k("a/../b"))


def test_value_limit(backend: Backend) -> None:
    s, k = backend.store, backend.key
    assert s.put(k("max"), b"x" * MAX_VALUE_BYTES) is True
    assert len(s.get(k("max")).value) == MAX_VALUE_BYTES
    with pytest.raises(ValueTooLarge, match="over"):
        s.put(k("big"), b"x" * (MAX_VALUE_BYTES + 1))
    assert s.get(k("big")) is None


# -- delete ----------------------------------------------------------------------------------


def test_delete_semantics(backend: Backend) -> None:
    s, k = backend.store, backend.key
    assert s.delete(k("missing")) is True  # a non-CAS delete is idempotent
    s.put(k("a"), b"1")
    entry = s.get(k("a"))
    assert s.delete(k("a"), cas=0) is False  # cas=0 never deletes an existing key
    assert s.delete(k("a"), cas=entry.modify_index + 7) is False
    assert s.get(k("a")) == entry
    assert s.delete(k("a"), cas=entry.modify_index) is True
    assert s.get(k("a")) is None


def test_delete_recurse_respects_segment_boundary(backend: Backend) -> None:
    s, k = backend.store, backend.key
    for name in ("d/x", "d/y/z", "dd/x"):
        s.put(k(name), b"1")
    assert s.delete(k("d/"), recurse=True) is True
    assert [e.key for e in s.list(backend.ns)] == [k("dd/x")]
    with pytest.raises(StoreError, match="empty prefix"):
        s.delete("", recurse=True)
    with pytest.raises(StoreError, match="mutually exclusive"):
        s.delete(k("dd/"), recurse=True, cas=1)
    assert [e.key for e in s.list(backend.ns)] == [k("dd/x")]


# -- list / keys -----------------------------------------------------------------------------


def test_list_sorted_by_key_with_prefix(backend: Backend) -> None:
    s, k = backend.store, backend.key
    for name in ("r/b", "r/a", "r/c/d", "rr/a", "r-x"):
        s.put(k(name), name.encode())
    assert [e.key for e in s.list(k("r/"))] == [k("r/a"), k("r/b"), k("r/c/d")]
    assert [e.value for e in s.list(k("r/"))] == [b"r/a", b"r/b", b"r/c/d"]
    assert s.list(k("none/")) == []


def test_keys_with_and_without_separator(backend: Backend) -> None:
    s, k = backend.store, backend.key
    for name in ("k/a", "k/b/c", "k/b/d", "k/e/f/g"):
        s.put(k(name), b"")
    assert s.keys(k("k/")) == [k("k/a"), k("k/b/"), k("k/e/")]
    assert s.keys(k("k/"), separator=None) == [k("k/a"), k("k/b/c"), k("k/b/d"), k("k/e/f/g")]
    assert s.keys(k("nothing/")) == []


# -- transactions ----------------------------------------------------------------------------


def test_txn_applies_all_and_returns_entries(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("old"), b"o")
    old = s.get(k("old"))
    result = s.txn([
        Set(k("a"), b"1", flags=3), Cas(k("b"), b"2", 0), CheckIndex(k("old"), old.modify_index),
        Get(k("old")), CheckNotExists(k("c")), Delete(k("gone")),
    ])
    assert result.ok, result.errors
    assert [e.key for e in result.results] == [k("a"), k("b"), k("old")]
    a, b, got = result.results
    assert (a.value, a.flags, b.value, got.value) == (b"1", 3, b"2", b"o")
    assert a.modify_index == b.modify_index == s.get(k("a")).modify_index > old.modify_index
    assert s.get(k("b")).modify_index == b.modify_index


def test_txn_is_all_or_nothing(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("x"), b"1")
    x = s.get(k("x"))
    result = s.txn([Set(k("a"), b"1"), Cas(k("x"), b"2", x.modify_index + 9), Delete(k("x"))])
    assert not result.ok
    assert [e.op_index for e in result.errors] == [1]
    assert "index is stale" in result.errors[0].what
    assert s.get(k("a")) is None
    assert s.get(k("x")) == x


def test_txn_check_failures_name_the_op(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("e"), b"1")
    e = s.get(k("e"))
    cases = [
        (CheckIndex(k("e"), e.modify_index + 1), "index check"),
        (CheckIndex(k("missing"), 1), "doesn't exist"),
        (CheckNotExists(k("e")), "exists"),
        (Get(k("missing")), "doesn't exist"),
        (DeleteCas(k("e"), e.modify_index + 1), "index is stale"),
        (Cas(k("e"), b"2", 0), "index is stale"),
        (CheckSession(k("e"), "00000000-0000-0000-0000-000000000000"), "session"),
    ]
    for op, text in cases:
        result = s.txn([Set(k("side"), b"effect"), op])
        assert not result.ok, op
        assert result.errors[0].op_index == 1 and text in result.errors[0].what, (op, result.errors)
    assert s.get(k("side")) is None
    assert s.get(k("e")) == e


def test_txn_delete_cas_and_delete(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("a"), b"1")
    s.put(k("b"), b"1")
    a = s.get(k("a"))
    assert s.txn([DeleteCas(k("a"), a.modify_index), Delete(k("b")), DeleteCas(k("never"), 5)]).ok
    assert s.get(k("a")) is None and s.get(k("b")) is None


def test_txn_op_limit_raises_and_writes_nothing(backend: Backend) -> None:
    s, k = backend.store, backend.key
    ops = [Set(k(f"n{i}"), b"v") for i in range(MAX_TXN_OPS + 1)]
    with pytest.raises(TooManyOperations, match=str(MAX_TXN_OPS)):
        s.txn(ops)
    assert s.list(backend.ns) == []
    assert s.txn(ops[:MAX_TXN_OPS]).ok
    assert len(s.list(backend.ns)) == MAX_TXN_OPS


def test_txn_byte_limits_raise_and_write_nothing(backend: Backend) -> None:
    s, k = backend.store, backend.key
    with pytest.raises(ValueTooLarge):
        s.txn([Set(k("small"), b"v"), Set(k("big"), b"x" * (MAX_VALUE_BYTES + 1))])
    chunk = MAX_TXN_BYTES // 4
    with pytest.raises(ValueTooLarge, match="transaction"):
        s.txn([Set(k(f"c{i}"), b"x" * chunk) for i in range(5)])
    assert s.list(backend.ns) == []
    assert s.txn([Set(k(f"c{i}"), b"x" * (chunk - 64)) for i in range(4)]).ok


# -- watch -----------------------------------------------------------------------------------


def test_watch_index_zero_does_not_block(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("w"), b"1")
    got: list[WatchResult] = []
    watcher = threading.Thread(target=lambda: got.append(s.watch(k("w"), index=0, wait=60)), daemon=True)
    watcher.start()
    watcher.join(20)  # a blocking watch would still be waiting out its 60 s
    assert not watcher.is_alive() and got
    result = got[0]
    assert result.index == s.get(k("w")).modify_index
    assert [e.value for e in result.entries] == [b"1"]


def test_watch_times_out_with_unchanged_index(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("w"), b"1")
    index = s.get(k("w")).modify_index
    started = time.monotonic()
    result = s.watch(k("w"), index=index, wait=0.3)
    assert time.monotonic() - started >= 0.25  # waiting out ``wait`` is the behaviour under test
    assert result.index == index


def test_watch_returns_on_change(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("w"), b"1")
    index = s.get(k("w")).modify_index
    _later(0.2, lambda: s.put(k("w"), b"2"))
    result = s.watch(k("w"), index=index, wait=10)
    assert result.index > index
    assert [e.value for e in result.entries] == [b"2"]


def test_watch_missing_key_wakes_on_create(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("other"), b"1")
    first = s.watch(k("later"), index=0, wait=1)
    assert first.entries == () and first.index >= 1
    _later(0.2, lambda: s.put(k("later"), b"here"))
    deadline = time.monotonic() + 10
    index = first.index
    while time.monotonic() < deadline:  # a return is not a guarantee of change: loop like a client
        result = s.watch(k("later"), index=index, wait=5)
        if result.entries:
            assert result.entries[0].value == b"here"
            return
        index = max(result.index, 1)
    pytest.fail("watch never saw the key being created")


def test_watch_prefix_wakes_on_delete_and_index_never_slides_back(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("p/a"), b"1")
    s.put(k("p/b"), b"1")
    first = s.watch(k("p/"), index=0, wait=1, recurse=True)
    assert [e.key for e in first.entries] == [k("p/a"), k("p/b")]
    _later(0.2, lambda: s.delete(k("p/b")))  # the newest entry goes: a tombstone keeps the index up
    result = s.watch(k("p/"), index=first.index, wait=10, recurse=True)
    assert result.index > first.index
    assert [e.key for e in result.entries] == [k("p/a")]


def test_watch_prefix_ignores_unrelated_writes_eventually(backend: Backend) -> None:
    s, k = backend.store, backend.key
    s.put(k("q/a"), b"1")
    first = s.watch(k("q/"), index=0, wait=1, recurse=True)
    s.put(k("elsewhere"), b"1")
    result = s.watch(k("q/"), index=first.index, wait=0.3, recurse=True)
    assert result.index == first.index  # unrelated key: the prefix index did not move


# -- sessions and locks ----------------------------------------------------------------------


def test_session_renew_and_destroy(backend: Backend) -> None:
    s = backend.store
    session = s.session_create(name="t", ttl=backend.min_ttl * 50, lock_delay=0)
    assert s.session_renew(session) is True
    s.session_destroy(session)
    assert s.session_renew(session) is False
    s.session_destroy(session)  # idempotent


def test_acquire_release_lock_index(backend: Backend) -> None:
    s, k = backend.store, backend.key
    one = s.session_create(name="one", ttl=backend.min_ttl * 50, lock_delay=0)
    two = s.session_create(name="two", ttl=backend.min_ttl * 50, lock_delay=0)
    try:
        assert s.put(k("lock"), b"one", acquire=one) is True
        held = s.get(k("lock"))
        assert (held.session, held.lock_index, held.value) == (one, 1, b"one")
        assert s.put(k("lock"), b"two", acquire=two) is False
        assert s.put(k("lock"), b"one again", acquire=one) is True  # same holder: no new lock
        assert s.get(k("lock")).lock_index == 1
        assert s.put(k("lock"), b"x", release=two) is False
        assert s.put(k("lock"), b"released", release=one) is True
        free = s.get(k("lock"))
        assert (free.session, free.lock_index, free.value) == (None, 1, b"released")
        assert s.put(k("lock"), b"two", acquire=two) is True  # release imposes no lock-delay
        assert s.get(k("lock")).lock_index == 2
    finally:
        s.session_destroy(one)
        s.session_destroy(two)


def test_locks_are_advisory_plain_put_keeps_holder(backend: Backend) -> None:
    s, k = backend.store, backend.key
    one = s.session_create(name="one", ttl=backend.min_ttl * 50, lock_delay=0)
    try:
        s.put(k("lock"), b"one", acquire=one)
        assert s.put(k("lock"), b"overwritten") is True
        entry = s.get(k("lock"))
        assert (entry.value, entry.session) == (b"overwritten", one)
    finally:
        s.session_destroy(one)


def test_acquire_with_unknown_session_raises(backend: Backend) -> None:
    s, k = backend.store, backend.key
    with pytest.raises(SessionInvalid):
        s.put(k("lock"), b"x", acquire="8b1a9953-c461-1296-a0f2-6c8b3e1a2c3d")
    assert s.get(k("lock")) is None


def test_destroy_releases_and_starts_lock_delay(backend: Backend) -> None:
    s, k = backend.store, backend.key
    delay = 0.6 if backend.name != "consul-real" else 2.0
    one = s.session_create(name="one", ttl=backend.min_ttl * 50, lock_delay=delay)
    two = s.session_create(name="two", ttl=backend.min_ttl * 50, lock_delay=0)
    try:
        assert s.put(k("lock"), b"one", acquire=one)
        s.session_destroy(one)
        released = s.get(k("lock"))
        assert released.session is None and released.value == b"one"
        assert s.put(k("lock"), b"two", acquire=two) is False  # lock-delay
        time.sleep(delay + 0.2)
        assert s.put(k("lock"), b"two", acquire=two) is True
    finally:
        s.session_destroy(two)


def test_behavior_delete_removes_held_keys(backend: Backend) -> None:
    s, k = backend.store, backend.key
    eph = s.session_create(name="eph", ttl=backend.min_ttl * 50, behavior="delete", lock_delay=0)
    s.put(k("eph"), b"1", acquire=eph)
    s.put(k("keep"), b"1")
    s.session_destroy(eph)
    assert s.get(k("eph")) is None
    assert s.get(k("keep")) is not None


def test_session_expires_after_ttl_and_releases_lock(backend: Backend) -> None:
    s, k = backend.store, backend.key
    ttl = backend.min_ttl
    session = s.session_create(name="short", ttl=ttl, lock_delay=0)
    assert s.put(k("lock"), b"mine", acquire=session)
    index = s.get(k("lock")).modify_index
    started = time.monotonic()
    deadline = started + 2 * ttl + max(2.0, ttl)
    while time.monotonic() < deadline:
        result = s.watch(k("lock"), index=index, wait=max(0.1, deadline - time.monotonic()))
        if result.entries and result.entries[0].session is None:
            break
        index = max(result.index, 1)
    else:
        pytest.fail(f"session with ttl {ttl}s still held the lock after {2 * ttl}s + slack")
    assert time.monotonic() - started >= ttl * 0.9  # TTL is a lower bound
    assert s.session_renew(session) is False


def test_renewal_keeps_session_alive(backend: Backend) -> None:
    s, k = backend.store, backend.key
    ttl = backend.min_ttl
    session = s.session_create(name="kept", ttl=ttl, lock_delay=0)
    try:
        s.put(k("lock"), b"mine", acquire=session)
        end = time.monotonic() + 3 * ttl
        while time.monotonic() < end:
            assert s.session_renew(session) is True
            time.sleep(ttl / 3)
        assert s.get(k("lock")).session == session
    finally:
        s.session_destroy(session)


def test_check_session_fences_writes(backend: Backend) -> None:
    s, k = backend.store, backend.key
    leader = s.session_create(name="leader", ttl=backend.min_ttl * 50, lock_delay=0)
    other = s.session_create(name="other", ttl=backend.min_ttl * 50, lock_delay=0)
    try:
        s.put(k("leader"), b"me", acquire=leader)
        assert s.txn([CheckSession(k("leader"), leader), Set(k("state"), b"1")]).ok
        refused = s.txn([CheckSession(k("leader"), other), Set(k("state"), b"2")])
        assert not refused.ok and refused.errors[0].op_index == 0
        s.session_destroy(leader)
        deposed = s.txn([CheckSession(k("leader"), leader), Set(k("state"), b"3")])
        assert not deposed.ok and deposed.errors[0].op_index == 0
        assert s.get(k("state")).value == b"1"
    finally:
        s.session_destroy(other)


def test_session_ttl_bounds_refused(backend: Backend) -> None:
    with pytest.raises(StoreError):
        backend.store.session_create(name="x", ttl=100000.0)
