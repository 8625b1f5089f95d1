"""The agent queue repository on the real SQLite store: claims, one terminal event, liveness."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leoflow.executors.agents import AgentsExecutor
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.store.repos.agent_queue import AgentLive, AgentQueue
from leoflow.store.sqlite import SqliteStore

KEY = TryKey("dag.with.dots", "manual__2026-01-01T00:00:00+00:00", "t/1", -1, 1)


@pytest.fixture
def repo(tmp_path: Path) -> AgentQueue:
    return AgentQueue(SqliteStore(tmp_path / "db", session_ttl_min=0.1), "leoflow")


def _event(outcome: TryOutcome = TryOutcome.SUCCESS) -> TryEvent:
    return TryEvent(KEY, outcome, datetime.now(UTC), exit_code=0)


def test_enqueue_is_create_only(repo: AgentQueue) -> None:
    req = TryRequest(KEY, ("true",), queue="gpu pool")
    assert repo.enqueue(req, 1.0)
    assert not repo.enqueue(req, 2.0)
    [entry] = repo.entries("gpu pool")
    assert entry.status == "pending" and entry.request == req and entry.submitted_at == 1.0
    assert repo.find(KEY) == entry


def test_only_one_claim_wins(repo: AgentQueue) -> None:
    repo.enqueue(TryRequest(KEY, ("true",)), 1.0)
    [entry] = repo.entries("default")
    first = repo.claim(entry, "a1", "c1", 2.0)
    second = repo.claim(entry, "a2", "c2", 2.0)  # same stale read
    assert first is not None and second is None
    assert repo.find(KEY).agent_id == "a1"  # type: ignore[union-attr]


def test_finish_makes_exactly_one_terminal_event(repo: AgentQueue) -> None:
    repo.enqueue(TryRequest(KEY, ("true",)), 1.0)
    claimed = repo.claim(repo.entries("default")[0], "a1", "c1", 2.0)
    assert claimed is not None
    assert repo.finish(claimed, _event())
    assert not repo.finish(claimed, _event())  # a resend
    assert not repo.finish(claimed, _event(TryOutcome.LOST))  # the reaper, too late
    events = repo.events()
    assert [e.outcome for _, e in events] == [TryOutcome.SUCCESS]
    assert repo.ack_events([entry for entry, _ in events]) == 1
    assert repo.events() == []
    assert repo.find(KEY).status == "done"  # type: ignore[union-attr]


def test_unclaim_returns_the_try_to_the_queue(repo: AgentQueue) -> None:
    repo.enqueue(TryRequest(KEY, ("true",)), 1.0)
    claimed = repo.claim(repo.entries("default")[0], "a1", "c1", 2.0)
    assert claimed is not None
    back = repo.unclaim(claimed)
    assert back is not None and back.status == "pending" and back.claims == 1
    assert repo.claim(back, "a2", "c2", 3.0) is not None


def test_disconnect_only_by_the_current_stream(repo: AgentQueue) -> None:
    repo.mark_connected(AgentLive("a1", "s1", "c1", True, 1.0))
    repo.mark_connected(AgentLive("a1", "s1", "c2", True, 2.0))  # reconnected
    assert not repo.mark_disconnected("a1", "c1", 3.0)
    assert repo.live("a1").connected  # type: ignore[union-attr]
    assert repo.mark_disconnected("a1", "c2", 4.0)
    assert not repo.live("a1").connected  # type: ignore[union-attr]


def test_reaper_waits_for_the_timeout_then_declares_lost(tmp_path: Path) -> None:
    now = [100.0]
    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    executor = AgentsExecutor(store, heartbeat_timeout=10.0, clock=lambda: now[0])
    executor.submit(TryRequest(KEY, ("true",)))
    repo = executor.queue
    assert repo.claim(repo.entries("default")[0], "a1", "c1", now[0]) is not None
    repo.mark_connected(AgentLive("a1", "gone-server", "c1", True, now[0]))
    # Connected, but its server holds no session: counted from the first time the reaper sees it.
    assert executor.reap(now[0]) == []
    now[0] += 5
    assert executor.reap(now[0]) == []
    now[0] += 6
    assert executor.reap(now[0]) == [KEY]
    [event] = list(executor.events(0))
    assert event.outcome is TryOutcome.LOST and "agent a1 lost" in (event.reason or "")
    assert executor.reap(now[0]) == []


def test_reaper_spares_a_connected_agent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    executor = AgentsExecutor(store, heartbeat_timeout=1.0)
    executor.submit(TryRequest(KEY, ("true",)))
    repo = executor.queue
    repo.claim(repo.entries("default")[0], "a1", "c1", 0.0)
    session = store.session_create(name="srv", ttl=10.0, behavior="delete", lock_delay=0)
    assert repo.hold_server_key("s1", session, 0.0)
    repo.mark_connected(AgentLive("a1", "s1", "c1", True, 0.0))
    assert executor.reap(1e12) == []


def test_events_are_redelivered_until_the_next_call(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    executor = AgentsExecutor(store)
    executor.submit(TryRequest(KEY, ("true",)))
    executor.cancel(KEY, "stop")
    first = list(executor.events(0))
    # A scheduler that crashed before its next call sees the same batch again.
    assert [e.outcome for e in list(AgentsExecutor(store).events(0))] == [e.outcome for e in first]
    assert list(executor.events(0)) == []


def test_collect_done_removes_old_tombstones(repo: AgentQueue) -> None:
    repo.enqueue(TryRequest(KEY, ("true",)), 1.0)
    claimed = repo.claim(repo.entries("default")[0], "a1", "c1", 2.0)
    assert claimed is not None and repo.finish(claimed, _event())
    done_at = repo.find(KEY).done_at  # type: ignore[union-attr]
    assert repo.collect_done(done_at + 10, retention=60) == 0  # type: ignore[operator]
    assert repo.collect_done(done_at + 61, retention=60) == 1  # type: ignore[operator]
    assert repo.find(KEY) is None
