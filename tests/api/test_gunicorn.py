"""leoflow-server as a real process: gunicorn with 2 workers on a loopback port; serves, aggregates
metrics across workers, reloads config on SIGHUP (and survives a bad one), drains on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leoflow.api.auth.passwords import hash_password
from leoflow.config import Config
from leoflow.domain.records import User
from leoflow.store.repos import build
from leoflow.store.sqlite import SqliteStore
from tests.processes import stop

PASSWORD = "gunicorn-pass-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(path: Path, home: Path, port: int, *, expose: bool = False, extra: str = "") -> None:
    path.write_text(f"""
home = "{home}"
[server]
bind = "127.0.0.1:{port}"
workers = 2
threads = 2
timeout = 30
graceful_timeout = 10
expose_config = {"true" if expose else "false"}
webhook_secret = "hook"
[auth]
jwt_secret = "{"g" * 40}"
[logging]
level = "INFO"
{extra}
""")


def _http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http://127.0.0.1 only
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
            raw = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(raw) if "json" in ctype and raw else raw.decode()
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def _wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "server-home"
    home.mkdir()
    store = SqliteStore(home / "leoflow.db")
    build(store, config=Config()).users.create(User("ops", hash_password(PASSWORD, n=2**10), "admin"))
    store.close()
    port = _free_port()
    cfg = tmp_path / "leoflow.toml"
    _write_config(cfg, home, port)
    env = {**os.environ, "LEOFLOW_HOME": str(home), "LEOFLOW_CONFIG": str(cfg)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "leoflow.api.main", "--config", str(cfg)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _http("GET", base + "/health/live")[0] == 200, 30, "server start")
        yield {"proc": proc, "base": base, "cfg": cfg, "home": home, "port": port}
    finally:
        stop(proc)
        log.close()
        print((tmp_path / "server.log").read_text()[-6000:])


def _token(base: str) -> str:
    status, body = _http("POST", base + "/auth/token", {"username": "ops", "password": PASSWORD})
    assert status == 201, body
    return str(body["access_token"])


def test_serves_reloads_and_drains(server: dict[str, Any]) -> None:
    base, proc = server["base"], server["proc"]
    token = _token(base)
    status, body = _http("GET", base + "/api/v2/dags", token=token)
    assert status == 200 and body == {"dags": [], "total_entries": 0}
    assert _http("GET", base + "/api/v2/config", token=token)[0] == 403

    # metrics from both workers land in one exposition (multiprocess mode)
    for _ in range(20):
        _http("GET", base + "/health/live")
    status, text = _http("GET", base + "/metrics")
    assert status == 200
    line = next(x for x in text.splitlines()
                if x.startswith('leoflow_api_requests_total{method="GET",route="/health/live",status="200"}'))
    assert float(line.rsplit(" ", 1)[1]) >= 20

    # SIGHUP with a changed config: new workers serve it, no request fails meanwhile
    _write_config(server["cfg"], server["home"], server["port"], expose=True)
    proc.send_signal(signal.SIGHUP)
    _wait_until(lambda: _http("GET", base + "/api/v2/config", token=token)[0] == 200, 20, "reloaded config")
    # SIGHUP with a broken config: logged, the running config is kept
    server["cfg"].write_text("[server]\nworkers = 'many'\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    assert proc.poll() is None
    assert _http("GET", base + "/api/v2/config", token=token)[0] == 200

    # SIGTERM while a request is in flight: it completes, then the server exits cleanly
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=10)
    body_bytes = b'{"ref": "refs/heads/main"}'
    sock.sendall(b"POST /webhooks/git HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 + f"Content-Length: {len(body_bytes)}\r\n\r\n".encode() + body_bytes[:5])
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sock.sendall(body_bytes[5:])
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]  # the unsigned push is refused, but answered
    assert proc.wait(timeout=20) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server["port"]), timeout=1).close()


def test_check_flag_and_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nworkers = 3\n")
    env = {**os.environ, "LEOFLOW_HOME": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "leoflow.api.main", "--config", str(cfg), "--check"],
                        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert ok.returncode == 0 and "config ok" in ok.stdout
    cfg.write_text("[server]\nwokers = 3\n")
    bad = subprocess.run([sys.executable, "-m", "leoflow.api.main", "--config", str(cfg), "--check"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown config key server.wokers" in bad.stderr
