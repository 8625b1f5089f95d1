"""The `agents` executor: tries go on a queue per agent pool in the store; agentrpc delivers them.

This half lives in the scheduler. It never talks to an agent: it writes queue entries
(``submit``), flags cancels, reads the events agentrpc records, and reaps tries whose agent is
gone. Why through the store and not a direct call: agentrpc may run as several replicas, and the
scheduler may fail over; the store's compare-and-set is what makes "exactly one agent runs this
try" and "exactly one terminal event" hold across all of them (adr/0042).

Event delivery is at-least-once with an implicit acknowledgement: the events returned by one
``events()`` call are deleted at the start of the next call, i.e. after the scheduler has acted on
them. A scheduler that crashes in between sees them again; it fences them by try number and state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.store.port import Entry, Store, StoreError
from leoflow.store.repos.agent_queue import AgentLive, AgentQueue, QueuedTry

log = logging.getLogger(__name__)


class AgentsExecutor:
    name = "agents"

    def __init__(self, store: Store, *, root: str = "leoflow", heartbeat_timeout: float = 30.0,
                 reap_interval: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.queue = AgentQueue(store, root)
        self._timeout = heartbeat_timeout
        self._reap_interval = reap_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._unacked: list[Entry] = []
        self._events_index = 0
        self._last_reap = float("-inf")
        self._last_gc = float("-inf")
        # When the reaper first saw an agent without any liveness record (or with a dead server).
        self._missing_since: dict[str, float] = {}

    def submit(self, request: TryRequest) -> None:
        created = self.queue.enqueue(request, self._clock())
        if not created:
            log.info("try already queued; submit ignored", extra={"try": _describe(request.key)})

    def cancel(self, key: TryKey, reason: str) -> None:
        for _ in range(5):
            queued = self.queue.find(key)
            if queued is None or queued.status == "done":
                return
            if queued.status == "pending":
                event = TryEvent(key, TryOutcome.FAILED, datetime.fromtimestamp(self._clock(), UTC),
                                 reason=f"cancelled: {reason}")
                if self.queue.finish(queued, event):
                    return
            elif queued.cancel is not None or self.queue.request_cancel(queued, reason) is not None:
                return
        log.warning("cancel lost five compare-and-set races; giving up", extra={"try": _describe(key)})

    def events(self, timeout: float) -> Iterator[TryEvent]:
        with self._lock:
            if self._unacked:
                self.queue.ack_events(self._unacked)
                self._unacked = []
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                self._maybe_reap()
                found = self.queue.events()
                if found:
                    self._unacked = [entry for entry, _ in found]
                    return iter([event for _, event in found])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return iter(())
                # Short slices: the reaper runs on time, and a missed store wake-up costs little.
                wait = min(remaining, self._reap_interval, 0.25)
                result = self.queue.store.watch(self.queue.events_prefix(), index=self._events_index,
                                                wait=wait, recurse=True)
                self._events_index = result.index

    def close(self) -> None:
        with self._lock:
            self._unacked = []

    # -- the lost-agent reaper -------------------------------------------------------------
    def _maybe_reap(self) -> None:
        now = self._clock()
        if now - self._last_reap < self._reap_interval:
            return
        self._last_reap = now
        try:
            self.reap(now)
            if now - self._last_gc > 60.0:
                self._last_gc = now
                self.queue.collect_done(now)
        except StoreError as exc:
            log.warning("agent reaper skipped a round", extra={"error": str(exc)})

    def reap(self, now: float) -> list[TryKey]:
        """Declare LOST every claimed try whose agent has been gone longer than the heartbeat timeout."""
        claimed = [q for q in self.queue.all_entries() if q.status == "claimed"]
        if not claimed:
            self._missing_since.clear()
            return []
        live = {a.agent_id: a for a in self.queue.all_live()}
        servers: dict[str, bool] = {}
        lost: list[TryKey] = []
        for queued in claimed:
            agent_id = queued.agent_id or ""
            why = self._gone_for(agent_id, live, servers, now)
            if why is None:
                continue
            event = TryEvent(queued.key, TryOutcome.LOST, datetime.fromtimestamp(now, UTC),
                             reason=f"agent {agent_id} lost: {why}", executor_ref=agent_id)
            if self._finish_with_retry(queued, event):
                lost.append(queued.key)
                log.warning("try lost with its agent", extra={"try": _describe(queued.key), "agent": agent_id})
        return lost

    def _gone_for(self, agent_id: str, live: dict[str, AgentLive], servers: dict[str, bool], now: float) -> str | None:
        record = live.get(agent_id)
        if record is not None and record.connected:
            server_id = record.server_id
            if server_id not in servers:
                servers[server_id] = self.queue.server_alive(server_id)
            if servers[server_id]:
                self._missing_since.pop(agent_id, None)
                return None
        elif record is not None:
            since = record.since
            if now - since >= self._timeout:
                return f"disconnected for {now - since:.1f}s (timeout {self._timeout:g}s)"
            return None
        first = self._missing_since.setdefault(agent_id, now)
        if now - first >= self._timeout:
            return f"no live stream for {now - first:.1f}s (timeout {self._timeout:g}s)"
        return None

    def _finish_with_retry(self, queued: QueuedTry, event: TryEvent) -> bool:
        current: QueuedTry | None = queued
        for _ in range(3):
            if current is None or current.status != "claimed" or current.agent_id != queued.agent_id:
                return False
            if self.queue.finish(current, event):
                return True
            current = self.queue.get(current)
        return False


def _describe(key: TryKey) -> str:
    return f"{key.dag_id}/{key.run_id}/{key.task_id}/{key.map_index}/{key.try_number}"
