"""Helpers for the Vault tests: provision agents the way an operator does, and a real agentrpc rig."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from leoflow.agent.auth import TokenSource
from leoflow.agent.dial import AgentIdentityInfo, DialOptions, Link
from leoflow.agent.runner import Runner
from leoflow.agent.vault_auth import VaultTokenSource
from leoflow.agentrpc.server import AgentRpcServer
from leoflow.agentrpc.service import ServiceSettings
from leoflow.agentrpc.vault_jwks import vault_verifier
from leoflow.config import Config
from leoflow.executors.agents import AgentsExecutor
from leoflow.executors.port import TryEvent, TryKey, TryRequest
from leoflow.logs.store import LogStore
from leoflow.secrets import bootstrap
from leoflow.secrets.login import LoginSettings, VaultSession
from leoflow.store.sqlite import SqliteStore
from tests.vault.conftest import OpenBao


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def provision(bao: OpenBao, agent_id: str, pools: list[str], where: Path, *, wrap_ttl: str | None = None,
              ) -> LoginSettings:
    """What `leoflow vault agent-add` does: role + entity + role id file + secret id file (0600)."""
    root = bao.root()
    role_id = bootstrap.add_agent(root, bao.settings, agent_id, pools)
    secret = bootstrap.new_secret_id(root, bao.settings, bootstrap.agent_role_name(agent_id), wrap_ttl=wrap_ttl)
    return LoginSettings(addr=bao.addr, role_id_file=str(write_private(where / f"{agent_id}.role-id", role_id)),
                         secret_id_file=str(write_private(where / f"{agent_id}.secret-id", secret)),
                         secret_id_wrapped=wrap_ttl is not None)


def server_session(bao: OpenBao, where: Path) -> VaultSession:
    """A leoflow-server's Vault login (the AppRole role and policy the bootstrap made)."""
    return VaultSession(server_login(bao, where))


def server_login(bao: OpenBao, where: Path) -> LoginSettings:
    root = bao.root()
    role = bootstrap.SERVER_ROLE
    return LoginSettings(
        addr=bao.addr,
        role_id_file=str(write_private(where / "server.role-id", bootstrap.role_id(root, bao.settings, role))),
        secret_id_file=str(write_private(where / "server.secret-id",
                                         bootstrap.new_secret_id(root, bao.settings, role))))


def token_source(bao: OpenBao, login: LoginSettings, role: str | None = None) -> VaultTokenSource:
    return VaultTokenSource(VaultSession(login), role or bao.settings.identity_role)


@dataclass
class LocalAgent:
    runner: Runner
    link: Link
    thread: threading.Thread

    def stop(self) -> None:
        self.link.stop()
        self.thread.join(timeout=10)


@dataclass
class VaultRig:
    home: Path
    config: Config
    server: AgentRpcServer
    executor: AgentsExecutor
    agents: list[LocalAgent] = field(default_factory=list)
    seen: list[TryEvent] = field(default_factory=list)

    @property
    def logs(self) -> LogStore:
        return LogStore(self.home / "logs")

    def agent(self, agent_id: str, tokens: TokenSource, pools: tuple[str, ...] = ("default",),
              capacity: int = 4, wait: bool = True, opts: DialOptions | None = None) -> LocalAgent:
        runner = Runner(self.home / f"agent-{agent_id}", capacity, kill_grace=1.0)
        link = Link(opts or DialOptions(f"127.0.0.1:{self.server.port}"), tokens, runner,
                    AgentIdentityInfo(agent_id, pools, {}, "test", "testhost"), max_backoff=0.3)
        thread = threading.Thread(target=link.run, daemon=True)
        thread.start()
        if wait:
            assert link.connected.wait(15), f"agent {agent_id} never connected"
        local = LocalAgent(runner, link, thread)
        self.agents.append(local)
        return local

    def submit(self, task_id: str, command: list[str], *, queue: str = "default",
               connections: tuple[str, ...] = (), variables: tuple[str, ...] = (),
               env: dict[str, str] | None = None, try_number: int = 1) -> TryKey:
        key = TryKey("dag_v", "manual__2026-01-01T00:00:00+00:00", task_id, -1, try_number)
        self.executor.submit(TryRequest(key, tuple(command), env=env or {}, queue=queue, connections=connections,
                                        variables=variables))
        return key

    def wait_terminal(self, key: TryKey, timeout: float = 20.0) -> TryEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen.extend(self.executor.events(0.2))
            for event in self.seen:
                if event.key == key and event.terminal:
                    return event
        raise AssertionError(f"no terminal event for {key} within {timeout}s; saw {self.seen}")

    def terminal_events(self, key: TryKey) -> list[TryEvent]:
        return [e for e in self.seen if e.key == key and e.terminal]


@contextmanager
def running_rig(home: Path, config: Config, db: Path | None = None) -> Iterator[VaultRig]:
    """agentrpc verifying agent tokens against Vault's JWKS, and the agents executor, over one SQLite
    file (``db``, default ``home/leoflow.db``)."""
    db = db or home / "leoflow.db"
    store = SqliteStore(db, session_ttl_min=1.0)
    verifier = vault_verifier(config.vault)
    assert verifier is not None
    server = AgentRpcServer(config, store, bind="127.0.0.1:0", verifier=verifier,
                            settings=ServiceSettings(heartbeat_interval=0.25, heartbeat_timeout=3.0))
    server.start()
    executor = AgentsExecutor(SqliteStore(db, session_ttl_min=1.0), heartbeat_timeout=3.0, reap_interval=0.2)
    rig = VaultRig(home, config, server, executor)
    try:
        yield rig
    finally:
        for agent in rig.agents:
            agent.stop()
        server.stop(grace=0.5)
        store.close()
        executor.queue.store.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
