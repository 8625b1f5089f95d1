"""A real leoflow-server (gunicorn subprocess) on 127.0.0.1 over a seeded SQLite store, for the
browser tests and the UI benchmark.

The store is written through the real repositories (tests/api/ui/uiseed.py); a user is created the
way ``leoflow users create`` does; the UI bundle is installed from the cached pinned wheel.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from leoflow.api.auth.passwords import hash_password
from leoflow.api.context import logs_root
from leoflow.config import load
from leoflow.domain.records import AuditEvent, Connection, Pool, User, Variable
from leoflow.executors.port import TryKey, TryRequest
from leoflow.logs.store import LogStore
from leoflow.store import factory
from leoflow.store.repos import build
from leoflow.store.repos.agent_queue import AgentLive, AgentQueue
from leoflow.store.repos.base import TIKey
from leoflow.store.repos.dags import BundleState
from leoflow.ui import bundle
from tests.api.ui.uiseed import Seeded, seed

USERNAME = "admin"
PASSWORD = "browser-test-password"
# The operator's connection types file the server is started with ([ui] connection_types_file).
CONNECTION_TYPES = """\
- conn_type: snowflake
  name: Snowflake (platform)
  relabeling: {schema: Database}
  extra_fields:
    warehouse: {type: string, title: Warehouse, description: Default warehouse}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    home: Path
    base_url: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def server_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOFLOW_")}
    env.update({
        "LEOFLOW_HOME": str(home),
        "HOME": str(home),  # gunicorn keeps a control socket under $HOME
        "LEOFLOW_CACHE": os.environ.get("LEOFLOW_CACHE", str(bundle.cache_dir())),
        "LEOFLOW_SERVER__BIND": f"127.0.0.1:{port}",
        "LEOFLOW_SERVER__WORKERS": "1",
        "LEOFLOW_SERVER__THREADS": "8",
        "LEOFLOW_SERVER__ACCESS_LOG": "false",
        "LEOFLOW_AUTH__JWT_SECRET": "browser-test-secret-" + "x" * 32,
        "LEOFLOW_UI__AUTO_REFRESH_INTERVAL": "1",
        "LEOFLOW_UI__CONNECTION_TYPES_FILE": str(home / "connection_types.yaml"),
    })
    return env


def prepare_home(home: Path, env: dict[str, str], now: datetime | None = None) -> None:
    """Install the bundle, seed the store and create the admin user (before the server starts)."""
    home.mkdir(parents=True, exist_ok=True)
    bundle.install(home)
    config = load(env={k: v for k, v in env.items() if k.startswith("LEOFLOW_")})
    store = factory.open_store(config)
    repos = build(store, config=config)
    try:
        seeded = seed(repos, now or datetime.now(UTC))
        seed_extras(repos, LogStore(logs_root(config)), seeded)
        repos.users.create(User(username=USERNAME, password_hash=hash_password(PASSWORD), role="admin",
                                created_at=datetime.now(UTC)))
    finally:
        repos.close()
        store.close()


def log_lines(run_start: datetime, task: str, messages: list[tuple[str, str]]) -> list[dict[str, object]]:
    return [{"timestamp": (run_start.replace(microsecond=0)).isoformat().replace("+00:00", "Z"), "level": level,
             "event": text, "logger": f"leoflow.task.{task}"} for level, text in messages]


def seed_extras(repos: Any, logs: LogStore, seeded: Seeded) -> None:
    """What the other screens show: logs, XComs, variables, connections, pools, an audit entry."""
    ok, failed, running = seeded.runs["ok"], seeded.runs["failed"], seeded.runs["running"]
    for run, task, tries in ((ok, "extract", 1), (failed, "transform", 2), (running, "transform", 1)):
        for n in range(1, tries + 1):
            logs.append(TryKey(run.dag_id, run.run_id, task, -1, n), log_lines(run.start_date, task, [
                ("info", f"{task} try {n} starting on agent-1"),
                ("info", "reading 1200 rows from source"),
                *([("error", "ValueError: column 'amount' is not numeric")] if run is failed else []),
            ]))
    stamp = ok.end_date or datetime.now(UTC)
    repos.xcom.set(TIKey(ok.dag_id, ok.run_id, "extract"), "return_value", {"rows": 1200}, try_number=1,
                   timestamp=stamp)
    repos.xcom.set(TIKey(ok.dag_id, ok.run_id, "transform"), "row_count", 1187, try_number=1, timestamp=stamp)
    repos.variables.create(Variable(key="warehouse_schema", value="analytics", description="target schema"))
    repos.connections.create(Connection(connection_id="warehouse", conn_type="postgres", host="db.internal",
                                        login="etl", password="s3cret", schema="analytics", port=5432))
    # A type in no registry (built-in or file): the UI must still show its form fields.
    repos.connections.create(Connection(connection_id="lakehouse", conn_type="trino", host="trino.internal",
                                        login="etl", port=8080))
    repos.pools.ensure_default()
    repos.pools.create(Pool(name="batch", slots=4, description="nightly batch jobs"))
    # A connected agent running the running run's transform, as leoflow-agent + agentrpc record it.
    queue = AgentQueue(repos.store, repos.keyspace.root)
    now = datetime.now(UTC).timestamp()
    session = repos.store.session_create(name="browser-test-server", ttl=3600)
    queue.hold_server_key("server-1", session, now)
    queue.mark_connected(AgentLive(agent_id="agent-1", server_id="server-1", conn="c1", connected=True, since=now,
                                   pools=("default",), capacity=4, hostname="build-01", version="0.1.0"))
    key = TryKey(running.dag_id, running.run_id, "transform", -1, 1)
    queue.enqueue(TryRequest(key=key, command=("echo", "transform"), queue="default"), now)
    entry = next(e for e in queue.all_entries() if e.key == key)
    queue.claim(entry, "agent-1", "c1", now)
    repos.dags.save_bundle(BundleState(name="dags-folder", version="b" * 40, last_sync_at=datetime.now(UTC)))
    repos.audit.append(AuditEvent(event_log_id=0, when=stamp, event="trigger", owner="admin", dag_id="etl",
                                  run_id=failed.run_id, extra='{"source": "seed"}'))


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"leoflow-server exited with {proc.returncode} before it was ready")
        try:
            if requests.get(url + "/health/live", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"leoflow-server did not become ready within {timeout:.0f}s")


@contextmanager
def running_stack(home: Path, *, seed_store: bool = True) -> Iterator[Stack]:
    port = free_port()
    env = server_env(home, port)
    if seed_store:
        prepare_home(home, env)
    home.mkdir(parents=True, exist_ok=True)
    (home / "connection_types.yaml").write_text(CONNECTION_TYPES)
    log_path = home / "server.log"
    stack = Stack(home=home, base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "leoflow.api.main"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        stack.proc = proc
        try:
            wait_ready(stack.base_url, proc)
            yield stack
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{stack.log_tail()}") from exc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
