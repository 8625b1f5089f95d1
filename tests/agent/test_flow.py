"""Tries through the whole path: agents executor -> store queue -> agentrpc -> agent -> events back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prometheus_client import REGISTRY

from leoflow.executors.port import TryOutcome
from tests.agent.conftest import Rig, wait_until
from tests.agent.proxy import CuttableProxy


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


def test_success_with_xcom_and_logs(rig: Rig) -> None:
    assignments = _sample("leoflow_agentrpc_assignments_total")
    lines = _sample("leoflow_agentrpc_log_lines_total")
    rig.agent()
    key = rig.submit("hello", ["sh", "-c", 'echo out; echo err >&2; echo \'{"n": 42}\' > "$LEOFLOW_XCOM_RETURN"'])
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.SUCCESS
    assert event.exit_code == 0
    assert json.loads(event.xcom_return or "null") == {"n": 42}
    assert event.executor_ref == "a1"
    started = [e for e in rig.events_for(key) if e.outcome is TryOutcome.STARTED]
    assert len(started) == 1 and started[0].hostname
    wait_until(lambda: len(rig.logs.read(key).lines) >= 4, what="log lines")
    logged = rig.logs.read(key).lines
    by_event = {line["event"]: line for line in logged}
    assert by_event["out"]["level"] == "info" and by_event["out"]["logger"] == "task.stdout"
    assert by_event["err"]["level"] == "error"
    assert all({"timestamp", "level", "event"} <= set(line) for line in logged)
    assert _sample("leoflow_agentrpc_assignments_total") == assignments + 1
    assert _sample("leoflow_agentrpc_log_lines_total") >= lines + 4
    assert _sample("leoflow_agentrpc_reports_total", result="accepted") >= 2
    assert _sample("leoflow_agentrpc_registrations_total") >= 1
    assert _sample("leoflow_agentrpc_connected_agents") == 1


def test_failure_reports_exit_code_and_reason(rig: Rig) -> None:
    rig.agent()
    event = rig.wait_terminal(rig.submit("bad", ["sh", "-c", "exit 3"]))
    assert event.outcome is TryOutcome.FAILED
    assert event.exit_code == 3
    assert event.reason == "exit code 3"


def test_missing_command_fails_cleanly(rig: Rig) -> None:
    rig.agent()
    event = rig.wait_terminal(rig.submit("nocmd", ["/nonexistent/leoflow-binary"]))
    assert event.outcome is TryOutcome.FAILED
    assert "command not found: /nonexistent/leoflow-binary" in (event.reason or "")


def test_timeout_kills_the_whole_process_group(rig: Rig, tmp_path: Path) -> None:
    rig.agent()
    pidfile = tmp_path / "child.pid"
    key = rig.submit("slow", ["sh", "-c", f'sleep 30 & echo $! > {pidfile}; wait'], timeout=0.5)
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED
    assert (event.reason or "").startswith("execution_timeout")
    child = int(pidfile.read_text())
    wait_until(lambda: not _alive(child), timeout=5, what="the grandchild to die")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of a reaped group is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cancel_of_a_running_try(rig: Rig) -> None:
    rig.agent()
    key = rig.submit("long", ["sleep", "30"])
    wait_until(lambda: any(e.outcome is TryOutcome.STARTED for e in rig.executor.events(0.1) if e.key == key),
               what="the try to start")
    rig.executor.cancel(key, "marked failed by a user")
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED
    assert event.reason == "cancelled: marked failed by a user"


def test_cancel_of_a_pending_try_never_runs_it(rig: Rig) -> None:
    key = rig.submit("never", ["true"])
    rig.executor.cancel(key, "run deleted")
    rig.executor.cancel(key, "run deleted")  # idempotent
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED and event.reason == "cancelled: run deleted"
    rig.agent()
    rig.drain_events(0.5)
    assert [e.outcome for e in rig.events_for(key)] == [TryOutcome.FAILED]


def test_submit_is_idempotent_and_one_agent_runs_each_try(rig: Rig, tmp_path: Path) -> None:
    rig.agent("a1", capacity=2)
    rig.agent("a2", capacity=2)
    marks = tmp_path / "marks"
    marks.mkdir()
    keys = []
    for i in range(12):
        key = rig.submit(f"t{i}", ["sh", "-c", f"echo x >> {marks}/t{i}"])
        rig.submit(f"t{i}", ["sh", "-c", f"echo x >> {marks}/t{i}"])  # a duplicate submit
        keys.append(key)
    for key in keys:
        assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    rig.drain_events(0.3)
    for i, key in enumerate(keys):
        assert (marks / f"t{i}").read_text() == "x\n", f"t{i} ran more than once"
        assert sum(1 for e in rig.events_for(key) if e.terminal) == 1
    assert {e.executor_ref for e in rig.seen if e.terminal} == {"a1", "a2"}


def test_capacity_is_respected(rig: Rig, tmp_path: Path) -> None:
    rig.agent(capacity=2)
    gate = tmp_path / "gate"
    keys = [rig.submit(f"c{i}", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"]) for i in range(4)]
    time.sleep(0.5)
    running = [q for q in rig.executor.queue.all_entries() if q.status == "claimed"]
    assert len(running) == 2
    gate.touch()
    for key in keys:
        assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS


def test_pools_route_tries(rig: Rig) -> None:
    rig.agent("gpu-agent", pools=("gpu",))
    key = rig.submit("on-gpu", ["true"], queue="gpu")
    other = rig.submit("on-default", ["true"])
    assert rig.wait_terminal(key).executor_ref == "gpu-agent"
    rig.drain_events(0.3)
    assert not [e for e in rig.events_for(other) if e.terminal]
    rig.agent("cpu-agent", pools=("default",))
    assert rig.wait_terminal(other).executor_ref == "cpu-agent"


def test_xcom_over_256_kib_fails_the_try(rig: Rig) -> None:
    rig.agent()
    big = "python3 -c \"import json,os; open(os.environ['LEOFLOW_XCOM_RETURN'],'w').write(json.dumps('x'*300000))\""
    event = rig.wait_terminal(rig.submit("big", ["sh", "-c", big]))
    assert event.outcome is TryOutcome.FAILED
    assert "256 KiB" in (event.reason or "")
    assert event.xcom_return is None


def test_invalid_xcom_json_fails_with_position(rig: Rig) -> None:
    rig.agent()
    event = rig.wait_terminal(rig.submit("badjson", ["sh", "-c", 'echo "{nope" > "$LEOFLOW_XCOM_RETURN"']))
    assert event.outcome is TryOutcome.FAILED
    assert "not valid JSON (line 1, column 2" in (event.reason or "")


def test_task_env_carries_identity_but_not_agent_secrets(rig: Rig, tmp_path: Path, monkeypatch: object) -> None:
    os.environ["LEOFLOW_AGENT__TOKEN_FILE"] = "/secret/path"
    try:
        rig.agent()
        out = tmp_path / "env.txt"
        key = rig.submit("env", ["sh", "-c", f"env > {out}"], env={"GREETING": "hi there"})
        assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    finally:
        del os.environ["LEOFLOW_AGENT__TOKEN_FILE"]
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["GREETING"] == "hi there"
    assert env["AIRFLOW_CTX_TASK_ID"] == "env" and env["AIRFLOW_CTX_TRY_NUMBER"] == "1"
    assert "LEOFLOW_AGENT__TOKEN_FILE" not in env


def test_link_drop_while_the_task_finishes_reports_exactly_once(rig: Rig, tmp_path: Path) -> None:
    proxy = CuttableProxy(rig.port)
    try:
        agent = rig.agent(port=proxy.port)
        gate = tmp_path / "gate"
        script = f"echo before; while [ ! -e {gate} ]; do sleep 0.02; done; echo after"
        key = rig.submit("linkdrop", ["sh", "-c", script])
        wait_until(lambda: any(e.outcome is TryOutcome.STARTED for e in rig.executor.events(0.1) if e.key == key),
                   what="start")
        proxy.cut()
        gate.touch()
        outcomes = agent.runner.work_dir / "outcomes"
        wait_until(lambda: any(outcomes.glob("*.json")), what="the outcome to be persisted while the link is down")
        rig.drain_events(0.5)
        assert not [e for e in rig.events_for(key) if e.terminal], "reported although the link was cut"
        proxy.restore()
        event = rig.wait_terminal(key)
        assert event.outcome is TryOutcome.SUCCESS
        rig.drain_events(1.0)
        assert sum(1 for e in rig.events_for(key) if e.terminal) == 1
        wait_until(lambda: not any(outcomes.glob("*.json")), what="the outcome file to be acknowledged")
        wait_until(lambda: [line["event"] for line in rig.logs.read(key).lines if line["logger"] == "task.stdout"]
                   == ["before", "after"], what="every log line exactly once")
    finally:
        proxy.close()


def test_silent_stream_is_dropped_and_its_tries_are_lost(rig: Rig) -> None:
    """An agent whose stream stays open but stops heartbeating (a hung host) is cut off, then lost."""
    import threading

    import grpc

    from leoflow.agentrpc.gen import agent_pb2 as pb
    from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc

    before = _sample("leoflow_agentrpc_heartbeat_timeouts_total")
    metadata = (("authorization", f"Bearer {rig.issuer().mint('hung', ('default',))}"),)
    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{rig.port}") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        reg = stub.Register(pb.RegisterRequest(agent_id="hung", pools=["default"], capacity=1, version="t"),
                            metadata=metadata, timeout=5)

        def requests():  # attach, then silence
            yield pb.AgentMessage(attach=pb.Attach(session_id=reg.session_id))
            release.wait(30)

        key = rig.submit("stuck", ["true"])
        call = stub.Connect(requests(), metadata=metadata)
        received = []
        try:
            for message in call:  # ends when the server drops the silent stream
                received.append(message.WhichOneof("body"))
        except grpc.RpcError:
            pass
        finally:
            release.set()
    assert "assignment" in received
    assert _sample("leoflow_agentrpc_heartbeat_timeouts_total") == before + 1
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.LOST and "agent hung lost" in (event.reason or "")


def test_an_agent_cannot_write_another_agents_log(rig: Rig) -> None:
    import grpc

    from leoflow.agentrpc.gen import agent_pb2 as pb
    from leoflow.agentrpc.gen import agent_pb2_grpc as pb_grpc

    rig.agent("owner")
    key = rig.submit("owned", ["sh", "-c", "echo mine"])
    assert rig.wait_terminal(key).outcome is TryOutcome.SUCCESS
    wait_until(lambda: any(line["event"] == "mine" for line in rig.logs.read(key).lines), what="the log")
    before = rig.logs.read(key).lines
    metadata = (("authorization", f"Bearer {rig.issuer().mint('intruder', ('default',))}"),)
    with grpc.insecure_channel(f"127.0.0.1:{rig.port}") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        reg = stub.Register(pb.RegisterRequest(agent_id="intruder", pools=["default"], capacity=1, version="t"),
                            metadata=metadata, timeout=5)
        ref = pb.TryRef(dag_id=key.dag_id, run_id=key.run_id, task_id=key.task_id, map_index=key.map_index,
                        try_number=key.try_number)
        forged = pb.LogBatch(ref=ref, first_seq=len(before) + 1,
                             lines=[pb.LogLine(timestamp="2026-01-01T00:00:00Z", level="info", event="forged")])
        report = pb.StateReport(ref=ref, state=pb.TASK_STATE_FAILED, report_id=7)
        call = stub.Connect(iter([pb.AgentMessage(attach=pb.Attach(session_id=reg.session_id)),
                                  pb.AgentMessage(logs=forged), pb.AgentMessage(report=report)]),
                            metadata=metadata)
        answers = {}
        for message in call:
            kind = message.WhichOneof("body")
            answers[kind] = message
            if {"log_ack", "report_ack"} <= set(answers):
                call.cancel()
                break
    assert answers["report_ack"].report_ack.result == pb.ReportAck.RESULT_STALE
    assert rig.logs.read(key).lines == before
