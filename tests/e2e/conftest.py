"""End-to-end rig: a real `leoflow standalone` (all its child processes) on loopback ports, a DAG
repository in a temporary git repo, and a small client of the real HTTP API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

PASSWORD = "e2e-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class DagRepo:
    path: Path

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, timeout=30,
                       env={**os.environ, "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
                            "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.invalid"})

    def commit(self, files: dict[str, str], message: str = "dags") -> None:
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.git("add", *files)
        self.git("commit", "-q", "-m", message)


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def login(self) -> None:
        resp = self.session.post(f"{self.base}/auth/token", json={"username": "admin", "password": PASSWORD},
                                 timeout=10)
        assert resp.status_code == 201, resp.text
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.session.get(f"{self.base}{path}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def maybe(self, path: str) -> Any:
        resp = self.session.get(f"{self.base}{path}", timeout=10)
        return resp.json() if resp.status_code == 200 else None

    def send(self, method: str, path: str, body: Any) -> Any:
        resp = self.session.request(method, f"{self.base}{path}", json=body, timeout=10)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    # -- DAG helpers -------------------------------------------------------------------------
    def wait_dag(self, dag_id: str, timeout: float = 60.0) -> Any:
        return wait_for(lambda: self.maybe(f"/api/v2/dags/{dag_id}"), timeout, f"DAG {dag_id} to appear")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.send("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 90.0) -> Any:
        def finished() -> Any:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        return wait_for(finished, timeout, f"run {run_id} of {dag_id} to finish", interval=0.2)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, Any]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[Any]:
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        return list(body["task_instances"])


@dataclass
class Standalone:
    home: Path
    port: int
    grpc_port: int
    proc: subprocess.Popen[str]
    output: Path
    api: Api

    def state(self) -> dict[str, Any]:
        return json.loads((self.home / "run" / "standalone.json").read_text())

    def child_pid(self, name: str) -> int:
        return int(self.state()["children"][name])

    def kill_child(self, name: str) -> int:
        pid = self.child_pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_child_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> int:
        return int(wait_for(lambda: (p := self.child_pid(name)) != old_pid and p, timeout, f"{name} to restart"))

    def stop(self) -> int:
        self.api.session.close()  # an idle keep-alive connection would hold gunicorn's graceful stop
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)

    def text(self) -> str:
        return self.output.read_text()


def start_standalone(home: Path, dags_repo: Path | None, *, extra_env: dict[str, str] | None = None,
                     port: int | None = None, timeout: float = 120.0, no_ui: bool = True,
                     args: Sequence[str] = ()) -> Standalone:
    port = port or free_port()
    grpc_port = free_port()
    out = home.parent / f"standalone-{port}.out"
    env = {**os.environ, "LEOFLOW_HOME": str(home), "LEOFLOW_ADMIN_PASSWORD": PASSWORD,
           # Fast failure detection and quick retries keep the e2e suite short.
           "LEOFLOW_SCHEDULER__AGENT_HEARTBEAT_TIMEOUT": "3", "LEOFLOW_DAGS__FETCH_INTERVAL": "1",
           "LEOFLOW_SCHEDULER__METRICS_BIND": f"127.0.0.1:{free_port()}",
           "LEOFLOW_AGENT__METRICS_BIND": f"127.0.0.1:{free_port()}",
           "LEOFLOW_SERVER__GRPC_METRICS_BIND": f"127.0.0.1:{free_port()}",
           **(extra_env or {})}
    argv = [sys.executable, "-m", "leoflow.cli.main", "standalone", "--port", str(port), "--grpc-port", str(grpc_port)]
    if dags_repo is not None:
        argv += ["--dags-repo", str(dags_repo)]
    if no_ui:
        argv.append("--no-ui")
    argv.extend(args)
    fh = open(out, "w")  # noqa: SIM115 - the child writes it for its life
    proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    fh.close()
    sa = Standalone(home, port, grpc_port, proc, out, Api(f"http://127.0.0.1:{port}"))
    try:
        wait_for(lambda: proc.poll() is not None or "Leoflow is running" in sa.text(), timeout, "standalone to start")
        assert proc.poll() is None, f"standalone exited early:\n{sa.text()}"
    except BaseException:
        sa.stop()
        raise
    sa.api.login()
    return sa


@pytest.fixture
def dag_repo(tmp_path: Path) -> DagRepo:
    path = tmp_path / "dags-repo"
    path.mkdir()
    repo = DagRepo(path)
    repo.git("init", "-q", "-b", "main")
    return repo


@pytest.fixture
def standalone_factory(tmp_path: Path) -> Iterator[Callable[..., Standalone]]:
    started: list[Standalone] = []

    def make(dags_repo: DagRepo | None, **kw: Any) -> Standalone:
        sa = start_standalone(tmp_path / "leoflow-home", dags_repo.path if dags_repo else None, **kw)
        started.append(sa)
        return sa

    yield make
    for sa in started:
        sa.stop()
