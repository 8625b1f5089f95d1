"""A real rig for agent tests: SQLite store on disk, agentrpc on a loopback port, real agents.

Agents run either in-process (a Runner and a Link on threads, for speed) or as real
``leoflow-agent`` processes when the test kills or restarts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from leoflow.agent.auth import LocalTokenSource
from leoflow.agent.dial import AgentIdentityInfo, DialOptions, Link
from leoflow.agent.runner import Runner
from leoflow.agentrpc.localkeys import LocalIssuer, LocalKeyPaths
from leoflow.agentrpc.server import AgentRpcServer
from leoflow.agentrpc.service import ServiceSettings
from leoflow.config import Config
from leoflow.executors.agents import AgentsExecutor
from leoflow.executors.port import TryEvent, TryKey, TryRequest
from leoflow.logs.store import LogStore
from leoflow.store.sqlite import SqliteStore


@dataclass
class LocalAgent:
    runner: Runner
    link: Link
    thread: threading.Thread

    def stop(self) -> None:
        self.link.stop()
        self.thread.join(timeout=10)


@dataclass
class Rig:
    home: Path
    config: Config
    server: AgentRpcServer
    executor: AgentsExecutor
    agents: list[LocalAgent] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    seen: list[TryEvent] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def logs(self) -> LogStore:
        return LogStore(self.home / "logs")

    def issuer(self) -> LocalIssuer:
        return LocalIssuer(LocalKeyPaths.under(self.home), audience=self.config.vault.audience)

    def agent(self, agent_id: str = "a1", pools: tuple[str, ...] = ("default",), capacity: int = 4,
              port: int | None = None, work_dir: Path | None = None) -> LocalAgent:
        runner = Runner(work_dir or self.home / f"agent-{agent_id}", capacity, kill_grace=1.0)
        tokens = LocalTokenSource(self.issuer(), agent_id, pools)
        link = Link(DialOptions(f"127.0.0.1:{port or self.port}"), tokens, runner,
                    AgentIdentityInfo(agent_id, pools, {"zone": "test"}, "test", "testhost"), max_backoff=0.5)
        thread = threading.Thread(target=link.run, daemon=True)
        thread.start()
        assert link.connected.wait(10), "agent never connected"
        local = LocalAgent(runner, link, thread)
        self.agents.append(local)
        return local

    def agent_process(self, agent_id: str = "p1", capacity: int = 4, extra_env: dict[str, str] | None = None,
                      port: int | None = None, metrics_bind: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "LEOFLOW_HOME": str(self.home), **(extra_env or {})}
        argv = [sys.executable, "-m", "leoflow.agent.main", "--server", f"127.0.0.1:{port or self.port}",
                "--id", agent_id, "--capacity", str(capacity), "--work-dir", str(self.home / f"agent-{agent_id}"),
                "--metrics-bind", metrics_bind, "--drain-timeout", "2"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def wait_connected(self, agent_id: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if agent_id in self.server.service.connected_agents():
                return
            time.sleep(0.02)
        raise AssertionError(f"agent {agent_id} did not connect within {timeout}s")

    def submit(self, task_id: str, command: list[str], *, try_number: int = 1, timeout: float | None = None,
               env: dict[str, str] | None = None, queue: str = "default",
               run_id: str = "manual__2026-01-01T00:00:00+00:00") -> TryKey:
        key = TryKey("dag_a", run_id, task_id, -1, try_number)
        self.executor.submit(TryRequest(key, tuple(command), env=env or {}, queue=queue, timeout_seconds=timeout))
        return key

    def wait_terminal(self, key: TryKey, timeout: float = 20.0) -> TryEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.executor.events(0.2):
                self.seen.append(event)
            for event in self.seen:
                if event.key == key and event.terminal:
                    return event
        raise AssertionError(f"no terminal event for {key} within {timeout}s; saw {self.seen}")

    def drain_events(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.seen.extend(self.executor.events(0.1))

    def events_for(self, key: TryKey) -> list[TryEvent]:
        return [e for e in self.seen if e.key == key]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    home = tmp_path / "leoflow-home"
    config = Config(home=str(home))
    config.scheduler.agent_heartbeat_timeout = 2.0
    store = SqliteStore(home / "leoflow.db", session_ttl_min=1.0)
    server = AgentRpcServer(config, store, bind="127.0.0.1:0",
                            settings=ServiceSettings(heartbeat_interval=0.25, heartbeat_timeout=2.0))
    server.start()
    executor = AgentsExecutor(SqliteStore(home / "leoflow.db", session_ttl_min=1.0), heartbeat_timeout=2.0,
                              reap_interval=0.2)
    rig = Rig(home, config, server, executor)
    try:
        yield rig
    finally:
        for agent in rig.agents:
            agent.stop()
        for proc in rig.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()
        server.stop(grace=0.5)
        store.close()
        executor.queue.store.close()
