"""The agent's link to agentrpc: dial (TLS), register, hold the stream, reconnect with backoff.

A session is Register + one Connect stream. The stream's request side is a generator that sends
``attach`` first, then whatever the runner has not yet sent in *this* session (so a reconnect
resends every unacknowledged line and report), heartbeats, and assignment acks. The link treats
silence from the server for longer than the heartbeat timeout as a dead link and redials; it
never kills tasks for it (the runner keeps going and reports after the reconnect).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from leoflow.agent.auth import TokenError, TokenSource
from leoflow.agent.metrics import METRICS
from leoflow.agent.runner import Runner, SessionView
from leoflow.agentrpc.addresses import is_loopback
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class DialError(Exception):
    """The link cannot be set up as configured; the message names the config key."""


@dataclass(frozen=True)
class DialOptions:
    target: str
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    insecure: bool = False


def make_channel(opts: DialOptions) -> grpc.Channel:
    """TLS unless the operator said ``insecure`` or the server is on loopback (fail closed)."""
    options = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
               ("grpc.keepalive_permit_without_calls", 1)]
    use_tls = bool(opts.tls_ca_file or opts.tls_cert_file) or not (opts.insecure or is_loopback(opts.target))
    if not use_tls:
        return grpc.insecure_channel(opts.target, options=options)
    try:
        root = Path(opts.tls_ca_file).read_bytes() if opts.tls_ca_file else None
        cert = Path(opts.tls_cert_file).read_bytes() if opts.tls_cert_file else None
        key = Path(opts.tls_key_file).read_bytes() if opts.tls_key_file else None
    except OSError as exc:
        raise DialError(f"agent TLS file {exc.filename}: {exc.strerror}") from exc
    if (cert is None) != (key is None):
        raise DialError("config keys agent.tls_cert_file and agent.tls_key_file go together")
    creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(opts.target, creds, options=options)


class Backoff:
    """Exponential backoff with full jitter: many agents losing one server do not return in step."""

    def __init__(self, base: float = 0.2, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.maximum, self.base * (2 ** self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class AgentIdentityInfo:
    agent_id: str
    pools: tuple[str, ...]
    labels: dict[str, str]
    version: str
    hostname: str


class Link:
    def __init__(self, opts: DialOptions, tokens: TokenSource, runner: Runner, info: AgentIdentityInfo,
                 max_backoff: float = 30.0) -> None:
        self.opts = opts
        self.tokens = tokens
        self.runner = runner
        self.info = info
        self.backoff = Backoff(maximum=max_backoff)
        self.connected = threading.Event()
        self.sessions = 0
        self._stop = threading.Event()
        self._call: grpc.Future | None = None  # type: ignore[type-arg]
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()
        self.drop()
        self.runner.signal.notify()

    def drop(self) -> None:
        """Cut the current stream (the link then redials): used on heartbeat silence and in tests."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def run(self) -> None:
        while not self._stop.is_set():
            if self.sessions > 0:
                METRICS.reconnects.inc()
            self.sessions += 1
            channel = make_channel(self.opts)  # DialError: misconfigured, not retried
            try:
                self._session(channel)
            except TokenError as exc:
                log.error("no token to dial with", extra={"error": str(exc)})
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                level = logging.ERROR if code in (grpc.StatusCode.UNAUTHENTICATED,
                                                  grpc.StatusCode.PERMISSION_DENIED) else logging.WARNING
                log.log(level, "agent link lost", extra={
                    "code": code.name if code is not None else "?",
                    "detail": exc.details() if hasattr(exc, "details") else str(exc)})
            finally:
                self.connected.clear()
                channel.close()
            if self._stop.is_set():
                break
            delay = self.backoff.next()
            log.info("redialling", extra={"in_seconds": round(delay, 3), "target": self.opts.target})
            self._stop.wait(delay)

    def _session(self, channel: grpc.Channel) -> None:
        stub = pb_grpc.AgentServiceStub(channel)
        metadata = (("authorization", f"Bearer {self.tokens.token()}"),)
        reg = stub.Register(
            pb.RegisterRequest(agent_id=self.info.agent_id, pools=list(self.info.pools), labels=self.info.labels,
                               capacity=self.runner.capacity, version=self.info.version, hostname=self.info.hostname),
            metadata=metadata, timeout=10.0, wait_for_ready=True,
        )
        interval = max(0.05, reg.heartbeat_interval_ms / 1000.0)
        silence = max(interval * 2, reg.heartbeat_timeout_ms / 1000.0)
        view = SessionView()
        urgent: queue.SimpleQueue[pb.AgentMessage] = queue.SimpleQueue()
        done = threading.Event()
        last_heard = [time.monotonic()]

        def requests() -> Iterator[pb.AgentMessage]:
            yield pb.AgentMessage(attach=pb.Attach(session_id=reg.session_id, known=self.runner.known()))
            next_beat = 0.0
            seen = -1
            while not done.is_set() and not self._stop.is_set():
                now = time.monotonic()
                if now - last_heard[0] > silence:
                    log.warning("server silent past the heartbeat timeout; redialling",
                                extra={"silent_for": round(now - last_heard[0], 1)})
                    self.drop()
                    return
                if now >= next_beat:
                    next_beat = now + interval
                    yield pb.AgentMessage(heartbeat=pb.Heartbeat(sent_at_ms=int(time.time() * 1000),
                                                                 running=self.runner.running_count()))
                while True:
                    try:
                        yield urgent.get_nowait()
                    except queue.Empty:
                        break
                current = self.runner.signal.version
                if current != seen:
                    seen = current
                    yield from self.runner.collect(view)
                    continue
                self.runner.signal.wait(seen, max(0.0, min(interval, next_beat - time.monotonic())))

        call = stub.Connect(requests(), metadata=metadata)
        with self._lock:
            self._call = call
        try:
            for message in call:
                last_heard[0] = time.monotonic()
                if not self.connected.is_set():
                    self.connected.set()
                    self.backoff.reset()
                    log.info("agent link up", extra={"target": self.opts.target, "server_id": reg.server_id})
                kind = message.WhichOneof("body")
                if kind == "assignment":
                    urgent.put(pb.AgentMessage(ack=self.runner.on_assignment(message.assignment)))
                    self.runner.signal.notify()
                elif kind == "cancel":
                    self.runner.on_cancel(message.cancel)
                elif kind == "report_ack":
                    self.runner.on_report_ack(message.report_ack)
                elif kind == "log_ack":
                    self.runner.on_log_ack(message.log_ack)
        finally:
            done.set()
            self.runner.signal.notify()
            with self._lock:
                self._call = None
