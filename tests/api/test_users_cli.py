"""`leoflow users ...` against the real store, as an operator runs it (a real subprocess for the
password-on-stdin path, in-process for the rest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from leoflow.api.auth.passwords import verify_password
from leoflow.cli.main import main
from leoflow.config import Config
from leoflow.store.repos import build
from leoflow.store.sqlite import SqliteStore


def _user(home: Path, name: str) -> Any:
    store = SqliteStore(home / "leoflow.db")
    try:
        found = build(store, config=Config()).users.get(name)
        return found.record if found else None
    finally:
        store.close()


def test_create_list_reset_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "leoflow-home"
    monkeypatch.setenv("LEOFLOW_HOME", str(home))
    assert main(["users", "create", "alice", "--role", "admin", "--email", "a@example.org"]) == 0
    out = capsys.readouterr().out
    password = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("password: "))
    user = _user(home, "alice")
    assert user.role == "admin" and verify_password(password, user.password_hash)
    assert user.password_hash.startswith("scrypt$")
    assert main(["users", "create", "alice"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "create", "bob", "--role", "root"]) == 1
    assert "unknown role" in capsys.readouterr().err
    assert main(["users", "list", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [u["username"] for u in listed] == ["alice"] and "password_hash" not in listed[0]
    assert main(["users", "list", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)[0]["role"] == "admin"
    assert main(["users", "list"]) == 0
    table = capsys.readouterr().out
    assert "USERNAME" in table and "alice" in table
    assert main(["users", "reset-password", "alice"]) == 0
    new = next(line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("password: "))
    assert new != password and verify_password(new, _user(home, "alice").password_hash)
    assert main(["users", "reset-password", "ghost"]) == 1
    assert main(["users", "delete", "alice"]) == 0
    assert _user(home, "alice") is None
    assert main(["users", "delete", "alice"]) == 1


def test_password_from_stdin_in_a_subprocess(tmp_path: Path) -> None:
    home = tmp_path / "leoflow-home"
    env = {"LEOFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "users", "create", "carol", "--role", "op",
                           "--password-stdin"], input="s3cret-password\n", capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "s3cret-password" not in done.stdout and "password:" not in done.stdout
    assert verify_password("s3cret-password", _user(home, "carol").password_hash)
    short = subprocess.run([sys.executable, "-m", "leoflow.cli.main", "users", "create", "dan", "--password-stdin"],
                           input="short\n", capture_output=True, text=True, env=env, timeout=60, check=False)
    assert short.returncode == 1 and "at least 8" in short.stderr
