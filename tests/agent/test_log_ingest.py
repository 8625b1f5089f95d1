"""agentrpc's log ingestion: resuming a try's sequence from the file never parses (or chokes on) its lines."""

from __future__ import annotations

import threading
import time

from leoflow.agentrpc.gen import agent_pb2 as pb
from leoflow.agentrpc.service import AgentService, Connection, _Registration, try_ref
from leoflow.executors.port import TryOutcome
from tests.agent.conftest import Rig, wait_until


def _fresh_service(rig: Rig) -> tuple[AgentService, Connection]:
    """A service that has never seen the try, as after an agentrpc restart or on another replica."""
    service = AgentService(rig.server.repo, rig.server.verifier, rig.logs)
    reg = _Registration(agent_id="owner", subject="agent:owner", pools=("default",), capacity=1, hostname="h",
                        version="t", labels={}, created=time.time())
    return service, Connection(conn_id="c2", agent_id="owner", reg=reg)


def test_resume_counts_lines_of_a_log_with_a_malformed_line(rig: Rig) -> None:
    rig.agent("owner")
    key = rig.submit("owned", ["sh", "-c", "echo one; echo two"])
    assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    wait_until(lambda: any(line.get("event") == "two" for line in rig.logs.read(key).lines), what="the log")
    path = rig.logs.path(key)
    with path.open("ab") as fh:  # a torn write from a full disk, then the rest of the file is fine
        fh.write(b'{"event": "cut off\n')
    written = len(rig.logs.read(key).lines)
    service, conn = _fresh_service(rig)
    late = pb.LogLine(timestamp="2026-01-01T00:00:00Z", level="info", event="late", stream="stdout")
    batch = pb.LogBatch(ref=try_ref(key), first_seq=written + 1, lines=[late])
    ack = service._on_logs(conn, batch)
    assert ack.through_seq == written + 1
    lines = rig.logs.read(key).lines
    assert lines[-1]["event"] == "late"
    assert {"event": '{"event": "cut off', "level": "info"} in lines
    # A resend of the same batch is recognised from the file count and not written twice.
    assert service._on_logs(conn, batch).through_seq == written + 1
    assert len(rig.logs.read(key).lines) == written + 1


def test_one_tries_lock_does_not_hold_up_another_try(rig: Rig) -> None:
    rig.agent("owner")
    first = rig.submit("first", ["sh", "-c", "echo a"])
    second = rig.submit("second", ["sh", "-c", "echo b"])
    assert rig.wait_terminal(first).outcome is TryOutcome.SUCCESS
    assert rig.wait_terminal(second).outcome is TryOutcome.SUCCESS
    service, conn = _fresh_service(rig)
    held = service._try_log(first).lock
    held.acquire()  # as if a slow append for ``first`` were in progress
    try:
        result: list[int] = []
        done = threading.Event()
        count = len(rig.logs.read(second).lines)

        def write_second() -> None:
            batch = pb.LogBatch(ref=try_ref(second), first_seq=count + 1,
                                lines=[pb.LogLine(timestamp="t", level="info", event="more", stream="stdout")])
            result.append(service._on_logs(conn, batch).through_seq)
            done.set()

        threading.Thread(target=write_second, daemon=True).start()
        assert done.wait(5), "a log batch for one try waited on another try's lock"
        assert result == [count + 1]
    finally:
        held.release()
