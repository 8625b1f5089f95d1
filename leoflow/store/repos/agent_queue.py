"""Store layout of the `agents` executor: per-pool try queues, their events, and agent liveness.

Keys (``<root>`` is the store prefix, ids encoded with ``keys.encode_id``)::

    <root>/agents/queue/<pool>/<dag>/<run>/<task>/<map>/<try>   one try: request + status
    <root>/agents/events/<dag>/<run>/<task>/<map>/<try>/<kind>  kind: started | terminal
    <root>/agents/live/<agent>                                  which server holds its stream
    <root>/agents/servers/<server>                              held by the server's session

Why this shape: a try moves ``pending -> claimed -> done`` by compare-and-set on its one queue key,
so exactly one agent gets it even with several agentrpc replicas. The terminal event is created
(create-only CAS) in the *same* transaction that marks the try done, so however many times an
agent resends a result (reconnects), or races the lost-agent reaper, one terminal event exists.
Done entries stay as tombstones so a re-submit of a finished try is a no-op; they are collected
after ``DONE_RETENTION``. Liveness is *not* a heartbeat key: the live record changes only on
connect and disconnect (Consul is a coordination store, adr/0042).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from leoflow.domain.dag import Resources
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.store import keys
from leoflow.store.port import (
    MAX_TXN_OPS,
    Cas,
    CheckIndex,
    DeleteCas,
    Entry,
    Op,
    Store,
)

Status = Literal["pending", "claimed", "done"]
EventKind = Literal["started", "terminal"]
DONE_RETENTION = 3600.0


def _try_segments(key: TryKey) -> tuple[str, ...]:
    return (
        keys.encode_id(key.dag_id),
        keys.encode_id(key.run_id),
        keys.encode_id(key.task_id),
        str(key.map_index).replace("-", "m") if key.map_index < 0 else str(key.map_index),
        str(key.try_number),
    )


def _key_from_json(doc: Mapping[str, Any]) -> TryKey:
    return TryKey(doc["dag_id"], doc["run_id"], doc["task_id"], int(doc["map_index"]), int(doc["try_number"]))


def key_to_json(key: TryKey) -> dict[str, Any]:
    return {"dag_id": key.dag_id, "run_id": key.run_id, "task_id": key.task_id,
            "map_index": key.map_index, "try_number": key.try_number}


def request_to_json(req: TryRequest) -> dict[str, Any]:
    return {
        "key": key_to_json(req.key),
        "command": list(req.command),
        "image": req.image,
        "env": dict(req.env),
        "queue": req.queue,
        "resources": {"cpu": req.resources.cpu, "memory": req.resources.memory,
                      "memory_max": req.resources.memory_max},
        "timeout_seconds": req.timeout_seconds,
        "driver": req.driver,
        "connections": list(req.connections),
        "variables": list(req.variables),
        "priority_weight": req.priority_weight,
    }


def request_from_json(doc: Mapping[str, Any]) -> TryRequest:
    res = doc.get("resources") or {}
    return TryRequest(
        key=_key_from_json(doc["key"]),
        command=tuple(doc["command"]),
        image=doc.get("image"),
        env=dict(doc.get("env") or {}),
        queue=doc.get("queue", "default"),
        resources=Resources(cpu=res.get("cpu", 100), memory=res.get("memory", 256), memory_max=res.get("memory_max")),
        timeout_seconds=doc.get("timeout_seconds"),
        driver=doc.get("driver", "docker"),
        connections=tuple(doc.get("connections") or ()),
        variables=tuple(doc.get("variables") or ()),
        priority_weight=int(doc.get("priority_weight", 1)),
    )


def event_to_json(event: TryEvent) -> dict[str, Any]:
    return {
        "key": key_to_json(event.key),
        "outcome": event.outcome.value,
        "at": event.at.isoformat(),
        "exit_code": event.exit_code,
        "reason": event.reason,
        "hostname": event.hostname,
        "executor_ref": event.executor_ref,
        "xcom_return": event.xcom_return,
    }


def event_from_json(doc: Mapping[str, Any]) -> TryEvent:
    return TryEvent(
        key=_key_from_json(doc["key"]),
        outcome=TryOutcome(doc["outcome"]),
        at=datetime.fromisoformat(doc["at"]),
        exit_code=doc.get("exit_code"),
        reason=doc.get("reason"),
        hostname=doc.get("hostname"),
        executor_ref=doc.get("executor_ref"),
        xcom_return=doc.get("xcom_return"),
    )


@dataclass(frozen=True)
class QueuedTry:
    """One queue entry as read, with the index a compare-and-set must present."""

    request: TryRequest
    status: Status
    submitted_at: float
    index: int = 0
    agent_id: str | None = None
    conn: str | None = None
    claimed_at: float | None = None
    cancel: str | None = None
    outcome: str | None = None
    done_at: float | None = None
    claims: int = 0

    @property
    def key(self) -> TryKey:
        return self.request.key

    def to_bytes(self) -> bytes:
        doc = {
            "v": 1,
            "request": request_to_json(self.request),
            "status": self.status,
            "submitted_at": self.submitted_at,
            "agent_id": self.agent_id,
            "conn": self.conn,
            "claimed_at": self.claimed_at,
            "cancel": self.cancel,
            "outcome": self.outcome,
            "done_at": self.done_at,
            "claims": self.claims,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_entry(cls, entry: Entry) -> QueuedTry:
        doc = json.loads(entry.value)
        return cls(
            request=request_from_json(doc["request"]),
            status=doc["status"],
            submitted_at=float(doc["submitted_at"]),
            index=entry.modify_index,
            agent_id=doc.get("agent_id"),
            conn=doc.get("conn"),
            claimed_at=doc.get("claimed_at"),
            cancel=doc.get("cancel"),
            outcome=doc.get("outcome"),
            done_at=doc.get("done_at"),
            claims=int(doc.get("claims", 0)),
        )


@dataclass(frozen=True)
class AgentLive:
    """Where an agent's stream is held; written on connect and on disconnect only."""

    agent_id: str
    server_id: str
    conn: str
    connected: bool
    since: float
    pools: tuple[str, ...] = ()
    capacity: int = 0
    hostname: str = ""
    version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    index: int = 0

    def to_bytes(self) -> bytes:
        doc = {"agent_id": self.agent_id, "server_id": self.server_id, "conn": self.conn,
               "connected": self.connected, "since": self.since, "pools": list(self.pools),
               "capacity": self.capacity, "hostname": self.hostname, "version": self.version,
               "labels": dict(self.labels)}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_entry(cls, entry: Entry) -> AgentLive:
        doc = json.loads(entry.value)
        return cls(agent_id=doc["agent_id"], server_id=doc["server_id"], conn=doc["conn"],
                   connected=bool(doc["connected"]), since=float(doc["since"]), pools=tuple(doc.get("pools", ())),
                   capacity=int(doc.get("capacity", 0)), hostname=doc.get("hostname", ""),
                   version=doc.get("version", ""), labels=dict(doc.get("labels") or {}), index=entry.modify_index)


class AgentQueue:
    """Repository over the store port; every state change is one compare-and-set or one txn."""

    def __init__(self, store: Store, root: str = "leoflow") -> None:
        self.store = store
        self.root = root

    # -- keys ------------------------------------------------------------------------------
    def queue_prefix(self, pool: str | None = None) -> str:
        if pool is None:
            return keys.prefix_of(self.root, "agents", "queue")
        return keys.prefix_of(self.root, "agents", "queue", keys.encode_id(pool))

    def queue_key(self, pool: str, key: TryKey) -> str:
        return keys.join(self.root, "agents", "queue", keys.encode_id(pool), *_try_segments(key))

    def events_prefix(self) -> str:
        return keys.prefix_of(self.root, "agents", "events")

    def event_key(self, key: TryKey, kind: EventKind) -> str:
        return keys.join(self.root, "agents", "events", *_try_segments(key), kind)

    def live_prefix(self) -> str:
        return keys.prefix_of(self.root, "agents", "live")

    def live_key(self, agent_id: str) -> str:
        return keys.join(self.root, "agents", "live", keys.encode_id(agent_id))

    def server_key(self, server_id: str) -> str:
        return keys.join(self.root, "agents", "servers", keys.encode_id(server_id))

    # -- queue -----------------------------------------------------------------------------
    def enqueue(self, request: TryRequest, now: float) -> bool:
        """Create the entry once; False when this try is already queued, running or done."""
        entry = QueuedTry(request=request, status="pending", submitted_at=now)
        return self.store.put(self.queue_key(request.queue, request.key), entry.to_bytes(), cas=0)

    def all_entries(self) -> list[QueuedTry]:
        return [QueuedTry.from_entry(e) for e in self.store.list(self.queue_prefix())]

    def entries(self, pool: str) -> list[QueuedTry]:
        return [QueuedTry.from_entry(e) for e in self.store.list(self.queue_prefix(pool))]

    def find(self, key: TryKey) -> QueuedTry | None:
        suffix = "/" + "/".join(_try_segments(key))
        for name in self.store.keys(self.queue_prefix(), separator=None):
            if name.endswith(suffix):
                entry = self.store.get(name)
                if entry is not None:
                    return QueuedTry.from_entry(entry)
        return None

    def get(self, queued: QueuedTry) -> QueuedTry | None:
        entry = self.store.get(self.queue_key(queued.request.queue, queued.key))
        return None if entry is None else QueuedTry.from_entry(entry)

    def _cas(self, old: QueuedTry, new: QueuedTry) -> QueuedTry | None:
        key = self.queue_key(old.request.queue, old.key)
        result = self.store.txn([Cas(key, new.to_bytes(), old.index)])
        if not result.ok:
            return None
        return replace(new, index=result.results[0].modify_index)

    def claim(self, queued: QueuedTry, agent_id: str, conn: str, now: float) -> QueuedTry | None:
        """pending -> claimed by this agent; None when another agent (or a cancel) won."""
        if queued.status != "pending":
            return None
        return self._cas(queued, replace(queued, status="claimed", agent_id=agent_id, conn=conn,
                                         claimed_at=now, claims=queued.claims + 1))

    def unclaim(self, queued: QueuedTry) -> QueuedTry | None:
        """claimed -> pending: the agent never got or refused it, so another may take it."""
        if queued.status != "claimed":
            return None
        return self._cas(queued, replace(queued, status="pending", agent_id=None, conn=None, claimed_at=None))

    def rebind(self, queued: QueuedTry, conn: str) -> QueuedTry | None:
        """A reconnected agent still runs this try: record the new stream that carries it."""
        return self._cas(queued, replace(queued, conn=conn))

    def request_cancel(self, queued: QueuedTry, reason: str) -> QueuedTry | None:
        return self._cas(queued, replace(queued, cancel=reason))

    def record_started(self, queued: QueuedTry, event: TryEvent) -> bool:
        """The started event, only while this claim still stands (a stale agent cannot fake it)."""
        result = self.store.txn([
            CheckIndex(self.queue_key(queued.request.queue, queued.key), queued.index),
            Cas(self.event_key(queued.key, "started"), json.dumps(event_to_json(event)).encode(), 0),
        ])
        return result.ok

    def finish(self, queued: QueuedTry, event: TryEvent) -> bool:
        """Mark done and create the one terminal event, atomically; False if someone else did first.

        The tombstone drops the request's command and env: nothing reads them once the try is
        done, and a request near its size cap plus an XCom return near its own cap would not fit
        in one transaction (``MAX_TXN_BYTES``) together.
        """
        if queued.status == "done" or not event.terminal:
            return False
        tombstone = replace(queued.request, command=(), env={})
        done = replace(queued, request=tombstone, status="done", outcome=event.outcome.value,
                       done_at=event.at.timestamp())
        result = self.store.txn([
            Cas(self.queue_key(queued.request.queue, queued.key), done.to_bytes(), queued.index),
            Cas(self.event_key(queued.key, "terminal"), json.dumps(event_to_json(event)).encode(), 0),
        ])
        return result.ok

    def collect_done(self, now: float, retention: float = DONE_RETENTION) -> int:
        stale = [q for q in self.all_entries() if q.status == "done" and (q.done_at or 0) + retention < now]
        ops: list[Op] = [DeleteCas(self.queue_key(q.request.queue, q.key), q.index) for q in stale]
        return self._delete_batches(ops)

    # -- events ----------------------------------------------------------------------------
    def events(self) -> list[tuple[Entry, TryEvent]]:
        """Pending events, started before terminal within a try (keys sort that way)."""
        return [(e, event_from_json(json.loads(e.value))) for e in self.store.list(self.events_prefix())]

    def ack_events(self, entries: Iterable[Entry]) -> int:
        return self._delete_batches([DeleteCas(e.key, e.modify_index) for e in entries])

    def _delete_batches(self, ops: list[Op]) -> int:
        done = 0
        for i in range(0, len(ops), MAX_TXN_OPS):
            batch = ops[i : i + MAX_TXN_OPS]
            if self.store.txn(batch).ok:
                done += len(batch)
            else:  # one entry changed under us: fall back to one by one
                for op in batch:
                    if self.store.txn([op]).ok:
                        done += 1
        return done

    # -- liveness --------------------------------------------------------------------------
    def live(self, agent_id: str) -> AgentLive | None:
        entry = self.store.get(self.live_key(agent_id))
        return None if entry is None else AgentLive.from_entry(entry)

    def all_live(self) -> list[AgentLive]:
        return [AgentLive.from_entry(e) for e in self.store.list(self.live_prefix())]

    def mark_connected(self, live: AgentLive) -> None:
        self.store.put(self.live_key(live.agent_id), live.to_bytes())

    def mark_disconnected(self, agent_id: str, conn: str, now: float) -> bool:
        """Only the stream that is still current may mark the agent gone (a newer one may exist)."""
        current = self.live(agent_id)
        if current is None or current.conn != conn or not current.connected:
            return False
        gone = replace(current, connected=False, since=now)
        return self.store.put(self.live_key(agent_id), gone.to_bytes(), cas=current.index)

    def server_alive(self, server_id: str) -> bool:
        return self.store.get(self.server_key(server_id)) is not None

    def hold_server_key(self, server_id: str, session: str, now: float) -> bool:
        doc = json.dumps({"server_id": server_id, "since": now}).encode()
        return self.store.put(self.server_key(server_id), doc, acquire=session)


__all__ = ["AgentLive", "AgentQueue", "QueuedTry", "event_from_json", "event_to_json", "request_from_json",
           "request_to_json"]
