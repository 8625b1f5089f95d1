"""The fake Nomad rendering task templates from a real OpenBao, and executors built on it.

The fake Nomad runs each try as a real process and renders the task's Vault template from the real
OpenBao (by the same KV v2 API paths Nomad's template runner reads), so a task really receives
``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` from Vault. ``executor()`` builds one the way the scheduler
does (``from_config``: Vault login with the server's AppRole, the SQLite store as fallback).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac

from leoflow.config import Config
from leoflow.domain.dag import Resources
from leoflow.executors.nomad import JobSettings, NomadClient, NomadExecutor, Settings
from leoflow.executors.port import TryEvent, TryKey, TryOutcome, TryRequest
from leoflow.logs.store import LogStore
from leoflow.secrets.delivery import TaskSecrets
from leoflow.store.sqlite import SqliteStore
from tests.fakes.nomad import FakeNomad
from tests.vault.conftest import OpenBao
from tests.vault.rig import server_login

NASTY = "nm-p@ss:w/rd?#&=% +é"
TOKEN_VALUE = "nm-tok-3f9a-very-secret"


class VaultReads(dict):  # type: ignore[type-arg]
    """The fake Nomad's template source: reads the real OpenBao by API path (``secret/data/...``)."""

    def __init__(self, client: hvac.Client) -> None:
        super().__init__()
        self._client = client

    def get(self, path: str, default: Any = None) -> Any:
        answer = self._client.read(path)
        return answer["data"] if answer else default


@dataclass
class NomadVault:
    home: Path
    config: Config
    fake: FakeNomad
    store: SqliteStore
    executors: list[NomadExecutor] = field(default_factory=list)
    seen: dict[int, list[TryEvent]] = field(default_factory=dict)

    @property
    def logs(self) -> LogStore:
        return LogStore(self.home / "logs")

    def executor(self, secrets: TaskSecrets | None = None, **kw: Any) -> NomadExecutor:
        """What the scheduler builds (``make_executor`` -> ``from_config``), one per leader; or one
        with the given secrets resolver (``kw``: more constructor arguments, e.g. a clock)."""
        if secrets is None and not kw:
            ex = NomadExecutor.from_config(self.config, self.store)
        else:
            ex = NomadExecutor(NomadClient(Settings(addr=self.fake.addr, blocking_wait=2.0)), self.logs, JobSettings(),
                               log_drain_timeout=5.0, read_timeout=5.0, secrets=secrets, **kw)
        self.executors.append(ex)
        return ex

    def events(self, ex: NomadExecutor, key: TryKey, outcome: TryOutcome, timeout: float = 30.0) -> TryEvent:
        got = self.seen.setdefault(id(ex), [])
        deadline = time.monotonic() + timeout
        while True:
            for event in got:
                if event.key == key and event.outcome is outcome:
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {outcome} for {key.task_id}; saw {[(e.key.task_id, e.outcome) for e in got]}")
            got.extend(ex.events(0.2))

    def lines(self, key: TryKey) -> list[str]:
        return [line.record["event"] for line in self.logs.iter_lines(key)]


@contextmanager
def nomad_vault(openbao: OpenBao, tmp_path: Path) -> Iterator[NomadVault]:
    """Vault holds connection ``nm_db`` (fields, password NASTY) and variable ``nm_token``."""
    s = openbao.settings
    root = openbao.root()
    root.secrets.kv.v2.create_or_update_secret(f"{s.connections_path}/nm_db", {
        "conn_type": "postgres", "host": "db.internal", "login": "etl", "password": NASTY, "port": 5432},
        mount_point=s.kv_mount)
    root.secrets.kv.v2.create_or_update_secret(f"{s.variables_path}/nm_token", {"value": TOKEN_VALUE},
                                               mount_point=s.kv_mount)
    home = tmp_path / "home"
    login = server_login(openbao, tmp_path / "creds")
    config = openbao.config(home, role_id_file=login.role_id_file, secret_id_file=login.secret_id_file)
    store = SqliteStore(home / "leoflow.db", session_ttl_min=1.0)
    with FakeNomad(heartbeat=0.3, vault_secrets=VaultReads(root)) as fake:
        n = config.nomad
        n.addr, n.blocking_wait, n.log_drain_timeout, n.placement_timeout = fake.addr, 2.0, 5.0, 30.0
        rig = NomadVault(home, config, fake, store)
        try:
            yield rig
        finally:
            for ex in rig.executors:
                ex.close()
            store.close()


def new_key(task: str) -> TryKey:
    return TryKey("nomad_secrets", f"manual__{time.time_ns()}", task, -1, 1)


def py_request(key: TryKey, code: str, **kw: Any) -> TryRequest:
    return TryRequest(key, (sys.executable, "-c", code), driver="raw_exec", resources=Resources(cpu=100, memory=64),
                      **kw)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is a real connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
