"""`leoflow scheduler` as a real process: leadership, metrics over HTTP, SIGHUP reload, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from leoflow.scheduler.signals import leader_key
from leoflow.store.election import read_leader
from leoflow.store.sqlite import SqliteStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_scheduler_process_leads_serves_metrics_reloads_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    db = tmp_path / "leoflow.db"
    config = tmp_path / "leoflow.toml"
    config.write_text(f'[store]\nsqlite_path = "{db}"\n[scheduler]\nmetrics_bind = "127.0.0.1:{port}"\n'
                      'leader_ttl = 10.0\nlock_delay = 0.0\nwatch_wait = 1.0\n')
    env = {**os.environ, "LEOFLOW_HOME": str(tmp_path), "LEOFLOW_CONFIG": str(config)}
    log = open(tmp_path / "scheduler.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "leoflow.cli.main", "scheduler"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        store = SqliteStore(db)
        try:
            info = _wait("leadership", lambda: read_leader(store, leader_key()))
            assert info.pid == proc.pid
            body = _wait("metrics of a leader", lambda: (b := _metrics(port)) and "is_leader 1.0" in b and
                         'reason="elected"' in b and b)
            assert 'leoflow_scheduler_wakeups_total{reason="elected"}' in body
            config.write_text(config.read_text() + "parallelism = 8\n")
            proc.send_signal(signal.SIGHUP)
            _wait("reload logged", lambda: b"config reloaded" in (tmp_path / "scheduler.log").read_bytes())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            # Graceful stop released the lock: a standby could take over at once.
            assert read_leader(store, leader_key()) is None
        finally:
            store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "scheduler.log").read_text().splitlines() if line.startswith("{")]
    assert any(line["event"] == "scheduler started" and line["process"] == "scheduler" for line in lines)
    assert any(line["event"] == "scheduler stopped" for line in lines)


def _metrics(port: int) -> str | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None


def test_unknown_executor_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "LEOFLOW_HOME": str(tmp_path), "LEOFLOW_SCHEDULER__EXECUTOR": "carrier-pigeon"}
    out = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "scheduler"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "scheduler.executor" in out.stderr and "carrier-pigeon" in out.stderr and "Traceback" not in out.stderr


def test_sighup_names_every_key_baked_in_at_start() -> None:
    """A reload must not claim to apply what the running executor, store or election fixed at start."""
    from leoflow.cli.scheduler import _restart_keys_changed
    from leoflow.config import Config

    old, new = Config(), Config()
    new.scheduler.agent_heartbeat_timeout = old.scheduler.agent_heartbeat_timeout + 5
    new.vault.kv_mount = old.vault.kv_mount + "-other"
    new.home = "/elsewhere"
    new.scheduler.parallelism = old.scheduler.parallelism + 1  # applies live: not named
    assert _restart_keys_changed(old, new) == ["home", "scheduler.agent_heartbeat_timeout", "vault"]


def test_the_nomad_executors_metrics_are_served_on_the_schedulers_endpoint(tmp_path: Path) -> None:
    """One scrape target per scheduler: its own metrics and its executor's."""
    from leoflow import config as config_mod
    from leoflow.cli.scheduler import executor_registries, make_executor
    from leoflow.scheduler.metrics import SchedulerMetrics

    cfg = config_mod.load(env={"LEOFLOW_SCHEDULER__EXECUTOR": "nomad", "LEOFLOW_HOME": str(tmp_path)})
    executor = make_executor(cfg, None)
    try:
        executor.metrics.submits.labels(result="created").inc()
        metrics = SchedulerMetrics()
        metrics.wakeups.labels(reason="test").inc()
        port = metrics.serve("127.0.0.1:0", extra=executor_registries(executor))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                body = resp.read().decode()
        finally:
            metrics.close()
    finally:
        executor.close()
    assert 'leoflow_nomad_submits_total{result="created"} 1.0' in body
    assert 'leoflow_scheduler_wakeups_total{reason="test"} 1.0' in body
