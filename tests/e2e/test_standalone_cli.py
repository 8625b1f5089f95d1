"""`leoflow standalone` preparation and refusals, without starting the whole system."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leoflow.cli.standalone import ensure_admin
from leoflow.config import Config
from leoflow.store.factory import open_store
from leoflow.store.repos import build


def _config(home: Path) -> Config:
    return Config(home=str(home))


def test_admin_is_created_once_with_a_generated_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEOFLOW_ADMIN_PASSWORD", raising=False)
    lines: list[str] = []
    ensure_admin(_config(tmp_path), lines.append)
    assert len(lines) == 1 and "password: " in lines[0] and "shown once" in lines[0]
    password = lines[0].split("password: ")[1].split()[0]
    ensure_admin(_config(tmp_path), lines.append)
    assert password not in lines[1] and "as set before" in lines[1]
    from leoflow.api.auth.passwords import verify_password

    store = open_store(_config(tmp_path))
    try:
        user = build(store, config=_config(tmp_path)).users.get("admin")
        assert user is not None and user.record.role == "admin"
        assert verify_password(password, user.record.password_hash)
    finally:
        store.close()


def test_admin_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEOFLOW_ADMIN_PASSWORD", "correct horse battery")
    lines: list[str] = []
    ensure_admin(_config(tmp_path), lines.append)
    monkeypatch.setenv("LEOFLOW_ADMIN_PASSWORD", "another long password")
    ensure_admin(_config(tmp_path), lines.append)
    assert all("correct horse" not in line and "another long" not in line for line in lines)
    from leoflow.api.auth.passwords import verify_password

    store = open_store(_config(tmp_path))
    try:
        user = build(store, config=_config(tmp_path)).users.get("admin")
        assert user is not None and verify_password("another long password", user.record.password_hash)
    finally:
        store.close()


def _standalone(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"LEOFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "LEOFLOW_ADMIN_PASSWORD": "a-long-password"}
    return subprocess.run([sys.executable, "-m", "leoflow.cli.main", "standalone", "--no-ui", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _standalone("--port", str(port), home=tmp_path / "lf-home")
    assert done.returncode == 1
    assert f"port {port} (--port) is already in use" in done.stderr and "Traceback" not in done.stderr


def test_a_second_standalone_on_the_same_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "lf-home"
    home.mkdir()
    with open(home / "standalone.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = _standalone(home=home)
    assert done.returncode == 1 and "another `leoflow standalone` is running" in done.stderr


def test_missing_dags_repo_directory(tmp_path: Path) -> None:
    done = _standalone("--dags-repo", str(tmp_path / "nope"), home=tmp_path / "lf-home")
    assert done.returncode == 1 and "no such directory" in done.stderr


def test_ui_bundle_is_installed_once_with_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leoflow.cli.standalone import ensure_ui

    if not os.environ.get("LEOFLOW_CACHE"):
        # `make test` exports it; by hand, use the repository's cache (where `make setup` put the wheel).
        monkeypatch.setenv("LEOFLOW_CACHE", str(Path(__file__).resolve().parents[2] / ".cache"))
    lines: list[str] = []
    assert ensure_ui(tmp_path / "lf-home", lines.append)
    assert lines[0].startswith("Installing the Airflow UI bundle")
    assert any("installed Airflow UI" in line for line in lines)
    again: list[str] = []
    assert ensure_ui(tmp_path / "lf-home", again.append)
    assert again == []


def test_children_get_the_config_file_as_an_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leoflow.cli.standalone import child_env

    (tmp_path / "lf.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    env = child_env(_config(tmp_path), tmp_path, port=1, grpc_port=2, dags_repo=None, capacity=1,
                    metrics={"agentrpc": "", "scheduler": "", "agent": ""}, config_file="lf.toml")
    assert env["LEOFLOW_CONFIG"] == str(tmp_path / "lf.toml")


def test_dag_sync_child_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEOFLOW_HOME": str(tmp_path), "LEOFLOW_CONFIG": str(tmp_path / "missing.toml")}
    done = subprocess.run([sys.executable, "-m", "leoflow.cli.standalone", "dag-sync"], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 1
    assert "missing.toml does not exist" in done.stderr and "Traceback" not in done.stderr


def test_stopping_a_child_that_survives_sigkill_does_not_raise(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``stop`` must return even when the child outlives SIGKILL, so ``stop_all`` reaches every child.

    The stand-in for "stuck in the kernel": a process outside its own process group (so the group
    SIGKILL finds nothing) that ignores SIGTERM.
    """
    import signal

    from leoflow.cli import standalone

    monkeypatch.setattr(standalone, "KILL_WAIT", 0.2)
    ready = tmp_path / "ready"
    code = (f"import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")
    child = standalone.Child("stuck", [], {}, tmp_path / "stuck.log")
    child.proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(600):  # bounded: 30 s
            if ready.exists() or child.proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists()
        child.stop(0.1)  # raised TimeoutExpired before the fix
        assert child.alive()
    finally:
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(10)
