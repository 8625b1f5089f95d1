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
