"""The real `leoflow-agent` process: CLI, metrics, being killed, restarting with unreported outcomes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from leoflow.agent.runner import SessionView
from leoflow.executors.port import TryOutcome
from tests.agent.conftest import Rig, wait_until
from tests.agent.proxy import CuttableProxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_help_and_bad_config() -> None:
    done = subprocess.run([sys.executable, "-m", "leoflow.agent.main", "--help"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0 and "--pools" in done.stdout and "Vault" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "leoflow.agent.main", "--capacity", "0"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "agent.capacity" in bad.stderr and "Traceback" not in bad.stderr
    labels = subprocess.run([sys.executable, "-m", "leoflow.agent.main"], capture_output=True, text=True,
                            timeout=30, check=False, env={**os.environ, "LEOFLOW_AGENT__LABELS": "zone=a,oops"})
    assert labels.returncode == 2 and "agent.labels: 'oops' is not key=value" in labels.stderr
    runtime = subprocess.run([sys.executable, "-m", "leoflow.agent.main"], capture_output=True, text=True,
                             timeout=30, check=False, env={**os.environ, "LEOFLOW_AGENT__RUNTIME": "lxc"})
    assert runtime.returncode == 2 and "agent.runtime" in runtime.stderr


def test_no_token_is_a_clear_error(tmp_path: Path) -> None:
    env = {"LEOFLOW_HOME": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "leoflow.agent.main", "--metrics-bind", ""], capture_output=True,
                          text=True, timeout=30, check=False, env=env)
    assert done.returncode == 1
    assert "no agent token" in done.stderr and "token_file" in done.stderr and "Traceback" not in done.stderr


def test_metrics_and_json_logs(rig: Rig, tmp_path: Path) -> None:
    proxy = CuttableProxy(rig.port)
    mport = _free_port()
    try:
        proc = rig.agent_process("m1", capacity=3, port=proxy.port, metrics_bind=f"127.0.0.1:{mport}")
        rig.wait_connected("m1")
        m = _metrics(mport)
        assert m[("leoflow_agent_capacity", ())] == 3
        assert m[("leoflow_agent_running_tasks", ())] == 0
        gate = tmp_path / "gate"
        slow = rig.submit("slow", ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"])
        wait_until(lambda: _metrics(mport)[("leoflow_agent_running_tasks", ())] == 1, what="running gauge")
        gate.touch()
        assert rig.wait_terminal(slow).outcome is TryOutcome.SUCCESS
        assert rig.wait_terminal(rig.submit("bad", ["sh", "-c", "exit 3"])).exit_code == 3
        proxy.cut()
        proxy.restore()
        wait_until(lambda: _metrics(mport).get(("leoflow_agent_reconnects_total", ()), 0) >= 1, what="reconnect")
        m = _metrics(mport)
        assert m[("leoflow_agent_running_tasks", ())] == 0
        assert m[("leoflow_agent_task_duration_seconds_count", ())] == 2
        assert m[("leoflow_agent_task_duration_seconds_sum", ())] > 0
        assert m[("leoflow_agent_task_exit_codes_total", (("exit_code", "0"),))] == 1
        assert m[("leoflow_agent_task_exit_codes_total", (("exit_code", "3"),))] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines() if line.strip()]
        assert all(line["process"] == "agent" and "ts" in line and "level" in line for line in lines)
        events = [line["event"] for line in lines]
        assert "agent started" in events and "agent stopped" in events
    finally:
        proxy.close()


def test_killed_agent_is_lost_and_the_retry_runs_elsewhere(rig: Rig, tmp_path: Path) -> None:
    proc = rig.agent_process("doomed")
    rig.wait_connected("doomed")
    key = rig.submit("victim", ["sleep", "30"])
    wait_until(lambda: any(e.outcome is TryOutcome.STARTED for e in rig.executor.events(0.1) if e.key == key),
               what="the try to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    event = rig.wait_terminal(key, timeout=15)
    assert event.outcome is TryOutcome.LOST
    assert "agent doomed lost" in (event.reason or "")
    # The scheduler's retry is a new try number; another agent takes it.
    rig.agent("survivor")
    retry = rig.submit("victim", ["true"], try_number=2)
    assert rig.wait_terminal(retry).executor_ref == "survivor"
    # The task the killed agent left behind is killed when that agent comes back.
    pid = json.loads(next((rig.home / "agent-doomed" / "running").glob("*.json")).read_text())["pid"]
    assert _alive(pid)
    from leoflow.agent.runner import Runner

    restarted = Runner(rig.home / "agent-doomed", 1)
    assert restarted.orphans_killed == 1
    wait_until(lambda: not _alive(pid), what="the orphan to die")
    # ... and the try it had accepted is reported failed (never silently re-run under the same number).
    reports = [m.report for m in restarted.collect(SessionView()) if m.HasField("report")]
    assert [(r.ref.task_id, r.state) for r in reports] == [("victim", 3)]


def test_outcome_of_a_killed_agent_is_reported_once_after_restart(rig: Rig, tmp_path: Path) -> None:
    proxy = CuttableProxy(rig.port)
    try:
        proc = rig.agent_process("phoenix", port=proxy.port)
        rig.wait_connected("phoenix")
        gate = tmp_path / "gate"
        script = f"while [ ! -e {gate} ]; do sleep 0.02; done; echo '[1]' > $LEOFLOW_XCOM_RETURN"
        key = rig.submit("survives", ["sh", "-c", script])
        wait_until(lambda: any(e.outcome is TryOutcome.STARTED for e in rig.executor.events(0.1) if e.key == key),
                   what="the try to start")
        proxy.cut()
        gate.touch()
        outcomes = rig.home / "agent-phoenix" / "outcomes"
        wait_until(lambda: any(outcomes.glob("*.json")), what="the outcome on disk")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proxy.restore()
        rig.agent_process("phoenix", port=proxy.port)
        event = rig.wait_terminal(key)
        assert event.outcome is TryOutcome.SUCCESS and event.xcom_return == "[1]\n"
        rig.drain_events(1.0)
        assert sum(1 for e in rig.events_for(key) if e.terminal) == 1
        wait_until(lambda: not any(outcomes.glob("*.json")), what="the outcome file to be cleared")
    finally:
        proxy.close()


def test_agent_restart_mid_task_reports_the_try_failed_once(rig: Rig, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = rig.agent_process("bouncer")
    rig.wait_connected("bouncer")
    key = rig.submit("once", ["sh", "-c", f"echo x >> {marks}/once; sleep 30"])
    wait_until(lambda: any(e.outcome is TryOutcome.STARTED for e in rig.executor.events(0.1) if e.key == key),
               what="the try to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    rig.agent_process("bouncer")  # back before the heartbeat timeout
    event = rig.wait_terminal(key)
    assert event.outcome is TryOutcome.FAILED
    assert "agent restarted while this try ran" in (event.reason or "")
    rig.drain_events(1.0)
    assert sum(1 for e in rig.events_for(key) if e.terminal) == 1
    assert (marks / "once").read_text() == "x\n", "the try ran twice"
