"""The agent service: registrations, one stream per agent, delivery of queued tries, reports, logs.

One process may hold many agent streams; several processes may serve the same store. Local state
(who is connected here, what each stream was sent) is only a cache: the queue entry in the store
is the truth, and every change to it is a compare-and-set (see ``leoflow.store.repos.agent_queue``).

Threads: each stream has the gRPC worker thread that yields outgoing messages and a reader thread
for incoming ones; one dispatcher thread per process hands pending tries to connected agents with
free capacity; one monitor thread drops streams that stopped heartbeating.

A stream lives no longer than the token it was opened with (plus the verifier's clock-skew
leeway): once that passes the stream ends with UNAUTHENTICATED and the agent redials with a fresh
token; its running tries are untouched (their reports are persisted and resent on the new stream).
"""

from __future__ import annotations

import logging
import math
import queue
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from leoflow.agentrpc.auth import AgentIdentity, TokenVerifier, identity_of
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.agentrpc.metrics import METRICS
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.logs.store import LogStore
from leoflow.secrets import delivery
from leoflow.secrets.backend import SecretsUnavailable
from leoflow.store.port import StoreError
from leoflow.store.repos.agent_queue import AgentLive, AgentQueue, QueuedTry

log = logging.getLogger(__name__)

MAX_XCOM_BYTES = 256 * 1024
_CLOSE = object()


def try_ref(key: TryKey) -> pb.TryRef:
    return pb.TryRef(dag_id=key.dag_id, run_id=key.run_id, task_id=key.task_id, map_index=key.map_index,
                     try_number=key.try_number)


def try_key(ref: pb.TryRef) -> TryKey:
    return TryKey(ref.dag_id, ref.run_id, ref.task_id, ref.map_index, ref.try_number)


@dataclass
class _Registration:
    agent_id: str
    subject: str
    pools: tuple[str, ...]
    capacity: int
    hostname: str
    version: str
    labels: dict[str, str]
    created: float


@dataclass
class Connection:
    conn_id: str
    agent_id: str
    reg: _Registration
    outbox: queue.Queue[object] = field(default_factory=queue.Queue)
    # Tries this stream carries (claimed for this agent, not yet finished), by key.
    assigned: dict[TryKey, QueuedTry] = field(default_factory=dict)
    cancels_sent: set[TryKey] = field(default_factory=set)
    last_heartbeat: float = field(default_factory=time.monotonic)
    closed: threading.Event = field(default_factory=threading.Event)
    # Wall-clock time (the token's ``exp`` plus leeway) after which this stream is refused.
    expires_at: float = math.inf

    def serves(self, pool: str) -> bool:
        """``*`` serves every pool (standalone's one local agent)."""
        return pool in self.reg.pools or "*" in self.reg.pools

    @property
    def free(self) -> int:
        return self.reg.capacity - len(self.assigned)

    def send(self, message: pb.ServerMessage) -> None:
        if not self.closed.is_set():
            self.outbox.put(message)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.outbox.put(_CLOSE)


@dataclass
class _TryLog:
    """Per-try log state: lines written through which sequence number, and the lock for that try only."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    through: int | None = None


@dataclass(frozen=True)
class ServiceSettings:
    server_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    # Short blocking-query slices: a store that misses a wake-up costs at most this much latency.
    dispatch_wait: float = 0.25
    # Decides the runtime of an assignment: "process", or "container" when the task has an image
    # and its queue is listed here (adr/0043).
    container_queues: frozenset[str] = frozenset()


class AgentService(pb_grpc.AgentServiceServicer):
    def __init__(self, queue_repo: AgentQueue, verifier: TokenVerifier, log_store: LogStore,
                 settings: ServiceSettings | None = None, clock: Callable[[], float] = time.time,
                 secrets: delivery.TaskSecrets | None = None) -> None:
        self.repo = queue_repo
        # Declared connections/variables, resolved at delivery and masked in logs (issue 8, adr/0093).
        self.secrets = secrets
        self.verifier = verifier
        self.logs = log_store
        self.settings = settings or ServiceSettings()
        self._clock = clock
        self._lock = threading.RLock()
        self._registrations: dict[str, _Registration] = {}
        self._conns: dict[str, Connection] = {}  # by agent id
        # Appends for one try are serialised by that try's own lock; ``_log_lock`` only guards the map.
        self._try_logs: dict[TryKey, _TryLog] = {}
        self._log_lock = threading.Lock()
        # Dispatch rounds and attach reconciliation never interleave (see _attach).
        self._dispatch_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._dispatch_loop, "agentrpc-dispatch"), (self._monitor_loop, "agentrpc-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def connected_agents(self) -> list[str]:
        with self._lock:
            return sorted(self._conns)

    # -- RPCs ------------------------------------------------------------------------------
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.RegisterResponse:
        identity = identity_of(self.verifier, context)
        self._check_claims(identity, request.agent_id, request.pools, context)
        if request.capacity < 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "capacity must be at least 1")
        session_id = secrets.token_hex(16)
        reg = _Registration(agent_id=request.agent_id, subject=identity.subject, pools=tuple(request.pools),
                            capacity=request.capacity, hostname=request.hostname, version=request.version,
                            labels=dict(request.labels), created=self._clock())
        with self._lock:
            # Registrations that never attached are dropped after a minute; they hold nothing.
            cutoff = self._clock() - 60.0
            for sid in [s for s, r in self._registrations.items() if r.created < cutoff]:
                del self._registrations[sid]
            self._registrations[session_id] = reg
        METRICS.registrations.inc()
        log.info("agent registered", extra={"agent": reg.agent_id, "pools": list(reg.pools),
                                             "capacity": reg.capacity, "agent_version": reg.version})
        return pb.RegisterResponse(
            session_id=session_id,
            server_id=self.settings.server_id,
            server_time_ms=int(self._clock() * 1000),
            heartbeat_interval_ms=int(self.settings.heartbeat_interval * 1000),
            heartbeat_timeout_ms=int(self.settings.heartbeat_timeout * 1000),
        )

    def _check_claims(self, identity: AgentIdentity, agent_id: str, pools: object,
                      context: grpc.ServicerContext) -> None:
        if not agent_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "agent_id is required")
        if identity.agent_id is not None and identity.agent_id != agent_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this token is not valid for agent {agent_id!r}")
        pool_list = list(pools)  # type: ignore[call-overload]
        if not pool_list:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "at least one pool is required")
        denied = [p for p in pool_list if not identity.may_serve(p)]
        if denied:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this token may not serve pool(s): {', '.join(denied)}")

    def Connect(self, request_iterator: Iterator[pb.AgentMessage],
                context: grpc.ServicerContext) -> Iterator[pb.ServerMessage]:
        identity = identity_of(self.verifier, context)
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        if first.WhichOneof("body") != "attach":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the first message on a stream must be attach")
        with self._lock:
            reg = self._registrations.pop(first.attach.session_id, None)
        if reg is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown session: register again")
            return
        if reg.subject != identity.subject:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "the session belongs to another identity")
        conn = Connection(conn_id=uuid.uuid4().hex, agent_id=reg.agent_id, reg=reg,
                          expires_at=identity.expires_at + self.verifier.leeway)
        self._attach(conn, [try_key(ref) for ref in first.attach.known])
        reader = threading.Thread(target=self._read, args=(conn, request_iterator, context),
                                  name=f"agentrpc-read-{reg.agent_id}", daemon=True)
        reader.start()
        try:
            while not self._stop.is_set() and context.is_active():
                try:
                    item = conn.outbox.get(timeout=0.5)
                except queue.Empty:
                    item = None
                if self._expired(conn):
                    METRICS.token_expiries.inc()
                    log.info("agent token expired; ending the stream so the agent redials with a fresh one",
                             extra={"agent": conn.agent_id})
                    conn.close()
                    context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                  "token expired while the stream was open; reconnect with a fresh token")
                if item is _CLOSE:
                    break
                if item is not None:
                    yield item  # type: ignore[misc]
        finally:
            conn.close()
            self._detach(conn)

    def _expired(self, conn: Connection) -> bool:
        return self._clock() >= conn.expires_at

    # -- attach / detach -------------------------------------------------------------------
    def _attach(self, conn: Connection, known: list[TryKey]) -> None:
        now = self._clock()
        # Out of the dispatcher's sight while we reconcile: a try claimed for this agent during the
        # scan below would otherwise look "never delivered" and be released while it is being sent.
        with self._lock:
            old = self._conns.pop(conn.agent_id, None)
        if old is not None:
            old.close()  # a reconnect supersedes the stream we still thought alive
        self.repo.mark_connected(AgentLive(agent_id=conn.agent_id, server_id=self.settings.server_id,
                                           conn=conn.conn_id, connected=True, since=now, pools=conn.reg.pools,
                                           capacity=conn.reg.capacity, hostname=conn.reg.hostname,
                                           version=conn.reg.version, labels=conn.reg.labels))
        known_set = set(known)
        mine: set[TryKey] = set()
        with self._dispatch_lock:
            self._reconcile(conn, known_set, mine)
        for key in known_set - mine:
            # The agent runs something that is no longer its own (declared lost, or cancelled and
            # finished): stop it. A finished one is reported and answered STALE.
            stale = pb.Cancel(ref=try_ref(key), reason="try is no longer assigned to this agent")
            conn.send(pb.ServerMessage(cancel=stale))
        METRICS.connected.set(len(self._conns))
        log.info("agent attached", extra={"agent": conn.agent_id, "resumed": len(conn.assigned)})
        self._kick.set()

    def _reconcile(self, conn: Connection, known: set[TryKey], mine: set[TryKey]) -> None:
        """Rebind what the agent still holds, release what it never got, then let dispatch see it."""
        for entry in self.repo.all_entries():
            if entry.agent_id != conn.agent_id or entry.status != "claimed":
                continue
            mine.add(entry.key)
            if entry.key in known:
                rebound = self.repo.rebind(entry, conn.conn_id)
                if rebound is not None:
                    conn.assigned[entry.key] = rebound
            else:
                # Claimed for this agent but the agent never got it (the link dropped mid-delivery).
                self.repo.unclaim(entry)
        with self._lock:
            self._conns[conn.agent_id] = conn

    def _detach(self, conn: Connection) -> None:
        with self._lock:
            if self._conns.get(conn.agent_id) is conn:
                del self._conns[conn.agent_id]
            METRICS.connected.set(len(self._conns))
        try:
            self.repo.mark_disconnected(conn.agent_id, conn.conn_id, self._clock())
        except StoreError as exc:
            log.warning("could not record the disconnect", extra={"agent": conn.agent_id, "error": str(exc)})
        log.info("agent stream closed", extra={"agent": conn.agent_id, "in_flight": len(conn.assigned)})

    # -- incoming --------------------------------------------------------------------------
    def _read(self, conn: Connection, requests: Iterator[pb.AgentMessage], context: grpc.ServicerContext) -> None:
        try:
            for message in requests:
                if self._expired(conn):
                    break  # nothing more is accepted on this stream; Connect ends it UNAUTHENTICATED
                kind = message.WhichOneof("body")
                if kind == "heartbeat":
                    conn.last_heartbeat = time.monotonic()
                    conn.send(pb.ServerMessage(heartbeat_ack=pb.HeartbeatAck(server_time_ms=int(self._clock() * 1000))))
                elif kind == "ack":
                    self._on_ack(conn, message.ack)
                elif kind == "report":
                    conn.send(pb.ServerMessage(report_ack=self._on_report(conn, message.report)))
                elif kind == "logs":
                    conn.send(pb.ServerMessage(log_ack=self._on_logs(conn, message.logs)))
                else:
                    log.warning("unexpected message on agent stream", extra={"agent": conn.agent_id, "kind": kind})
        except grpc.RpcError:
            pass
        except Exception:
            log.exception("agent stream reader failed", extra={"agent": conn.agent_id})
        finally:
            conn.close()

    def _on_ack(self, conn: Connection, ack: pb.AssignmentAck) -> None:
        if ack.accepted:
            return
        key = try_key(ack.ref)
        queued = conn.assigned.pop(key, None)
        if queued is not None:
            current = self.repo.get(queued)
            if current is not None and current.status == "claimed" and current.conn == conn.conn_id:
                self.repo.unclaim(current)
        log.info("agent refused an assignment", extra={"agent": conn.agent_id, "reason": ack.reason})
        self._kick.set()

    def _on_report(self, conn: Connection, report: pb.StateReport) -> pb.ReportAck:
        key = try_key(report.ref)

        def answer(result: int) -> pb.ReportAck:
            METRICS.reports.labels(result=pb.ReportAck.Result.Name(result).removeprefix("RESULT_").lower()).inc()
            return pb.ReportAck(ref=report.ref, report_id=report.report_id, result=result)  # type: ignore[arg-type]

        state = report.state
        if state not in (pb.TASK_STATE_RUNNING, pb.TASK_STATE_SUCCESS, pb.TASK_STATE_FAILED):
            return answer(pb.ReportAck.RESULT_STALE)
        at = datetime.fromtimestamp((report.occurred_at_ms or int(self._clock() * 1000)) / 1000, UTC)
        for _ in range(5):
            known = conn.assigned.get(key)
            queued = self.repo.get(known) if known is not None else self.repo.find(key)
            if queued is None:
                return answer(pb.ReportAck.RESULT_STALE)
            if queued.status == "done":
                same = queued.agent_id == conn.agent_id and state != pb.TASK_STATE_RUNNING
                conn.assigned.pop(key, None)
                return answer(pb.ReportAck.RESULT_DUPLICATE if same else pb.ReportAck.RESULT_STALE)
            if queued.status != "claimed" or queued.agent_id != conn.agent_id:
                return answer(pb.ReportAck.RESULT_STALE)
            if state == pb.TASK_STATE_RUNNING:
                event = TryEvent(key, TryOutcome.STARTED, at, hostname=report.hostname or None,
                                 executor_ref=conn.agent_id)
                ok = self.repo.record_started(queued, event)
                if ok or self.repo.get(queued) == queued:  # already recorded, claim unchanged
                    return answer(pb.ReportAck.RESULT_ACCEPTED if ok else pb.ReportAck.RESULT_DUPLICATE)
                continue
            event = self._terminal_event(key, report, at, conn.agent_id)
            if self.repo.finish(queued, event):
                conn.assigned.pop(key, None)
                self._kick.set()
                return answer(pb.ReportAck.RESULT_ACCEPTED)
        return answer(pb.ReportAck.RESULT_STALE)

    @staticmethod
    def _terminal_event(key: TryKey, report: pb.StateReport, at: datetime, agent_id: str) -> TryEvent:
        outcome = TryOutcome.SUCCESS if report.state == pb.TASK_STATE_SUCCESS else TryOutcome.FAILED
        reason = report.reason or None
        xcom = report.xcom_return if report.has_xcom_return else None
        if xcom is not None and len(xcom.encode()) > MAX_XCOM_BYTES:
            outcome, reason, xcom = TryOutcome.FAILED, f"XCom return value is larger than {MAX_XCOM_BYTES} bytes", None
        return TryEvent(key, outcome, at, exit_code=report.exit_code if report.has_exit_code else None,
                        reason=reason, hostname=report.hostname or None, executor_ref=agent_id, xcom_return=xcom)

    def _owns(self, conn: Connection, key: TryKey) -> bool:
        """Only the agent a try was claimed for may write its log (also after it finished)."""
        if key in conn.assigned:
            return True
        entry = self.repo.find(key)
        return entry is not None and entry.agent_id == conn.agent_id

    def _on_logs(self, conn: Connection, batch: pb.LogBatch) -> pb.LogAck:
        key = try_key(batch.ref)
        if not self._owns(conn, key):
            log.warning("log lines for a try this agent does not hold were dropped",
                        extra={"agent": conn.agent_id, "task_id": key.task_id, "try_number": key.try_number})
            # Acknowledged so the agent stops resending; nothing was written.
            return pb.LogAck(ref=batch.ref, through_seq=batch.first_seq + len(batch.lines) - 1)
        state = self._try_log(key)
        with state.lock:
            through = state.through
            if through is None:
                through = self.logs.count_lines(key)
            skip = max(0, through - (batch.first_seq - 1))
            if batch.first_seq > through + 1:
                # A gap: lines before first_seq never arrived; ask for them again by acking what we have.
                return pb.LogAck(ref=batch.ref, through_seq=through)
            try:
                events = [self._mask(key, line.event) for line in list(batch.lines)[skip:]]
            except SecretsUnavailable as exc:
                # Never store a line we cannot mask: ack what we have, the agent resends later.
                log.warning("log lines held back: cannot mask them", extra={"agent": conn.agent_id,
                                                                            "error": str(exc)})
                return pb.LogAck(ref=batch.ref, through_seq=through)
            lines = [
                {"timestamp": line.timestamp, "level": line.level or "info", "event": event,
                 "logger": f"task.{line.stream}" if line.stream in ("stdout", "stderr") else "leoflow.agent"}
                for line, event in zip(list(batch.lines)[skip:], events, strict=True)
            ]
            if lines:
                self.logs.append(key, lines)
                METRICS.log_lines.inc(len(lines))
            through += len(lines)
            state.through = through
            return pb.LogAck(ref=batch.ref, through_seq=through)

    def _try_log(self, key: TryKey) -> _TryLog:
        with self._log_lock:
            state = self._try_logs.get(key)
            if state is None:
                state = self._try_logs[key] = _TryLog()
                if len(self._try_logs) > 10_000:
                    # Forget the oldest idle try; a later batch for it recounts its lines once.
                    idle = next((k for k, v in self._try_logs.items() if k != key and not v.lock.locked()), None)
                    if idle is not None:
                        del self._try_logs[idle]
            return state

    def _mask(self, key: TryKey, text: str) -> str:
        if self.secrets is None:
            return text

        def request() -> TryRequest | None:
            queued = self.repo.find(key)
            return queued.request if queued is not None else None

        return self.secrets.mask(key, text, request)

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        index = 0
        prefix = self.repo.queue_prefix()
        while not self._stop.is_set():
            try:
                self.dispatch()
                if self._kick.is_set():
                    self._kick.clear()
                    continue
                result = self.repo.store.watch(prefix, index=index, wait=self.settings.dispatch_wait, recurse=True)
                index = result.index
            except StoreError as exc:
                log.warning("dispatch round failed", extra={"error": str(exc)})
                self._stop.wait(0.5)
            except Exception:
                log.exception("dispatch round crashed")
                self._stop.wait(0.5)

    def dispatch(self) -> int:
        """Hand pending tries to local agents with free capacity; send pending cancels. Returns tries sent."""
        with self._dispatch_lock:
            return self._dispatch_locked()

    def _dispatch_locked(self) -> int:
        with self._lock:
            # An expired stream is about to end: what it would be sent would only be unclaimed again.
            conns = [c for c in self._conns.values() if not c.closed.is_set() and not self._expired(c)]
        if not conns:
            return 0
        by_conn = {c.conn_id: c for c in conns}
        entries = self.repo.all_entries()
        for entry in entries:
            conn = by_conn.get(entry.conn or "")
            if entry.status == "claimed" and conn is not None and entry.cancel and entry.key not in conn.cancels_sent:
                conn.cancels_sent.add(entry.key)
                conn.send(pb.ServerMessage(cancel=pb.Cancel(ref=try_ref(entry.key), reason=entry.cancel)))
        pending = sorted((e for e in entries if e.status == "pending"),
                         key=lambda e: (-e.request.priority_weight, e.submitted_at))
        sent = 0
        for entry in pending:
            candidates = [c for c in conns if c.serves(entry.request.queue) and c.free > 0
                          and not c.closed.is_set()]
            if not candidates:
                continue
            conn = max(candidates, key=lambda c: c.free)
            env = delivery.prepare(self.secrets, self.repo, entry)
            if env is None:
                continue
            claimed = self.repo.claim(entry, conn.agent_id, conn.conn_id, self._clock())
            if claimed is None:
                continue
            conn.assigned[claimed.key] = claimed
            conn.send(pb.ServerMessage(assignment=self._assignment(claimed, env)))
            METRICS.assignments.inc()
            sent += 1
        return sent

    def _assignment(self, queued: QueuedTry, env: dict[str, str]) -> pb.Assignment:
        req = queued.request
        container = bool(req.image) and req.queue in self.settings.container_queues
        return pb.Assignment(
            ref=try_ref(req.key),
            command=list(req.command),
            image=req.image or "",
            env=env,
            timeout_seconds=req.timeout_seconds or 0.0,
            queue=req.queue,
            resources=pb.Resources(cpu=req.resources.cpu, memory=req.resources.memory,
                                   memory_max=req.resources.memory_max or 0),
            runtime="container" if container else "process",
        )

    # -- liveness --------------------------------------------------------------------------
    def _monitor_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.heartbeat_interval)):
            now = time.monotonic()
            with self._lock:
                conns = list(self._conns.values())
            for conn in conns:
                if now - conn.last_heartbeat > self.settings.heartbeat_timeout:
                    METRICS.heartbeat_timeouts.inc()
                    log.warning("agent missed its heartbeats; dropping the stream",
                                extra={"agent": conn.agent_id, "silent_for": round(now - conn.last_heartbeat, 1)})
                    conn.close()
