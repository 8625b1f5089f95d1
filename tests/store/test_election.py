"""Leader election and fencing: exactly one leader, takeover within 2 x TTL + lock-delay when the
leader dies (kill -9), freezes (SIGSTOP) or is cut off (a network fault in the fake), and a deposed
leader's writes never land."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leoflow.store.consul import ConsulStore
from leoflow.store.election import LeaderElector, read_leader
from leoflow.store.fence import Fence, NotLeader, fenced
from leoflow.store.port import MAX_TXN_OPS, Cas, CheckSession, Set, TooManyOperations
from leoflow.store.sqlite import SqliteStore
from tests.fakes.consul import FakeConsul

ROOT = Path(__file__).resolve().parents[2]
TTL = 0.4
LOCK_DELAY = 0.3
SLACK = 1.5  # detection and scheduling latency on a loaded 2-core CI box
KEY = "leoflow/leader"


def _sqlite(path: Path) -> SqliteStore:
    return SqliteStore(path, session_ttl_min=0.01)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


# -- fence -----------------------------------------------------------------------------------


def test_fence_wraps_with_check_session_first(db: Path) -> None:
    fence = Fence(KEY, "sess")
    ops = [Set("a", b"1")]
    assert fence.wrap(ops) == [CheckSession(KEY, "sess"), Set("a", b"1")]
    assert fenced(fence, ops) == fence.wrap(ops)
    with pytest.raises(TooManyOperations):
        fence.wrap([Set(f"k{i}", b"") for i in range(MAX_TXN_OPS)])
    assert len(fence.wrap([Set(f"k{i}", b"") for i in range(Fence.CAPACITY)])) == MAX_TXN_OPS


def test_fence_txn_reports_caller_op_indexes_and_rejects_non_holder(db: Path) -> None:
    store = _sqlite(db)
    session = store.session_create(name="l", ttl=5, lock_delay=0)
    store.put(KEY, b"me", acquire=session)
    fence = Fence(KEY, session)
    assert fence.txn(store, [Cas("a", b"1", 0)]).ok
    lost_cas = fence.txn(store, [Set("b", b"1"), Cas("a", b"2", 0)])
    assert not lost_cas.ok and [e.op_index for e in lost_cas.errors] == [1]
    assert store.get("b") is None
    with pytest.raises(NotLeader):
        Fence(KEY, "someone-else").txn(store, [Set("c", b"1")])
    assert store.get("c") is None


# -- contention ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "consul-fake"])
def stores(request: pytest.FixtureRequest, db: Path) -> Iterator[tuple[object, object, FakeConsul | None]]:
    if request.param == "sqlite":
        a, b = _sqlite(db), _sqlite(db)
        yield a, b, None
        a.close()
        b.close()
    else:
        with FakeConsul(session_ttl_min=0.01, acl_tokens={"tok-a", "tok-b"}) as fake:
            a = ConsulStore(fake.addr, token="tok-a", timeout=2.0)
            b = ConsulStore(fake.addr, token="tok-b", timeout=2.0)
            yield a, b, fake
            a.close()
            b.close()


def test_two_electors_exactly_one_leads(stores: tuple[object, object, FakeConsul | None]) -> None:
    a_store, b_store, _ = stores
    a = LeaderElector(a_store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="a").start()  # type: ignore[arg-type]
    b = LeaderElector(b_store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="b").start()  # type: ignore[arg-type]
    try:
        assert _wait(lambda: a.is_leader or b.is_leader, 5)
        for _ in range(100):  # across several renewals: never two leaders, never none
            assert a.is_leader != b.is_leader
            time.sleep(0.01)
        leader = a if a.is_leader else b
        info = read_leader(a_store, KEY)  # type: ignore[arg-type]
        assert info is not None and info.session == leader.session and info.id == leader.identity
        with pytest.raises(NotLeader):
            (b if leader is a else a).fence()
    finally:
        a.stop()
        b.stop()


def test_graceful_stepdown_releases_first_so_no_lock_delay(stores: tuple[object, object, FakeConsul | None]) -> None:
    a_store, b_store, _ = stores
    long_delay = 5.0
    a = LeaderElector(a_store, KEY, ttl=TTL, lock_delay=long_delay, identity="a").start()  # type: ignore[arg-type]
    assert a.wait_elected(5)
    b = LeaderElector(b_store, KEY, ttl=TTL, lock_delay=long_delay, identity="b").start()  # type: ignore[arg-type]
    try:
        time.sleep(0.2)
        assert not b.is_leader
        a.stop(graceful=True)
        assert b.wait_elected(long_delay - 1)  # well inside the lock-delay: release imposed none
        assert a.lost.is_set() and not a.is_leader
    finally:
        b.stop()


def test_session_invalidated_means_lost_at_once(stores: tuple[object, object, FakeConsul | None]) -> None:
    a_store, _, _ = stores
    reasons: queue.Queue[str] = queue.Queue()
    a = LeaderElector(a_store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="a", on_lost=reasons.put).start()  # type: ignore[arg-type]
    try:
        assert a.wait_elected(5)
        fence = a.fence()
        a_store.session_destroy(fence.session)  # type: ignore[attr-defined]  # operator / serfHealth
        assert reasons.get(timeout=TTL + SLACK)
        assert not a.is_leader
        with pytest.raises(NotLeader):
            fence.txn(a_store, [Set("leoflow/state", b"late")])  # type: ignore[arg-type]
        assert a_store.get("leoflow/state") is None  # type: ignore[attr-defined]
        assert a.wait_elected(LOCK_DELAY + 2 * TTL + SLACK)  # a new session, a new term
        assert a.terms == 2
    finally:
        a.stop()


# -- a network fault injected by the fake ----------------------------------------------------


def test_partitioned_leader_is_replaced_and_fenced() -> None:
    with FakeConsul(session_ttl_min=0.01, acl_tokens={"tok-a", "tok-b"}) as fake:
        a_store = ConsulStore(fake.addr, token="tok-a", timeout=1.0)
        b_store = ConsulStore(fake.addr, token="tok-b", timeout=1.0)
        a = LeaderElector(a_store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="a").start()
        assert a.wait_elected(5)
        b = LeaderElector(b_store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="b").start()
        try:
            old = a.fence()
            assert old.txn(a_store, [Set("leoflow/state", b"from-a")]).ok
            started = time.monotonic()
            fake.partition("tok-a")  # every request from a is reset from now on
            assert b.wait_elected(2 * TTL + LOCK_DELAY + SLACK)
            assert time.monotonic() - started >= TTL  # TTL is a lower bound: no early takeover
            assert _wait(lambda: not a.is_leader, TTL + SLACK)  # a stepped down on its own
            fake.heal()
            with pytest.raises(NotLeader):
                old.txn(a_store, [Set("leoflow/state", b"late-from-a")])
            assert b.fence().txn(b_store, [Set("leoflow/state", b"from-b")]).ok
            assert b_store.get("leoflow/state").value == b"from-b"
            assert "tok-a" in fake.tokens_seen("/v1/txn")  # txn carried the ACL token (py-consul bug avoided)
        finally:
            a.stop(graceful=False)
            b.stop()


# -- real processes: kill -9 and SIGSTOP -----------------------------------------------------


class Child:
    def __init__(self, db: Path, name: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.store.elector_child", str(db), KEY, str(TTL), str(LOCK_DELAY), name],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"child never printed {prefix!r}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_kill9_leader_process_is_replaced_in_time(db: Path) -> None:
    child = Child(db, "child")
    store = _sqlite(db)
    try:
        child.expect("ELECTED", 20)
        child.expect("WROTE", 5)
        me = LeaderElector(store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="parent").start()
        time.sleep(0.2)
        assert not me.is_leader
        started = time.monotonic()
        os.kill(child.proc.pid, signal.SIGKILL)
        assert me.wait_elected(2 * TTL + LOCK_DELAY + SLACK)
        took = time.monotonic() - started
        assert took >= LOCK_DELAY  # a dead holder's lock is free only after its session ends + lock-delay
        me.stop()
    finally:
        child.kill()
        store.close()


def test_sigstop_frozen_leader_is_replaced_and_its_next_write_rejected(db: Path) -> None:
    child = Child(db, "child")
    store = _sqlite(db)
    try:
        child.expect("ELECTED", 20)
        child.expect("WROTE", 5)
        me = LeaderElector(store, KEY, ttl=TTL, lock_delay=LOCK_DELAY, identity="parent").start()
        os.kill(child.proc.pid, signal.SIGSTOP)
        assert me.wait_elected(2 * TTL + LOCK_DELAY + SLACK)
        epoch = me.fence().txn(store, [Set("leoflow/epoch", b"parent")])
        assert epoch.ok
        taken_at = store.get("leoflow/epoch").modify_index
        os.kill(child.proc.pid, signal.SIGCONT)  # it wakes up still believing it leads
        assert child.expect("REJECTED", 10) == "REJECTED"
        assert child.proc.wait(timeout=10) == 0
        late = [e.key for e in store.list("log/") if e.create_index > taken_at]
        assert late == []  # nothing the deposed leader sent after the takeover landed
        assert me.is_leader
        me.stop()
    finally:
        child.kill()
        store.close()
