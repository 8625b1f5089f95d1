"""A stream lives no longer than its token: it ends UNAUTHENTICATED and the agent redials with a fresh one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from leoflow.agent.auth import LocalTokenSource
from leoflow.agent.dial import AgentIdentityInfo, DialOptions, Link
from leoflow.agent.runner import Runner
from leoflow.agentrpc.auth import TokenVerifier
from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc
from leoflow.agentrpc.jwks import FileJwksSource
from leoflow.agentrpc.localkeys import LOCAL_ISSUER, LocalKeyPaths
from leoflow.agentrpc.server import AgentRpcServer
from leoflow.agentrpc.service import ServiceSettings
from leoflow.executors.port import TryOutcome
from leoflow.store.sqlite import SqliteStore
from tests.agent.conftest import Rig, wait_until


def _expiries() -> float:
    return REGISTRY.get_sample_value("leoflow_agentrpc_token_expiries_total") or 0.0


@pytest.fixture
def strict_server(rig: Rig) -> Iterator[AgentRpcServer]:
    """A second listener over the rig's store whose verifier grants no clock-skew leeway."""
    paths = LocalKeyPaths.under(rig.home)
    rig.issuer()  # makes sure the local key pair exists
    verifier = TokenVerifier(FileJwksSource(paths.jwks), issuer=LOCAL_ISSUER, audience=rig.config.vault.audience,
                             leeway=0.0)
    server = AgentRpcServer(rig.config, SqliteStore(rig.home / "leoflow.db", session_ttl_min=1.0),
                            bind="127.0.0.1:0", verifier=verifier,
                            settings=ServiceSettings(heartbeat_interval=0.25, heartbeat_timeout=2.0))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


def test_stream_ends_unauthenticated_when_its_token_expires(rig: Rig, strict_server: AgentRpcServer) -> None:
    token = rig.issuer().mint("raw", ("default",), ttl=2.0)
    channel = grpc.insecure_channel(f"127.0.0.1:{strict_server.port}")
    try:
        stub = pb_grpc.AgentServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        reg = stub.Register(pb.RegisterRequest(agent_id="raw", pools=["default"], capacity=1, hostname="h",
                                               version="t"), metadata=metadata, timeout=5)
        stop = threading.Event()

        def requests() -> Iterator[pb.AgentMessage]:
            yield pb.AgentMessage(attach=pb.Attach(session_id=reg.session_id))
            while not stop.wait(0.2):  # heartbeats keep the stream alive; only the token may end it
                yield pb.AgentMessage(heartbeat=pb.Heartbeat(sent_at_ms=int(time.time() * 1000)))

        before = _expiries()
        started = time.monotonic()
        call = stub.Connect(requests(), metadata=metadata, timeout=15)
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:
                pass
        stop.set()
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED, info.value
        assert "token expired" in (info.value.details() or "")
        assert time.monotonic() - started < 5.0  # ended at expiry, not at the call's own deadline
        assert _expiries() == before + 1
        assert "raw" not in strict_server.service.connected_agents()
    finally:
        channel.close()


def test_agent_redials_with_a_fresh_token_and_keeps_its_running_try(rig: Rig, strict_server: AgentRpcServer,
                                                                     tmp_path: Path) -> None:
    runner = Runner(tmp_path / "agent", 2, kill_grace=1.0)
    tokens = LocalTokenSource(rig.issuer(), "short", ("default",), ttl=2.0)
    link = Link(DialOptions(f"127.0.0.1:{strict_server.port}"), tokens, runner,
                AgentIdentityInfo("short", ("default",), {}, "test", "testhost"), max_backoff=0.3)
    thread = threading.Thread(target=link.run, daemon=True)
    thread.start()
    try:
        assert link.connected.wait(10)
        before = _expiries()
        # The try outlives several tokens; it must finish once, with its whole log, across redials.
        key = rig.submit("long", ["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 1; done"])
        event = rig.wait_terminal(key, timeout=30)
        assert event.outcome is TryOutcome.SUCCESS, event.reason
        assert _expiries() >= before + 2
        assert link.sessions >= 3
        rig.drain_events(0.5)
        assert [e.outcome for e in rig.events_for(key) if e.terminal] == [TryOutcome.SUCCESS]
        wait_until(lambda: sum(1 for x in rig.logs.read(key).lines if str(x.get("event", "")).startswith("tick"))
                   == 5, what="all five log lines")
        wait_until(lambda: "short" in strict_server.service.connected_agents(), what="the agent back online")
    finally:
        link.stop()
        thread.join(timeout=10)
