"""The `agents` executor's scheduler half on the real SQLite store: times come from its clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leoflow.executors.agents import AgentsExecutor
from leoflow.executors.port import TryKey, TryOutcome, TryRequest
from leoflow.store.sqlite import SqliteStore


def test_cancel_of_a_pending_try_is_stamped_by_the_injected_clock(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    try:
        executor = AgentsExecutor(store, clock=lambda: 1_000_000.0)
        key = TryKey("d", "r", "t", -1, 1)
        executor.submit(TryRequest(key, ("true",)))
        executor.cancel(key, "run marked failed")
        [event] = list(executor.events(0))
        assert event.outcome is TryOutcome.FAILED and event.reason == "cancelled: run marked failed"
        assert event.at == datetime.fromtimestamp(1_000_000.0, UTC)
    finally:
        store.close()


def test_a_try_at_both_size_caps_still_finishes(tmp_path: Path) -> None:
    """The largest request the scheduler hands over, then the largest XCom return: one finish txn."""
    from leoflow.executors.port import TryEvent
    from leoflow.scheduler.dispatch import MAX_REQUEST_BYTES, request_size
    from leoflow.store.repos.agent_queue import AgentQueue

    store = SqliteStore(tmp_path / "db", session_ttl_min=0.1)
    try:
        queue = AgentQueue(store)
        key = TryKey("d", "r", "t", -1, 1)
        request = TryRequest(key, ("true",), env={"BIG": "x" * (MAX_REQUEST_BYTES - 400)})
        assert MAX_REQUEST_BYTES - 400 < request_size(request) <= MAX_REQUEST_BYTES
        assert queue.enqueue(request, 1.0)
        claimed = queue.claim(queue.entries("default")[0], "agent-1", "conn-1", 2.0)
        assert claimed is not None
        xcom = '"' + "y" * (256 * 1024 - 2) + '"'
        event = TryEvent(key, TryOutcome.SUCCESS, datetime.fromtimestamp(3.0, UTC), exit_code=0, xcom_return=xcom)
        assert queue.finish(claimed, event)  # raised ValueTooLarge when the tombstone kept the env
        done = queue.find(key)
        assert done is not None and done.status == "done" and done.request.env == {}
        assert [e.xcom_return for _, e in queue.events()] == [xcom]
    finally:
        store.close()
